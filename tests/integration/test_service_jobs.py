"""test_service_jobs.py -- `iothub-service job ...` end to end against the emulator (free ports, the plain
HTTP dev port via --url): schedule-method on a query matching 2 of 3 tagged devices (Debian's paho as the
devices, answering the method), `job get --wait` printing progress and ending completed with the right
statistics; schedule-twin with the matching devices receiving the desired patch; a future --start job stays
scheduled, `job cancel` cancels it and `job get` shows cancelled; `job list --type` filtering; a duplicate job
id printing the hub's 409 error with exit status 8; usage errors with exit status 2."""

import datetime
import json
import os
import queue
import subprocess
import sys
import unittest

try:
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover
    print("SKIPPED: python3-paho-mqtt is not installed")
    sys.exit(77)

from harness import Emulator

SERVICE = os.environ.get("IOTHUB_SERVICE_BIN", "iothub-service")
TIMEOUT = 30


class MethodDevice:
    """A device on the plain MQTT port answering every direct method with status 200 and recording the
    method names it got and the desired patches pushed to it."""

    def __init__(self, emu, device_id):
        self.methods = queue.Queue()
        self.desired = queue.Queue()
        subscribed = queue.Queue()
        self.c = mqtt.Client(client_id=device_id, protocol=mqtt.MQTTv311, clean_session=True)
        self.c.username_pw_set("localhost/%s/?api-version=2021-04-12" % device_id, emu.device_token(device_id))
        self.c.on_connect = lambda c, u, f, rc: c.subscribe(
            [("$iothub/methods/POST/#", 0), ("$iothub/twin/PATCH/properties/desired/#", 0)])
        self.c.on_subscribe = lambda c, u, mid, q: subscribed.put(q)
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", emu.mqtt_port, 60)
        self.c.loop_start()
        subscribed.get(timeout=TIMEOUT)

    def on_message(self, c, u, m):
        if m.topic.startswith("$iothub/methods/POST/"):
            name, rest = m.topic[len("$iothub/methods/POST/"):].split("/", 1)
            rid = rest.split("$rid=", 1)[1]
            self.methods.put((name, json.loads(m.payload or b"null")))
            c.publish("$iothub/methods/res/200/?$rid=" + rid, json.dumps({"done": name}))
        else:
            self.desired.put(json.loads(m.payload))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class ServiceJobsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator().start()
        cls.devices = {}
        for i, role in enumerate(["sensor", "gateway", "sensor"]):
            dev_id = "jobdev%d" % i
            assert cls.emu.create_device(dev_id)[0] == 200
            status, _, _ = cls.emu.rest("PATCH", "/twins/%s?api-version=2021-04-12" % dev_id,
                                        {"tags": {"role": role}}, headers={"If-Match": "*"})
            assert status == 200, status
        # The keys were generated: the devices sign with them.
        for i in range(3):
            dev_id = "jobdev%d" % i
            key = cls.emu.rest("GET", "/devices/%s?api-version=2021-04-12" % dev_id)[2][
                "authentication"]["symmetricKey"]["primaryKey"]
            cls.devices[dev_id] = MethodDevice(_Signer(cls.emu, key), dev_id)

    @classmethod
    def tearDownClass(cls):
        for d in cls.devices.values():
            d.close()
        cls.emu.stop()

    def job(self, *args):
        env = dict(os.environ, IOTHUB_CONNECTION_STRING=self.emu.service_connection_string())
        env.pop("IOTHUB_CA_FILE", None)
        argv = [SERVICE, "job"] + list(args) + ["--url", "http://127.0.0.1:%d" % self.emu.http_port]
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT + 60)
        return p.returncode, p.stdout, p.stderr

    def test_schedule_method_and_wait(self):
        rc, out, err = self.job("schedule-method", "cli-method", "--query", "tags.role = 'sensor'",
                                "--method", "reboot", "--payload", '{"delay":1}', "--timeout", "10")
        self.assertEqual(rc, 0, err)
        job = json.loads(out)
        self.assertEqual(job["jobId"], "cli-method")
        self.assertEqual(job["type"], "scheduleDeviceMethod")
        self.assertEqual(job["cloudToDeviceMethod"]["methodName"], "reboot")
        rc, out, err = self.job("get", "cli-method", "--wait", "--json")
        self.assertEqual(rc, 0, err)
        job = json.loads(out)
        self.assertNotIn("\n", out.strip())  # --json: compact
        self.assertEqual(job["status"], "completed")
        stats = job["deviceJobStatistics"]
        self.assertEqual((stats["deviceCount"], stats["succeededCount"], stats["failedCount"]), (2, 2, 0))
        self.assertIn("job cli-method: completed, 2 of 2 devices done (2 succeeded, 0 failed)", err)
        for dev_id in ("jobdev0", "jobdev2"):
            self.assertEqual(self.devices[dev_id].methods.get(timeout=TIMEOUT), ("reboot", {"delay": 1}))
        self.assertTrue(self.devices["jobdev1"].methods.empty())
        # The same id again: the hub's 409, exit status 8.
        rc, out, err = self.job("schedule-method", "cli-method", "--query", "tags.role = 'sensor'",
                                "--method", "reboot")
        self.assertEqual(rc, 8, (out, err))
        self.assertIn("HTTP 409", err)
        self.assertIn("409007", err)
        self.assertEqual(out, "")

    def test_schedule_twin(self):
        rc, out, err = self.job("schedule-twin", "cli-twin", "--query", "tags.role = 'gateway'",
                                "--desired", '{"interval":42}', "--tags", '{"updated":"yes"}')
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["type"], "scheduleUpdateTwin")
        patch = self.devices["jobdev1"].desired.get(timeout=TIMEOUT)
        self.assertEqual(patch["interval"], 42)
        rc, out, err = self.job("get", "cli-twin", "--wait")
        self.assertEqual(rc, 0, err)
        job = json.loads(out)
        self.assertEqual(job["status"], "completed")
        self.assertEqual(job["deviceJobStatistics"]["succeededCount"], 1)
        twin = self.emu.rest("GET", "/twins/jobdev1?api-version=2021-04-12")[2]
        self.assertEqual(twin["tags"]["updated"], "yes")
        self.assertEqual(twin["properties"]["desired"]["interval"], 42)
        self.assertTrue(self.devices["jobdev0"].desired.empty())

    def test_future_job_cancelled_and_list(self):
        start = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        rc, out, err = self.job("schedule-method", "cli-later", "--query", "tags.role = 'sensor'",
                                "--method", "later", "--start", start)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.job("get", "cli-later", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn(json.loads(out)["status"], ("scheduled", "queued"))
        rc, out, err = self.job("cancel", "cli-later")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.job("get", "cli-later")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["status"], "cancelled")
        # A twin job for the listing (runs on no device: nothing matches).
        rc, out, err = self.job("schedule-twin", "cli-list-twin", "--query", "tags.role = 'nobody'",
                                "--desired", '{"x":1}')
        self.assertEqual(rc, 0, err)
        rc, out, err = self.job("list", "--type", "scheduleUpdateTwin")
        self.assertEqual(rc, 0, err)
        rows = json.loads(out)
        ids = [r["jobId"] for r in rows]
        self.assertIn("cli-list-twin", ids)
        self.assertNotIn("cli-later", ids)
        self.assertTrue(all(r["type"] == "scheduleUpdateTwin" for r in rows))
        rc, out, err = self.job("list", "--type", "scheduleDeviceMethod", "--status", "cancelled", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["jobId"] for r in json.loads(out)], ["cli-later"])
        for d in self.devices.values():
            self.assertTrue(all(name != "later" for name, _ in list(d.methods.queue)))

    def test_unknown_job_and_usage(self):
        rc, out, err = self.job("get", "no-such-job")
        self.assertEqual(rc, 5, err)
        self.assertIn("HTTP 404", err)
        rc, out, err = self.job("schedule-method", "x", "--method", "m")
        self.assertEqual(rc, 2)
        self.assertIn("--query", err)
        rc, out, err = self.job("list", "--type", "reboot")
        self.assertEqual(rc, 2)
        self.assertIn("--type", err)


class _Signer:
    """The emulator, but device tokens signed with a generated key."""

    def __init__(self, emu, key):
        self.emu, self.key, self.mqtt_port = emu, key, emu.mqtt_port

    def device_token(self, device_id):
        return self.emu.device_token(device_id, key=self.key)


if __name__ == "__main__":
    unittest.main()
