"""test_mqtt_sessions.py -- persisted MQTT sessions (CleanSession 0), as the hub keeps them and as the official
Python device SDK (azure-iot-device 2.x) depends on them: it connects with clean_session=False, subscribes to
each feature's topic once, and never subscribes again after a reconnect (iothub-protocol.md §1.8). The SDK
itself is not installable here, so its bytes are reproduced by hand (RawDevice: its CONNECT flags, username and
token form, its SUBSCRIBE at QoS 1), and paho stands in for the generic client. Also covered: CleanSession 1
discards the session, takeover keeps it for the newcomer, a device's session is not its module's, deleting the
identity deletes its session, and sessions survive an emulator restart (SIGTERM and kill -9)."""

import json
import socket
import struct
import threading
import time
import unittest
import urllib.parse

import paho.mqtt.client as mqtt

from harness import DEVICE1_KEY, Emulator, RawMqtt, mqtt_packet as packet, mqtt_string

WAIT = 15  # generous protocol deadline for any single event
METHODS = "$iothub/methods/POST/#"
# What azure-iot-device 2.14 puts in the username: api-version 2019-10-01 and its user agent, query values
# URL-encoded with urllib.parse.quote (pipeline_stages_iothub_mqtt.py, user_agent.py).
PY_SDK_AGENT = "py-azure-iot-device/2.14.0(3.11.2;Linux 6.1.0-28-amd64;x86_64)"


class RawDevice(RawMqtt):
    """An MQTT 3.1.1 client over TLS written byte by byte, so the test controls every flag."""

    def __init__(self, emu, device_id="device1", key=DEVICE1_KEY, module_id=None):
        super().__init__()
        self.emu, self.device_id, self.key, self.module_id = emu, device_id, key, module_id
        self.client_id = device_id + ("/" + module_id if module_id else "")

    def python_sdk_username(self):
        query = urllib.parse.urlencode([("api-version", "2019-10-01"), ("DeviceClientType", PY_SDK_AGENT)],
                                       quote_via=urllib.parse.quote)
        return "%s/%s/?%s" % (self.emu.hostname, self.client_id, query)

    def connect(self, clean, ttl=3600, keepalive=60):
        """CONNECT as the Python SDK sends it (username + password flags, the clean flag as asked); returns
        (session_present, return_code)."""
        raw = socket.create_connection(("127.0.0.1", self.emu.mqtts_port), timeout=WAIT)
        self.sock = self.emu.tls_context().wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        flags = 0xC0 | (0x02 if clean else 0)
        token = self.emu.device_token(self.device_id, self.key, module_id=self.module_id, ttl=ttl)
        body = mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
        body += mqtt_string(self.client_id) + mqtt_string(self.python_sdk_username()) + mqtt_string(token)
        self.sock.sendall(packet(0x10, body))
        kind, payload = self.read_packet()
        assert kind == 0x20 and len(payload) == 2, (kind, payload)
        return payload[0] & 1, payload[1]

    def subscribe(self, topic, qos=1, packet_id=1):
        self.sock.sendall(packet(0x82, struct.pack("!H", packet_id) + mqtt_string(topic) + bytes([qos])))
        kind, payload = self.read_packet()
        assert kind == 0x90, kind
        return list(payload[2:])

    def answer_one_method(self, status=200, body=None):
        """Waits for a method request, answers it, and returns its method name."""
        while True:
            topic = self.read_publish_topic()
            if topic.startswith("$iothub/methods/POST/"):
                name, rid = topic[len("$iothub/methods/POST/"):].split("/?$rid=")
                reply = "$iothub/methods/res/%d/?$rid=%s" % (status, rid)
                self.sock.sendall(packet(0x30, mqtt_string(reply) + json.dumps(body).encode()))
                return name

    def drop(self):
        """A network blip: the TCP connection goes without DISCONNECT."""
        self.sock.close()

    def disconnect(self):
        self.sock.sendall(b"\xe0\x00")
        self.sock.close()


class Invocation:
    """A direct-method call on a thread, so the test can play the device meanwhile."""

    def __init__(self, emu, device_id="device1", module_id=None, connect_timeout=0):
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(emu, device_id, module_id, connect_timeout))
        self.thread.start()

    def _run(self, emu, device_id, module_id, connect_timeout):
        self.result = emu.invoke(device_id, method="reboot", payload={"delay": 1}, response_timeout=10,
                                 module_id=module_id, connect_timeout=connect_timeout)

    def wait(self):
        self.thread.join(WAIT * 2)
        return self.result


