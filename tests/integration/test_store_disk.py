"""test_store_disk.py -- the store when the disk fails under it: a data dir on a small tmpfs that fills up, and
the same tmpfs remounted read-only. A registry write then fails with a 5xx error envelope and a log line,
everything acknowledged before stays readable (also after a restart), the emulator keeps serving reads and a
connected device keeps taking direct methods; once space (or write access) is back, writes work again.
Needs root and a private mount namespace (unshare -m) for the tmpfs; elsewhere it exits 77 (ctest: SKIPPED)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

import paho.mqtt.client as mqtt

from harness import DEVICE1_KEY, Emulator

SKIP = 77
API = "?api-version=2021-04-12"
WAIT = 15


def enter_private_mount_namespace():
    """Re-executes this script in a mount namespace of its own (so the tmpfs vanishes with it); exits 77 when
    that is impossible here."""
    if os.environ.get("IOTHUB_TEST_IN_MNTNS"):
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("SKIPPED: needs root and unshare(1) to mount a small tmpfs in a private mount namespace")
        sys.exit(SKIP)
    probe = ('d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && mount --bind "$d" "$d" && '
             'mount -o remount,bind,ro "$d" && umount "$d" && umount "$d" && rmdir "$d"')
    if subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", probe],
                      capture_output=True).returncode != 0:
        print("SKIPPED: cannot mount a tmpfs and a read-only bind mount in a private mount namespace here")
        sys.exit(SKIP)
    env = dict(os.environ, IOTHUB_TEST_IN_MNTNS="1")
    os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable] + sys.argv, env)


class PlainDevice:
    """device1 over plain MQTT (the dev port), answering every direct method with 200 {"ok": true}."""

    def __init__(self, emu):
        self.client = mqtt.Client(client_id="device1", clean_session=True, protocol=mqtt.MQTTv311)
        self.client.username_pw_set("localhost/device1/?api-version=2021-04-12", emu.device_token("device1", DEVICE1_KEY))
        self.connected, self.subscribed = threading.Event(), threading.Event()
        self.client.on_connect = lambda c, u, f, rc: self.connected.set()
        self.client.on_subscribe = lambda c, u, mid, g: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", emu.mqtt_port, keepalive=60)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        self.client.subscribe("$iothub/methods/POST/#", qos=0)
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def _on_message(self, client, userdata, msg):
        rid = msg.topic.split("?$rid=")[1]
        client.publish("$iothub/methods/res/200/?$rid=%s" % rid, json.dumps({"ok": True}), qos=0)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class DiskTest(unittest.TestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="iothub-disk-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", self.mnt], check=True)
        self.emu = Emulator(data_dir=os.path.join(self.mnt, "data")).start()
        self.dev = PlainDevice(self.emu)

    def tearDown(self):
        self.dev.close()
        self.emu.stop()
        subprocess.run(["umount", "-l", self.mnt])
        os.rmdir(self.mnt)
        shutil.rmtree(self.emu.tmp, ignore_errors=True)

    def assert_still_serving(self, names):
        status, _, devices = self.emu.rest("GET", "/devices?top=1000&api-version=2021-04-12")
        self.assertEqual(status, 200)
        have = {d["deviceId"] for d in devices}
        self.assertTrue(set(names) <= have, set(names) - have)
        status, _, answer = self.emu.invoke("device1", payload={"x": 1}, response_timeout=10)
        self.assertEqual((status, answer), (200, {"status": 200, "payload": {"ok": True}}))

    def assert_store_error(self, status, body):
        self.assertEqual(status, 500, body)
        self.assertIn("ErrorCode:ServerError;", body["Message"])
        self.assertIn("store cannot save", body["Message"])

    def test_disk_full(self):
        emu = self.emu
        acked = []
        for i in range(5):
            self.assertEqual(emu.create_device("before-%d" % i)[0], 200)
            acked.append("before-%d" % i)
        # Fill the tmpfs (dd stops at ENOSPC), then write until the store runs out of its own slack.
        filler = os.path.join(self.mnt, "filler")
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k"], capture_output=True)
        failed = None
        for i in range(3000):
            status, _, body = emu.create_device("during-%04d" % i)
            if status == 200:
                acked.append("during-%04d" % i)
                continue
            self.assert_store_error(status, body)
            failed = "during-%04d" % i
            break
        self.assertIsNotNone(failed, "no write failed on a full disk")
        self.assertIn("database or disk is full", emu.log_text())
        self.assertEqual(emu.rest("GET", "/devices/%s%s" % (failed, API))[0], 404)
        status, _, body = emu.rest("DELETE", "/devices/before-0" + API)
        if status != 204:  # a delete may fit in the WAL's slack; when it does not, nothing changed
            self.assert_store_error(status, body)
            self.assertEqual(emu.rest("GET", "/devices/before-0" + API)[0], 200)
        else:
            acked.remove("before-0")
        status, _, body = emu.rest("POST", "/devices" + API, [{"id": "bulk-full", "importMode": "create"}])
        self.assertIn(status, (200, 500), body)
        if status == 200:
            acked.append("bulk-full")
        self.assert_still_serving(acked)
        # Space again: writes work, and a restart shows exactly what was acknowledged.
        os.unlink(filler)
        self.assertEqual(emu.create_device("after")[0], 200)
        acked.append("after")
        self.dev.close()
        emu.stop()
        emu.start()
        self.dev = PlainDevice(emu)
        self.assert_still_serving(acked)
        self.assertEqual(emu.rest("GET", "/devices/%s%s" % (failed, API))[0], 404)

    def test_read_only_data_dir(self):
        """A data dir that is read-only when the emulator starts (a read-only volume): it serves the stored
        registry, devices connect and take calls, every change is a 5xx. (A running emulator's mount cannot be
        made read-only under it: the kernel refuses while the store is open for writing.)"""
        emu = self.emu
        self.assertEqual(emu.create_device("before")[0], 200)
        self.dev.close()
        emu.stop(sig=9)  # a WAL with committed, not yet checkpointed changes stays behind
        subprocess.run(["mount", "--bind", emu.data_dir, emu.data_dir], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", emu.data_dir], check=True)
        try:
            emu.start()
            self.dev = PlainDevice(emu)
            self.assertIn("is read-only", emu.log_text())
            status, _, body = emu.create_device("during")
            self.assert_store_error(status, body)
            status, _, body = emu.rest("DELETE", "/devices/before" + API)
            self.assert_store_error(status, body)
            status, _, body = emu.rest("POST", "/devices" + API, [{"id": "bulk-ro", "importMode": "create"}])
            self.assertEqual(status, 500, body)
            self.assertIn("nothing was applied", body["Message"])
            self.assert_still_serving(["before", "device1"])
            self.assertEqual(emu.rest("GET", "/devices/during" + API)[0], 404)
            self.dev.close()
            emu.stop()
        finally:
            subprocess.run(["umount", emu.data_dir], check=True)
        emu.start()  # writable again
        self.dev = PlainDevice(emu)
        self.assertEqual(emu.create_device("after")[0], 200)
        self.assert_still_serving(["before", "after"])
        self.assertEqual(emu.rest("GET", "/devices/during" + API)[0], 404)
        # After a clean stop there is no WAL left: read-only again, the store file alone is read.
        self.dev.close()
        emu.stop()
        self.assertFalse(os.path.exists(os.path.join(emu.data_dir, "iothub.db-wal")))
        subprocess.run(["mount", "--bind", emu.data_dir, emu.data_dir], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", emu.data_dir], check=True)
        try:
            emu.start()
            self.dev = PlainDevice(emu)
            self.assert_still_serving(["before", "after"])
            self.assert_store_error(*emu.create_device("during")[::2])
            self.dev.close()
            emu.stop()
        finally:
            subprocess.run(["umount", emu.data_dir], check=True)
        emu.start()
        self.dev = PlainDevice(emu)


if __name__ == "__main__":
    enter_private_mount_namespace()
    unittest.main()
