"""test_service_send.py -- `iothub-service send` (our own AMQP client on Qpid Proton) end to end against the
emulator: over TLS on the AMQPS port with the emulator's CA, SASL PLAIN with a policy token; the device
(Debian's paho, MQTT) gets the body, the application properties and the system properties ($.mid, $.exp);
--wait-feedback prints the Success record once the device's PUBACK completed it; the exit statuses for an
unknown device (5), a wrong key (4), an untrusted CA (3, with the hint), a full queue (8) and a feedback that
never comes (7); and our own device program, iothub-device (MQTT over TLS), printing each message it gets
from iothub-send (body and properties), one sent while it was offline first. Ports are picked at run time."""

import json
import os
import queue
import subprocess
import sys
import threading
import unittest
import urllib.parse

try:
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover
    print("SKIPPED: python3-paho-mqtt is not installed")
    sys.exit(77)

from harness import DEVICE1_KEY, Emulator, OWNER_KEY

SERVICE = os.environ.get("IOTHUB_SERVICE_BIN", "iothub-service")
WRONG_KEY = "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY="
TIMEOUT = 30


class PahoDevice:
    """A device on the plain MQTT port that records each C2D PUBLISH (paho PUBACKs it after on_message)."""

    def __init__(self, emu, device_id):
        self.got = queue.Queue()
        subscribed = queue.Queue()
        self.c = mqtt.Client(client_id=device_id, protocol=mqtt.MQTTv311, clean_session=True)
        self.c.username_pw_set("localhost/%s/?api-version=2021-04-12" % device_id, emu.device_token(device_id))
        self.c.on_connect = lambda c, u, f, rc: c.subscribe("devices/%s/messages/devicebound/#" % device_id, 1)
        self.c.on_subscribe = lambda c, u, mid, q: subscribed.put(q)
        self.c.on_message = lambda c, u, m: self.got.put((m.topic, m.payload))
        self.c.connect("127.0.0.1", emu.mqtt_port, 60)
        self.c.loop_start()
        assert subscribed.get(timeout=TIMEOUT) == (1,)

    def message(self):
        topic, payload = self.got.get(timeout=TIMEOUT)
        bag = topic.split("/", 4)[4]
        return payload, dict((urllib.parse.unquote(k), urllib.parse.unquote(v))
                             for k, v in (kv.split("=", 1) for kv in bag.split("&")))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class ServiceSendTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator().start()
        assert cls.emu.create_device("send1", DEVICE1_KEY, DEVICE1_KEY)[0] == 200

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def run_send(self, *args, key=OWNER_KEY, ca=True, url=None):
        env = dict(os.environ, IOTHUB_CONNECTION_STRING="HostName=localhost;SharedAccessKeyName=iothubowner;"
                                                        "SharedAccessKey=" + key)
        env.pop("IOTHUB_CA_FILE", None)
        argv = [SERVICE, "send"] + list(args) + ["--amqp-url", url or "amqps://localhost:%d" % self.emu.amqps_port]
        if ca:
            argv += ["--ca-file", self.emu.ca_path]
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT + 30)
        return p.returncode, p.stdout, p.stderr

    def test_properties_and_feedback(self):
        dev = PahoDevice(self.emu, "send1")
        try:
            rc, out, err = self.run_send("send1", "hello device", "--property", "color=blue green", "--property",
                                         "n=1", "--message-id", "mid-send-1", "--expiry", "600", "--wait-feedback")
            self.assertEqual(rc, 0, err)
            lines = out.splitlines()
            self.assertEqual(lines[0], "Sent message mid-send-1 to device send1")
            self.assertTrue(lines[1].startswith("Feedback: Success for message mid-send-1 (device send1, "), out)
            payload, bag = dev.message()
            self.assertEqual(payload, b"hello device")
            self.assertEqual(bag["color"], "blue green")
            self.assertEqual(bag["n"], "1")
            self.assertEqual(bag["$.mid"], "mid-send-1")
            self.assertEqual(bag["$.to"], "/devices/send1/messages/devicebound")
            self.assertIn("$.exp", bag)  # --expiry sets absolute-expiry-time
            # --json: one object for the send, then the records as the hub sent them
            rc, out, err = self.run_send("send1", "two", "--message-id", "mid-send-2", "--wait-feedback", "--json")
            self.assertEqual(rc, 0, err)
            sent, record = [json.loads(line) for line in out.splitlines()]
            self.assertEqual(sent, {"messageId": "mid-send-2", "deviceId": "send1"})
            self.assertEqual((record["originalMessageId"], record["statusCode"], record["deviceId"]),
                             ("mid-send-2", "Success", "send1"))
            self.assertEqual(dev.message()[0], b"two")
        finally:
            dev.close()

    def test_errors_and_exit_statuses(self):
        rc, _, err = self.run_send("no-such-device", "x")
        self.assertEqual(rc, 5, err)
        self.assertIn("amqp:not-found", err)
        rc, _, err = self.run_send("send1", "x", key=WRONG_KEY)
        self.assertEqual(rc, 4, err)
        self.assertIn("unauthorized", err)
        rc, _, err = self.run_send("send1", "x", ca=False)
        self.assertEqual(rc, 3, err)
        self.assertIn("--ca-file", err)
        rc, _, err = self.run_send("send1", "x", url="amqps://localhost:1")
        self.assertEqual(rc, 3, err)
        rc, _, err = self.run_send("send1", "x", "--ack", "sometimes")
        self.assertEqual(rc, 2, err)
        # nobody completes it: the accepted message's feedback never comes
        self.assertEqual(self.emu.create_device("send-offline")[0], 200)
        rc, out, err = self.run_send("send-offline", "x", "--wait-feedback", "--timeout", "2")
        self.assertEqual(rc, 7, err)
        self.assertIn("Sent message", out)
        self.assertIn("feedback record did not come in time", err)

    def test_the_51st_is_refused(self):
        self.assertEqual(self.emu.create_device("send-full")[0], 200)
        plain = "amqp://127.0.0.1:%d" % self.emu.amqp_port  # the dev port: quicker, and SASL PLAIN over TCP
        for i in range(50):
            rc, _, err = self.run_send("send-full", "m%d" % i, ca=False, url=plain)
            self.assertEqual(rc, 0, err)
        rc, _, err = self.run_send("send-full", "m51", ca=False, url=plain)
        self.assertEqual(rc, 8, err)
        self.assertIn("amqp:resource-limit-exceeded", err)


