"""test_emulator_lifecycle.py -- the emulator program itself: flags and exit statuses, start-up output, the data
dir (certificates reused, registry persisted; --in-memory keeps nothing), clean shutdown on SIGTERM with 503
for pending method calls, and a clear error when a port is taken."""

import os
import signal
import socket
import subprocess
import threading
import unittest

import paho.mqtt.client as mqtt
import ssl

from harness import EMULATOR, Emulator

WAIT = 15


class LifecycleTest(unittest.TestCase):
    def test_help_and_bad_flags(self):
        out = subprocess.run([EMULATOR, "--help"], capture_output=True, text=True, timeout=WAIT)
        self.assertEqual(out.returncode, 0)
        for flag in ("--hostname", "--mqtts-port", "--https-port", "--data-dir", "--in-memory", "--owner-key",
                     "--http-idle-timeout"):
            self.assertIn(flag, out.stdout)
        bad = subprocess.run([EMULATOR, "--mqtts-port", "70000"], capture_output=True, text=True, timeout=WAIT)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--mqtts-port", bad.stderr)
        self.assertEqual(bad.stderr.count("\n"), 1)

    def test_banner_prints_endpoints_and_connection_strings(self):
        with Emulator() as emu:
            text = "\n".join(emu.lines)
            self.assertIn("mqtts://127.0.0.1:%d" % emu.mqtts_port, text)
            self.assertIn("https://127.0.0.1:%d" % emu.https_port, text)
            self.assertIn(emu.ca_path, text)
            self.assertIn(emu.service_connection_string(), text)
            self.assertIn(emu.device_connection_string(), text)

    def test_banner_masks_custom_keys(self):
        # Issue 23: a custom owner key (from the environment, as --help recommends) and a custom device1 key
        # must not reach stdout (every container log); only the published development keys are printed.
        owner, device = "Y3VzdG9tLW93bmVyLWtleS0xMjM0NTY3ODkwYWJj", "Y3VzdG9tLWRldmljZS1rZXktMTIzNDU2Nzg5MGFi"
        with Emulator(env={"IOTHUB_EMULATOR_OWNER_KEY": owner}, extra_args=["--default-device-key", device]) as emu:
            text = "\n".join(emu.lines)
            self.assertNotIn(owner, text)
            self.assertNotIn(device, text)
            self.assertIn("SharedAccessKeyName=iothubowner;SharedAccessKey=****", text)
            self.assertIn("DeviceId=device1;SharedAccessKey=****", text)
            self.assertIn("iothub-service device connection-string device1", text)
            self.assertNotIn(owner, emu.log_text())
            self.assertNotIn(device, emu.log_text())

    def test_certificates_are_reused_and_registry_persists(self):
        with Emulator() as first:
            status, _, dev = first.create_device("kept")
            self.assertEqual(status, 200, dev)
            with open(first.ca_path, "rb") as f:
                ca = f.read()
            first.stop()
            again = Emulator(data_dir=first.data_dir)
            again.tmp = first.tmp
            again.start()
            try:
                with open(again.ca_path, "rb") as f:
                    self.assertEqual(f.read(), ca)
                status, _, got = again.rest("GET", "/devices/kept?api-version=2021-04-12")
                self.assertEqual(status, 200, got)
                self.assertEqual(got["authentication"], dev["authentication"])
            finally:
                again.stop()

    def test_in_memory_keeps_nothing(self):
        with Emulator(extra_args=["--in-memory"]) as emu:
            self.assertEqual(emu.create_device("gone")[0], 200)
            self.assertFalse(os.path.exists(os.path.join(emu.data_dir, "registry.json")))
            self.assertFalse(os.path.exists(os.path.join(emu.data_dir, "iothub.db")))

    def test_sigterm_answers_pending_calls_503_and_exits_0(self):
        with Emulator() as emu:
            # A device that subscribes and never answers, so the call stays pending.
            dev = mqtt.Client(client_id="device1", clean_session=False, protocol=mqtt.MQTTv311)
            dev.tls_set(ca_certs=emu.ca_path, tls_version=ssl.PROTOCOL_TLSv1_2)
            dev.username_pw_set("localhost/device1/?api-version=2021-04-12", emu.device_token())
            got_request = threading.Event()
            dev.on_connect = lambda c, u, f, rc: c.subscribe("$iothub/methods/POST/#", 0)
            dev.on_message = lambda c, u, m: got_request.set()
            dev.connect("localhost", emu.mqtts_port, 60)
            dev.loop_start()
            result = {}
            caller = threading.Thread(target=lambda: result.update(
                r=emu.invoke("device1", payload={}, response_timeout=60, connect_timeout=30)))
            caller.start()
            self.assertTrue(got_request.wait(WAIT))
            self.assertEqual(emu.stop(sig=signal.SIGTERM, timeout=5), 0)
            caller.join(WAIT)
            dev.reconnect_delay_set(3600, 3600)
            dev.disconnect()
            dev.loop_stop()
            self.assertEqual(result["r"][0], 503, result)

    def test_default_bind_serves_both_loopbacks(self):
        emu = Emulator()
        args = emu.args()
        i = args.index("--bind")
        del args[i:i + 2]  # the default: localhost
        emu.args = lambda: args
        with emu:
            for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                raw = socket.socket(family, socket.SOCK_STREAM)
                raw.settimeout(WAIT)
                raw.connect((addr, emu.mqtts_port))
                tls = emu.tls_context().wrap_socket(raw, server_hostname="localhost")
                self.assertEqual(tls.version()[:3], "TLS")
                tls.close()
            self.assertIn("mqtts://localhost:%d" % emu.mqtts_port, "\n".join(emu.lines))

    def test_port_in_use_is_a_clear_error(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            emu = Emulator()
            emu.mqtts_port = port
            proc = subprocess.run(emu.args(), capture_output=True, text=True, timeout=WAIT)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("port %d" % port, proc.stderr)
            self.assertIn("Address already in use", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
