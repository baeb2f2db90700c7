"""test_store.py -- the SQLite store end to end: a registry.json written by release 0.1.0 is imported once and
answered exactly as that release answered it; kill -9 during a stream of registry writes loses nothing that was
acknowledged and always leaves a store that opens; the data dir holds iothub.db (owner-only), and a corrupt
store is refused with a clear message, left untouched."""

import json
import os
import shutil
import stat
import subprocess
import threading
import unittest
import urllib.parse

from harness import Emulator

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
API = "?api-version=2021-04-12"


def listing(emu):
    """What GET /devices and GET /devices/{id}/modules answer, as registry-0.1.0.expected.json holds it."""
    status, _, devices = emu.rest("GET", "/devices" + API)
    assert status == 200, devices
    out = {"devices": devices, "modules": {}}
    for d in devices:
        status, _, mods = emu.rest("GET", "/devices/%s/modules%s" % (urllib.parse.quote(d["deviceId"], safe=""), API))
        assert status == 200, mods
        out["modules"][d["deviceId"]] = mods
    return out


class StoreTest(unittest.TestCase):
    def test_release_registry_json_is_imported_once(self):
        emu = Emulator()
        os.makedirs(emu.data_dir)
        shutil.copy(os.path.join(DATA, "registry-0.1.0.json"), os.path.join(emu.data_dir, "registry.json"))
        with open(os.path.join(DATA, "registry-0.1.0.expected.json")) as f:
            expected = json.load(f)
        with emu:
            self.assertEqual(listing(emu), expected)
            self.assertIn("imported 6 devices", emu.log_text())
            self.assertFalse(os.path.exists(os.path.join(emu.data_dir, "registry.json")))
            self.assertTrue(os.path.exists(os.path.join(emu.data_dir, "registry.json.imported")))
            status, _, _ = emu.create_device("after-import")
            self.assertEqual(status, 200)
            emu.stop()
            emu.lines.clear()
            emu.start()  # same data dir: nothing imported again, the change after the import kept
            got = listing(emu)
            self.assertEqual([d["deviceId"] for d in got["devices"]],
                             sorted([d["deviceId"] for d in expected["devices"]] + ["after-import"]))
            self.assertEqual(emu.log_text().count("imported 6 devices"), 1)

    def test_kill_9_during_writes_loses_nothing_acknowledged(self):
        emu = Emulator()
        with emu:
            for round_no in range(3):
                acked, stop = [], threading.Event()
                enough = threading.Event()

                def writer():
                    i = 0
                    while not stop.is_set():
                        name = "r%d-dev-%04d" % (round_no, i)
                        try:
                            status, _, body = emu.create_device(name)
                        except OSError:
                            return  # the emulator is gone
                        if status == 200:
                            acked.append((name, body["authentication"]["symmetricKey"]["primaryKey"]))
                            if len(acked) >= 50:
                                enough.set()
                        i += 1

                threads = [threading.Thread(target=writer) for _ in range(2)]
                for t in threads:
                    t.start()
                self.assertTrue(enough.wait(60), "no writes acknowledged")
                emu.stop(sig=9)  # mid-stream: a request is in flight
                stop.set()
                for t in threads:
                    t.join(30)
                emu.start()  # the store opens after any kill
                status, _, devices = emu.rest("GET", "/devices?top=1000&api-version=2021-04-12")
                self.assertEqual(status, 200)
                stored = {d["deviceId"]: d["authentication"]["symmetricKey"]["primaryKey"] for d in devices}
                for name, key in acked:
                    self.assertEqual(stored.get(name), key, "%s was acknowledged but is lost" % name)
                mine = [n for n in stored if n.startswith("r%d-" % round_no)]
                self.assertLessEqual(len(mine), len(acked) + 1)  # at most the one in flight, unanswered

    def test_data_dir_holds_an_owner_only_store(self):
        with Emulator() as emu:
            self.assertEqual(emu.create_device("d")[0], 200)
            path = os.path.join(emu.data_dir, "iothub.db")
            self.assertTrue(os.path.exists(path))
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode) & 0o077, 0)
            self.assertFalse(os.path.exists(os.path.join(emu.data_dir, "registry.json")))

    def test_corrupt_store_is_refused_untouched(self):
        emu = Emulator()
        os.makedirs(emu.data_dir)
        path = os.path.join(emu.data_dir, "iothub.db")
        junk = b"this is not a SQLite database, but it is long enough to have a header" * 10
        with open(path, "wb") as f:
            f.write(junk)
        try:
            run = subprocess.run(emu.args(), capture_output=True, timeout=30)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn(b"not a SQLite database", run.stderr)
            with open(path, "rb") as f:
                self.assertEqual(f.read(), junk)
        finally:
            shutil.rmtree(emu.tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