class IothubDeviceTest(unittest.TestCase):
    """iothub-service send -> emulator -> iothub-device, both our programs, over TLS."""

    def test_iothub_device_prints_each_message(self):
        with Emulator() as emu:
            env = dict(os.environ, IOTHUB_CONNECTION_STRING="HostName=localhost;SharedAccessKeyName=iothubowner;"
                                                            "SharedAccessKey=" + OWNER_KEY)

            def send(*args):
                p = subprocess.run([SERVICE, "send", "device1"] + list(args) +
                                   ["--amqp-url", "amqps://localhost:%d" % emu.amqps_port, "--ca-file", emu.ca_path],
                                   env=env, capture_output=True, text=True, timeout=TIMEOUT + 30)
                self.assertEqual(p.returncode, 0, p.stderr)
                return p.stdout

            send("while you were away", "--message-id", "mid-offline")  # queued for the offline device
            dev = subprocess.Popen([os.environ["IOTHUB_DEVICE_BIN"], "--connection-string",
                                    emu.device_connection_string(), "--port", str(emu.mqtts_port), "--ca-file",
                                    emu.ca_path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            lines = queue.Queue()
            threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in dev.stdout], daemon=True).start()

            def until(prefix):
                seen = []
                while True:
                    line = lines.get(timeout=TIMEOUT)
                    seen.append(line)
                    if line.startswith(prefix):
                        return seen

            def properties(*want):
                """The property lines after a message line, read until every wanted one has come."""
                got = set()
                while not set(want) <= got:
                    line = lines.get(timeout=TIMEOUT)
                    self.assertTrue(line.startswith("  "), (line, got))
                    got.add(line)

            try:
                until("connected")
                until("C2D message: while you were away")
                properties("  $.mid: mid-offline")
                out = send("hello\tfrom service", "--property", "color=red", "--message-id", "mid-dev-1",
                           "--wait-feedback")
                self.assertIn("Feedback: Success for message mid-dev-1 (device device1, ", out)
                until("C2D message: hello\\x09from service")  # a control byte is shown escaped
                properties("  $.mid: mid-dev-1", "  color: red", "  $.to: /devices/device1/messages/devicebound")
            finally:
                dev.terminate()
                dev.wait(10)


if __name__ == "__main__":
    unittest.main()
