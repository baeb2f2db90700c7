"""test_mqtt_device_side.py -- the emulator's device side against third-party MQTT clients: paho-mqtt (Debian's
python3-paho-mqtt), mosquitto_sub, and hand-built MQTT bytes over TLS. Covers: connect over TLS and over
WebSocket, CONNACK 5 for each credential failure, the hub's close rules (QoS 2, forbidden subscription, bad
bytes), keep-alive, takeover, token-expiry disconnect, and method delivery to exactly one of two devices."""

import json
import socket
import ssl
import struct
import subprocess
import threading
import time
import unittest

import paho.mqtt.client as mqtt

from harness import DEVICE1_KEY, Emulator, mqtt_string

WAIT = 15  # generous protocol deadline for any single event


class Device:
    """A paho client for one identity, recording what happens as threading events. Every instance is stopped
    at the end of its test (paho would otherwise reconnect and take over later tests' connections)."""

    live = []

    def __init__(self, emu, device_id="device1", key=DEVICE1_KEY, token=None, websocket=False, keepalive=60,
                 module_id=None):
        client_id = device_id + ("/" + module_id if module_id else "")
        self.client = mqtt.Client(client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311,
                                  transport="websockets" if websocket else "tcp")
        if websocket:
            self.client.ws_set_options(path="/$iothub/websocket")
        self.client.tls_set(ca_certs=emu.ca_path, tls_version=ssl.PROTOCOL_TLSv1_2)
        user = "%s/%s/?api-version=2021-04-12" % (emu.hostname, client_id)
        self.client.username_pw_set(user, token or emu.device_token(device_id, key, module_id=module_id))
        self.port = emu.https_port if websocket else emu.mqtts_port
        self.keepalive = keepalive
        self.connack = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.messages = []
        self.got_message = threading.Event()
        self.auto_reply = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, rc: self.disconnected.set()
        self.client.on_subscribe = lambda c, u, mid, granted: self.subscribed.set()
        self.client.on_message = self._on_message
        Device.live.append(self)

    def _on_connect(self, client, userdata, flags, rc):
        self.connack = rc
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.append((msg.topic, msg.payload))
        self.got_message.set()
        if self.auto_reply and msg.topic.startswith("$iothub/methods/POST/"):
            rid = msg.topic.split("?$rid=")[1]
            status, body = self.auto_reply
            client.publish("$iothub/methods/res/%d/?$rid=%s" % (status, rid), json.dumps(body), qos=0)

    def connect(self):
        self.client.connect("localhost", self.port, keepalive=self.keepalive)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        return self.connack

    def subscribe_methods(self):
        self.client.subscribe("$iothub/methods/POST/#", qos=0)
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def raw_connect_packet(client_id, username, password, keepalive):
    body = mqtt_string("MQTT") + bytes([4, 0xC0]) + struct.pack("!H", keepalive)
    body += mqtt_string(client_id) + mqtt_string(username) + mqtt_string(password)
    assert len(body) < 16384
    return bytes([0x10]) + bytes([(len(body) & 0x7F) | 0x80, len(body) >> 7]) + body


class DeviceSideTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator().start()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def tearDown(self):
        for d in Device.live:
            d.client.reconnect_delay_set(3600, 3600)
            d.client.disconnect()
            d.client.loop_stop()
        Device.live.clear()

    def raw_tls(self):
        raw = socket.create_connection(("127.0.0.1", self.emu.mqtts_port), timeout=WAIT)
        return self.emu.tls_context().wrap_socket(raw, server_hostname="localhost")

    def assert_closed_by_server(self, sock, within=WAIT):
        sock.settimeout(within)
        data = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return data
                data += chunk
        except (ConnectionResetError, ssl.SSLError):
            return data

    # ---- connect ----
    def test_connect_over_tls(self):
        d = Device(self.emu)
        self.assertEqual(d.connect(), 0)
        d.close()

    def test_connect_over_websocket(self):
        d = Device(self.emu, websocket=True)
        self.assertEqual(d.connect(), 0)
        d.close()

    def test_connack_5_for_wrong_key(self):
        d = Device(self.emu, key="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        self.assertEqual(d.connect(), 5)
        self.assertTrue(d.disconnected.wait(WAIT))

    def test_connack_5_for_expired_token(self):
        token = self.emu.device_token(expiry=time.time() - 60)
        d = Device(self.emu, token=token)
        self.assertEqual(d.connect(), 5)

    def test_connack_5_for_unknown_device(self):
        d = Device(self.emu, device_id="nobody")
        self.assertEqual(d.connect(), 5)

    def test_connack_5_for_disabled_device(self):
        status, _, body = self.emu.create_device("disabled1", status="disabled")
        self.assertEqual(status, 200, body)
        key = body["authentication"]["symmetricKey"]["primaryKey"]
        d = Device(self.emu, device_id="disabled1", key=key)
        self.assertEqual(d.connect(), 5)

    def test_connack_5_for_other_devices_token(self):
        status, _, body = self.emu.create_device("other1")
        self.assertEqual(status, 200, body)
        token = self.emu.device_token("other1", body["authentication"]["symmetricKey"]["primaryKey"])
        d = Device(self.emu, device_id="device1", token=token)
        self.assertEqual(d.connect(), 5)

    # ---- the hub's close rules ----
    def test_qos2_publish_closes_connection(self):
        d = Device(self.emu)
        self.assertEqual(d.connect(), 0)
        d.client.publish("devices/device1/messages/events/", b"x", qos=2)
        self.assertTrue(d.disconnected.wait(WAIT), "QoS 2 publish did not close the connection")

    def test_forbidden_subscription_closes_connection(self):
        d = Device(self.emu)
        self.assertEqual(d.connect(), 0)
        d.client.subscribe("#", qos=0)
        self.assertTrue(d.disconnected.wait(WAIT), "subscription to # did not close the connection")
        self.assertFalse(d.subscribed.is_set())

    def test_telemetry_qos1_is_acknowledged(self):
        d = Device(self.emu)
        self.assertEqual(d.connect(), 0)
        self.emu.rest("DELETE", "/emulator/telemetry")
        info = d.client.publish("devices/device1/messages/events/a=b&%24.ct=application%2Fjson", b'{"t":1}', qos=1)
        info.wait_for_publish()  # returns only on PUBACK
        self.assertTrue(info.is_published())
        self.assertFalse(d.disconnected.is_set())
        d.close()
        # The message is kept for inspection, with its property bag decoded.
        status, _, kept = self.emu.rest("GET", "/emulator/telemetry/device1")
        self.assertEqual(status, 200)
        self.assertEqual(len(kept), 1, kept)
        self.assertEqual(kept[0]["body"], '{"t":1}')
        self.assertEqual(kept[0]["properties"], {"a": "b", "$.ct": "application/json"})
        self.assertGreaterEqual(self.emu.rest("GET", "/health")[2]["telemetryReceived"], 1)

    def test_publish_to_other_devices_topic_closes(self):
        d = Device(self.emu)
        self.assertEqual(d.connect(), 0)
        d.client.publish("devices/device2/messages/events/", b"x", qos=1)
        self.assertTrue(d.disconnected.wait(WAIT))

    def test_mqtt5_connect_gets_connack_5(self):
        s = self.raw_tls()
        body = mqtt_string("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 60) + b"\x00" + mqtt_string("device1")
        s.sendall(bytes([0x10, len(body)]) + body)
        self.assertEqual(self.assert_closed_by_server(s), b"\x20\x02\x00\x05")
        self.assertIn("MQTT 5 is not supported", self.emu.log_text())

    def test_garbage_closes_only_that_connection(self):
        good = Device(self.emu)
        self.assertEqual(good.connect(), 0)
        s = self.raw_tls()
        s.sendall(b"\x10\xff\xff\xff\xff\x7f garbage")  # remaining length over 4 bytes
        self.assertEqual(self.assert_closed_by_server(s), b"")
        s2 = self.raw_tls()
        s2.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not MQTT at all
        self.assertEqual(self.assert_closed_by_server(s2), b"")
        self.assertFalse(good.disconnected.is_set(), "another client's connection was affected")
        good.subscribe_methods()
        good.close()

    def test_no_connect_within_deadline_closes(self):
        with Emulator(extra_args=["--connect-timeout", "1"]) as emu:
            raw = socket.create_connection(("127.0.0.1", emu.mqtt_port), timeout=WAIT)
            self.assertEqual(self.assert_closed_by_server(raw), b"")

    def test_half_open_tls_handshake_is_closed(self):
        with Emulator(extra_args=["--connect-timeout", "1"]) as emu:
            raw = socket.create_connection(("127.0.0.1", emu.mqtts_port), timeout=WAIT)
            raw.sendall(b"\x16\x03\x01\x00\x05")  # the start of a ClientHello, never finished
            self.assertEqual(self.assert_closed_by_server(raw), b"")

    # ---- keep-alive, takeover, token expiry ----
    def test_keepalive_expiry_closes_silent_client(self):
        s = self.raw_tls()
        user = "localhost/device1/?api-version=2021-04-12"
        s.sendall(raw_connect_packet("device1", user, self.emu.device_token(), keepalive=1))
        s.settimeout(WAIT)
        connack = s.recv(4)  # accepted; session present depends on what earlier tests left (CleanSession 0)
        self.assertEqual((connack[:2], connack[3]), (b"\x20\x02", 0))
        start = time.monotonic()
        self.assertEqual(self.assert_closed_by_server(s), b"")
        self.assertGreaterEqual(time.monotonic() - start, 1.0)  # not before 1.5 x 1 s (with slack)

    def test_second_connection_takes_over(self):
        a = Device(self.emu)
        self.assertEqual(a.connect(), 0)
        b = Device(self.emu)
        self.assertEqual(b.connect(), 0)
        self.assertTrue(a.disconnected.wait(WAIT), "the first connection was not closed")
        a.client.loop_stop()
        b.subscribe_methods()
        b.auto_reply = (200, {"who": "b"})
        status, _, body = self.emu.invoke("device1")
        self.assertEqual((status, body), (200, {"status": 200, "payload": {"who": "b"}}))
        b.close()

    def test_token_expiry_disconnects(self):
        d = Device(self.emu, token=self.emu.device_token(ttl=3))
        self.assertEqual(d.connect(), 0)
        self.assertTrue(d.disconnected.wait(WAIT), "not disconnected when the token expired")

    # ---- the forms other SDKs use ----
    def test_c_sdk_token_with_raw_resource_uri(self):
        d = Device(self.emu, token=self.emu.device_token(encode=False))  # sr=localhost/devices/device1, unencoded
        self.assertEqual(d.connect(), 0)
        d.close()

    def ws_upgrade(self, protocol):
        raw = socket.create_connection(("127.0.0.1", self.emu.https_port), timeout=WAIT)
        s = self.emu.tls_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(("GET /$iothub/websocket?iothub-no-client-cert=true HTTP/1.1\r\nHost: localhost\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n" % protocol).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                break
            head += chunk
        return s, head.decode()

    def test_websocket_with_the_c_sdks_upper_case_subprotocol(self):
        s, head = self.ws_upgrade("MQTT")
        self.assertTrue(head.startswith("HTTP/1.1 101"), head)
        self.assertIn("Sec-WebSocket-Protocol: MQTT\r\n", head)
        self.assertIn("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", head)
        connect = raw_connect_packet("device1", "localhost/device1/?api-version=2020-09-30", self.emu.device_token(), 60)
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(connect))
        s.sendall(bytes([0x82, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask + payload)
        frame = s.recv(6)  # a binary frame carrying CONNACK 0 (session present: whatever earlier tests left)
        self.assertEqual((frame[:4], frame[5]), (b"\x82\x04\x20\x02", 0))
        s.close()

    def test_websocket_refusal_ends_with_a_close_frame(self):
        s, head = self.ws_upgrade("mqtt")
        self.assertTrue(head.startswith("HTTP/1.1 101"), head)
        connect = raw_connect_packet("device1", "localhost/device1/?api-version=2021-04-12",
                                     self.emu.device_token(key="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), 60)
        mask = b"\x05\x06\x07\x08"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(connect))
        s.sendall(bytes([0x82, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask + payload)
        data = self.assert_closed_by_server(s)
        self.assertEqual(data, b"\x82\x04\x20\x02\x00\x05" + b"\x88\x02\x03\xe8")  # CONNACK 5, then close 1000

    def test_websocket_without_mqtt_subprotocol_is_refused(self):
        s, head = self.ws_upgrade("chat")
        self.assertTrue(head.startswith("HTTP/1.1 400"), head)
        s.close()

    def test_rest_shares_the_https_port(self):
        import urllib.request
        with urllib.request.urlopen("https://localhost:%d/health" % self.emu.https_port,
                                    context=self.emu.tls_context(), timeout=WAIT) as resp:
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["status"], "ok")

    # ---- registry follows presence ----
    def test_registry_shows_connection_state(self):
        status, _, before = self.emu.rest("GET", "/devices/device1?api-version=2021-04-12")
        self.assertEqual((status, before["connectionState"]), (200, "Disconnected"))
        d = Device(self.emu)
        self.assertEqual(d.connect(), 0)
        _, _, during = self.emu.rest("GET", "/devices/device1?api-version=2021-04-12")
        self.assertEqual(during["connectionState"], "Connected")
        self.assertNotEqual(during["connectionStateUpdatedTime"], "0001-01-01T00:00:00Z")
        d.close()
        deadline = time.monotonic() + WAIT
        state = "Connected"
        while state == "Connected" and time.monotonic() < deadline:  # no event to await over REST: poll
            state = self.emu.rest("GET", "/devices/device1?api-version=2021-04-12")[2]["connectionState"]
            time.sleep(0.05)
        self.assertEqual(state, "Disconnected")

    def test_disabling_a_device_closes_its_connection(self):
        status, _, body = self.emu.create_device("tobedisabled")
        self.assertEqual(status, 200, body)
        d = Device(self.emu, device_id="tobedisabled", key=body["authentication"]["symmetricKey"]["primaryKey"])
        self.assertEqual(d.connect(), 0)
        body["status"] = "disabled"
        status, _, _ = self.emu.rest("PUT", "/devices/tobedisabled?api-version=2021-04-12", body,
                                     headers={"If-Match": '"*"'})
        self.assertEqual(status, 200)
        self.assertTrue(d.disconnected.wait(WAIT), "the disabled device stayed connected")

    def test_deleted_device_is_forgotten(self):
        def twin_client(key):
            d = Device(self.emu, device_id="twinner", key=key)
            self.assertEqual(d.connect(), 0)
            d.client.subscribe("$iothub/twin/res/#", qos=0)
            self.assertTrue(d.subscribed.wait(WAIT))
            return d

        def request(d, topic, body=b""):
            d.got_message.clear()
            d.client.publish(topic, body, qos=0)
            self.assertTrue(d.got_message.wait(WAIT), "no twin response")
            return d.messages[-1]

        key = self.emu.create_device("twinner")[2]["authentication"]["symmetricKey"]["primaryKey"]
        d = twin_client(key)
        topic, _ = request(d, "$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"a":1}')
        self.assertTrue(topic.startswith("$iothub/twin/res/204/?$rid=1&$version="), topic)
        _, doc = request(d, "$iothub/twin/GET/?$rid=2")
        self.assertEqual(json.loads(doc)["reported"]["a"], 1)
        self.assertEqual(self.emu.rest("DELETE", "/devices/twinner?api-version=2021-04-12",
                                       headers={"If-Match": "*"})[0], 204)
        self.assertTrue(d.disconnected.wait(WAIT), "the deleted device stayed connected")
        d.client.loop_stop()
        key = self.emu.create_device("twinner")[2]["authentication"]["symmetricKey"]["primaryKey"]
        d2 = twin_client(key)
        _, doc = request(d2, "$iothub/twin/GET/?$rid=3")
        self.assertNotIn("a", json.loads(doc)["reported"])

    # ---- methods ----
    def test_method_goes_to_exactly_one_of_two_devices(self):
        status, _, body = self.emu.create_device("device2")
        self.assertEqual(status, 200, body)
        key2 = body["authentication"]["symmetricKey"]["primaryKey"]
        one = Device(self.emu)
        two = Device(self.emu, device_id="device2", key=key2)
        for d in (one, two):
            self.assertEqual(d.connect(), 0)
            d.subscribe_methods()
        two.auto_reply = (201, {"Response": "from two"})
        status, headers, body = self.emu.invoke("device2", payload={"method_number": "42"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"status": 201, "payload": {"Response": "from two"}})
        self.assertTrue(headers["Content-Type"].startswith("application/json"))
        self.assertEqual(len(two.messages), 1)
        topic, payload = two.messages[0]
        self.assertEqual(topic, "$iothub/methods/POST/DeviceMethod/?$rid=1")
        self.assertEqual(json.loads(payload), {"method_number": "42"})
        self.assertEqual(one.messages, [])
        one.close()
        two.close()

    def test_method_over_websocket(self):
        d = Device(self.emu, websocket=True)
        self.assertEqual(d.connect(), 0)
        d.subscribe_methods()
        d.auto_reply = (200, {"Response": "This is the response from the device"})
        status, _, body = self.emu.invoke("device1", payload={"method_number": "42"})
        self.assertEqual((status, body["payload"]), (200, {"Response": "This is the response from the device"}))
        d.close()

    def test_negative_device_status_is_passed_through_and_logged(self):
        d = Device(self.emu)
        self.assertEqual(d.connect(), 0)
        d.subscribe_methods()
        d.auto_reply = (-7, {"why": "negative"})
        status, _, body = self.emu.invoke("device1")
        self.assertEqual((status, body), (200, {"status": -7, "payload": {"why": "negative"}}))
        self.assertIn("DeviceMethod: answered, device status -7 (", self.emu.log_text())
        d.close()

    def test_mosquitto_sub_receives_method_request(self):
        token = self.emu.device_token()
        proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "localhost", "-p", str(self.emu.mqtts_port), "--cafile", self.emu.ca_path,
             "-V", "mqttv311", "-i", "device1", "-u", "localhost/device1/?api-version=2021-04-12", "-P", token,
             "-t", "$iothub/methods/POST/#", "-C", "1", "-v"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # The hub waits (connectTimeoutInSeconds) until mosquitto_sub has subscribed, then delivers; mosquitto_sub
        # exits after that one message without answering, so the call ends as the device going away: 404103.
        status, _, body = self.emu.invoke("device1", payload={"n": 1}, response_timeout=30, connect_timeout=30)
        out, _ = proc.communicate(timeout=WAIT)
        self.assertEqual(proc.returncode, 0, out)
        self.assertEqual(out.decode().strip(), '$iothub/methods/POST/DeviceMethod/?$rid=1 {"n":1}')
        self.assertEqual(status, 404, body)
        self.assertEqual(json.loads(body["Message"])["errorCode"], 404103)


if __name__ == "__main__":
    unittest.main(verbosity=2)