class SessionTest(unittest.TestCase):
    def setUp(self):
        self.emu = Emulator().start()

    def tearDown(self):
        self.emu.stop()

    def call_is_answered_by(self, dev, **kw):
        call = Invocation(self.emu, dev.device_id, dev.module_id, **kw)
        self.assertEqual(dev.answer_one_method(200, {"ok": True}), "reboot")
        status, _, body = call.wait()
        self.assertEqual((status, body), (200, {"status": 200, "payload": {"ok": True}}))

    def assert_not_online(self, device_id="device1", module_id=None):
        status, _, body = self.emu.invoke(device_id, module_id=module_id)
        self.assertEqual(status, 404, body)
        self.assertEqual(json.loads(body["Message"])["errorCode"], 404103, body)  # the hub's envelope B

    # ---- the Python SDK's pattern, byte for byte ----
    def test_python_sdk_subscribes_once_and_keeps_getting_calls_across_reconnects(self):
        dev = RawDevice(self.emu)
        self.assertEqual(dev.connect(clean=False), (0, 0))  # nothing kept yet
        self.assertEqual(dev.subscribe(METHODS, qos=1), [1])
        self.call_is_answered_by(dev)
        dev.drop()  # a network blip
        self.assertEqual(dev.connect(clean=False), (1, 0))  # session present; no SUBSCRIBE follows
        self.call_is_answered_by(dev)
        # Its SAS renewal: disconnect, then connect with a new token (another expiry, so another signature).
        dev.disconnect()
        self.assertEqual(dev.connect(clean=False, ttl=7200), (1, 0))
        self.call_is_answered_by(dev)
        self.assertIn("device1: session restored (CleanSession 0): methods:1", self.emu.log_text())

    def test_a_call_waiting_for_the_device_is_delivered_to_the_restored_session(self):
        dev = RawDevice(self.emu)
        dev.connect(clean=False)
        dev.subscribe(METHODS)
        dev.disconnect()
        call = Invocation(self.emu, connect_timeout=20)  # waits for the device to come back
        self.assertEqual(dev.connect(clean=False), (1, 0))
        self.assertEqual(dev.answer_one_method(), "reboot")
        self.assertEqual(call.wait()[0], 200)

    def test_health_counts_restored_method_listeners(self):
        dev = RawDevice(self.emu)
        dev.connect(clean=False)
        dev.subscribe(METHODS)
        dev.drop()
        deadline = time.monotonic() + WAIT
        while self.emu.rest("GET", "/health")[2]["methodListeners"] and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the emulator's own state; the drop has no event to await here
        self.assertEqual(self.emu.rest("GET", "/health")[2]["methodListeners"], 0)
        dev.connect(clean=False)
        self.assertEqual(self.emu.rest("GET", "/health")[2]["methodListeners"], 1)

    def restarted(self, sig):
        """Stops the emulator with sig and starts a new one on the same data dir (new ports)."""
        self.emu.stop(sig=sig)
        again = Emulator(data_dir=self.emu.data_dir)
        again.tmp = self.emu.tmp
        self.emu = again.start()
        return again

    def test_the_session_survives_an_emulator_restart(self):
        for sig in (15, 9):  # SIGTERM, then kill -9: the SUBACK went out only after the session was stored
            with self.subTest(signal=sig):
                dev = RawDevice(self.emu)
                dev.connect(clean=False)
                self.assertEqual(dev.subscribe(METHODS, qos=1), [1])
                self.restarted(sig)
                dev.emu = self.emu
                self.assertEqual(dev.connect(clean=False), (1, 0))
                self.call_is_answered_by(dev)
                dev.disconnect()

    def test_clean_session_after_a_restart_still_discards(self):
        dev = RawDevice(self.emu)
        dev.connect(clean=False)
        dev.subscribe(METHODS)
        self.restarted(15)
        dev.emu = self.emu
        self.assertEqual(dev.connect(clean=True), (0, 0))
        self.assert_not_online()
        dev.disconnect()
        self.restarted(15)
        dev.emu = self.emu
        self.assertEqual(dev.connect(clean=False), (0, 0))

    # ---- CleanSession 1 ----
    def test_clean_session_discards_the_kept_session(self):
        dev = RawDevice(self.emu)
        dev.connect(clean=False)
        dev.subscribe(METHODS)
        dev.disconnect()
        self.assertEqual(dev.connect(clean=True), (0, 0))
        self.assert_not_online()  # nothing arrives until it subscribes
        dev.disconnect()
        self.assertEqual(dev.connect(clean=False), (0, 0))  # and nothing was kept for later either
        self.assert_not_online()

    def test_clean_session_subscriptions_are_not_kept(self):
        dev = RawDevice(self.emu)
        dev.connect(clean=True)
        dev.subscribe(METHODS)
        self.call_is_answered_by(dev)
        dev.disconnect()
        self.assertEqual(dev.connect(clean=False), (0, 0))
        self.assert_not_online()

    # ---- identities ----
    def test_takeover_keeps_the_session_for_the_newcomer(self):
        old = RawDevice(self.emu)
        old.connect(clean=False)
        old.subscribe(METHODS)
        new = RawDevice(self.emu)
        self.assertEqual(new.connect(clean=False), (1, 0))
        with self.assertRaises((EOFError, OSError)):
            old.read_packet()  # the first connection was closed
        self.call_is_answered_by(new)

    def test_a_devices_session_is_not_its_modules(self):
        self.assertEqual(self.emu.rest("PUT", "/devices/device1/modules/mod1?api-version=2021-04-12",
                                       {"deviceId": "device1", "moduleId": "mod1"})[0], 201)
        key = self.emu.rest("GET", "/devices/device1/modules/mod1?api-version=2021-04-12")[2][
            "authentication"]["symmetricKey"]["primaryKey"]
        dev = RawDevice(self.emu)
        dev.connect(clean=False)
        dev.subscribe(METHODS)
        mod = RawDevice(self.emu, key=key, module_id="mod1")
        self.assertEqual(mod.connect(clean=False), (0, 0))
        self.assert_not_online(module_id="mod1")
        self.assertEqual(mod.subscribe(METHODS), [1])
        mod.disconnect()
        self.assertEqual(mod.connect(clean=False), (1, 0))
        self.call_is_answered_by(mod)
        self.call_is_answered_by(dev)

    def test_deleting_the_identity_deletes_its_session(self):
        key = "QmFzZTY0S2V5Rm9yVGhlU2Vzc2lvblRlc3QxMjM0NTY="
        self.assertEqual(self.emu.create_device("dev2", primary=key, secondary=key)[0], 200)
        dev = RawDevice(self.emu, "dev2", key)
        dev.connect(clean=False)
        dev.subscribe(METHODS)
        dev.disconnect()
        self.assertEqual(self.emu.rest("DELETE", "/devices/dev2?api-version=2021-04-12",
                                       headers={"If-Match": "*"})[0], 204)
        self.assertEqual(self.emu.create_device("dev2", primary=key, secondary=key)[0], 200)
        self.assertEqual(dev.connect(clean=False), (0, 0))
        self.assert_not_online("dev2")

    def test_disabling_the_identity_keeps_its_session(self):
        dev = RawDevice(self.emu)
        dev.connect(clean=False)
        dev.subscribe(METHODS)
        dev.disconnect()
        ident = self.emu.rest("GET", "/devices/device1?api-version=2021-04-12")[2]
        for status in ("disabled", "enabled"):
            ident["status"] = status
            code, _, ident = self.emu.rest("PUT", "/devices/device1?api-version=2021-04-12", ident,
                                           headers={"If-Match": "*"})
            self.assertEqual(code, 200, ident)
        self.assertEqual(dev.connect(clean=False), (1, 0))
        self.call_is_answered_by(dev)

    # ---- paho, the generic client ----
    def test_paho_without_resubscribing(self):
        got = threading.Event()
        present = []

        def on_connect(c, u, flags, rc):
            present.append(flags.get("session present"))

        def on_message(c, u, msg):
            rid = msg.topic.split("?$rid=")[1]
            c.publish("$iothub/methods/res/200/?$rid=" + rid, b'"pong"')
            got.set()

        def client():
            c = mqtt.Client(client_id="device1", clean_session=False, protocol=mqtt.MQTTv311)
            c.tls_set(ca_certs=self.emu.ca_path)
            c.username_pw_set("localhost/device1/?api-version=2021-04-12", self.emu.device_token())
            c.on_connect, c.on_message = on_connect, on_message
            return c

        first = client()
        first.connect("localhost", self.emu.mqtts_port, 60)
        first.loop_start()
        sub = first.subscribe(METHODS, qos=0)
        self.assertEqual(sub[0], mqtt.MQTT_ERR_SUCCESS)
        deadline = time.monotonic() + WAIT
        while self.emu.rest("GET", "/health")[2]["methodListeners"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the SUBACK lands on paho's thread; /health is the emulator's view of it
        first.disconnect()
        first.loop_stop()
        second = client()  # a new client object: it knows of no subscription
        second.connect("localhost", self.emu.mqtts_port, 60)
        second.loop_start()
        try:
            status, _, body = self.emu.invoke("device1", connect_timeout=10)
            self.assertEqual((status, body), (200, {"status": 200, "payload": "pong"}))
            self.assertTrue(got.is_set())
            self.assertEqual(present[-1], 1)
        finally:
            second.disconnect()
            second.loop_stop()


if __name__ == "__main__":
    unittest.main()
