"""test_amqp.py -- the AMQP front end of a real emulator, driven by an independent AMQP 1.0 client (Debian's
python3-qpid-proton) and by raw bytes: SASL ANONYMOUS, PLAIN (valid and bad tokens) and MSSBCBS (as uamqp sends
it), bare AMQP, $cbs put-token answered 200/401 with the request's message-id as correlation-id, links refused
without a token, cloud-to-device sends (accepted, unknown device, the 51st, kept across restarts by SIGTERM and kill -9), AMQP over TLS and the AMQPWSB10
WebSocket upgrade on the HTTPS port, and malformed or oversized frames closing only their own connection.
Ports are picked at run time. Skips itself (exit 77 via the CMake SKIP_RETURN_CODE) when proton is missing."""

import base64
import os
import socket
import ssl
import struct
import sys
import time
import unittest
import uuid

try:
    from proton import Message, SSLDomain
    from proton.utils import BlockingConnection, SendException
    from proton import ConnectionException, LinkException
except ImportError:  # pragma: no cover
    print("SKIPPED: python3-qpid-proton is not installed (apt-get install python3-qpid-proton)")
    sys.exit(77)

from harness import DEVICE1_KEY, Emulator, OWNER_KEY, RawMqtt, mqtt_packet, mqtt_string as mqtt_str, sas_token

SERVICE_KEY = "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY="
TIMEOUT = 20


def put_token(conn, token, audience="localhost", message_id=None):
    """A CBS put-token on conn; returns (status-code, the reply message)."""
    snd = conn.create_sender("$cbs")
    rcv = conn.create_receiver("$cbs", credit=5)
    mid = message_id if message_id is not None else str(uuid.uuid4())
    req = Message(body=token, id=mid, reply_to="cbs",
                  properties={"operation": "put-token", "type": "servicebus.windows.net:sastoken",
                              "name": audience})
    snd.send(req)
    rep = rcv.receive(timeout=TIMEOUT)  # pre-settled by the hub: nothing to accept
    snd.close()
    rcv.close()
    return rep.properties["status-code"], rep


def c2d(device_id, body="hello", **props):
    return Message(address="/devices/%s/messages/devicebound" % device_id, body=body.encode(),
                   id=str(uuid.uuid4()), properties=dict({"iothub-ack": "full"}, **props))


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def read_frame(s):
    head = recv_exact(s, 8)
    size = struct.unpack(">I", head[:4])[0]
    return head + recv_exact(s, size - 8)


def closed_soon(s, timeout=TIMEOUT):
    """True when the peer closes s (EOF or reset) within timeout; the bytes before are drained."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class AmqpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator().start()
        cls.url = "amqp://127.0.0.1:%d" % cls.emu.amqp_port

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def owner_token(self, ttl=3600, key=OWNER_KEY, policy="iothubowner"):
        return sas_token("localhost", key, ttl=ttl, key_name=policy, encode=False)

    def anonymous(self, **kw):
        return BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=True, allowed_mechs="ANONYMOUS", **kw)

    def test_anonymous_then_cbs_200_and_401(self):
        conn = self.anonymous()
        try:
            status, rep = put_token(conn, self.owner_token(), message_id=42)
            self.assertEqual(status, 200)
            self.assertEqual(rep.correlation_id, 42)  # a ulong id comes back as the same ulong
            status, rep = put_token(conn, self.owner_token(), audience="https://localhost", message_id="id-7")
            self.assertEqual(status, 200)
            self.assertEqual(rep.correlation_id, "id-7")
            status, _ = put_token(conn, self.owner_token(key=SERVICE_KEY))  # signed with the wrong key
            self.assertEqual(status, 401)
            status, _ = put_token(conn, self.owner_token(ttl=-60))  # expired
            self.assertEqual(status, 401)
            status, _ = put_token(conn, self.owner_token(), audience="otherhub.azure-devices.net")
            self.assertEqual(status, 401)
        finally:
            conn.close()

    def test_links_need_a_token_and_c2d(self):
        conn = self.anonymous()
        try:
            with self.assertRaises(LinkException) as cm:
                conn.create_sender("/messages/devicebound")
            self.assertIn("unauthorized-access", str(cm.exception))
            status, _ = put_token(conn, self.owner_token(key=SERVICE_KEY, policy="service"))
            self.assertEqual(status, 200)
            with self.assertRaises(LinkException) as cm:
                conn.create_sender("/no/such/node")
            self.assertIn("not-found", str(cm.exception))
            snd = conn.create_sender("/messages/devicebound")
            snd.send(c2d("device1", k1="v1"))
            with self.assertRaises(SendException):
                snd.send(c2d("no-such-device"))
        finally:
            conn.close()

    def test_queue_limit(self):
        self.assertEqual(self.emu.create_device("full1")[0], 200)
        conn = self.anonymous()
        try:
            self.assertEqual(put_token(conn, self.owner_token())[0], 200)
            snd = conn.create_sender("amqps://localhost/messages/devicebound")  # Python azure-iot-hub's target
            for i in range(50):
                snd.send(c2d("full1", body="m%d" % i))
            with self.assertRaises(SendException):
                snd.send(c2d("full1", body="m50"))
        finally:
            conn.close()

    def test_sasl_plain(self):
        good = self.owner_token(key=SERVICE_KEY, policy="service")
        conn = BlockingConnection(self.url, timeout=TIMEOUT, user="service@sas.root.localhost", password=good,
                                  allowed_mechs="PLAIN", allow_insecure_mechs=True)
        try:
            snd = conn.create_sender("/messages/devicebound")  # PLAIN's token authorises links, no CBS needed
            snd.send(c2d("device1"))
        finally:
            conn.close()
        bad = self.owner_token(key=OWNER_KEY, policy="service")
        with self.assertRaises(ConnectionException):
            BlockingConnection(self.url, timeout=TIMEOUT, user="service@sas.root.localhost", password=bad,
                               allowed_mechs="PLAIN", allow_insecure_mechs=True)

    def test_bare_amqp(self):
        conn = BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=False)
        try:
            self.assertEqual(put_token(conn, self.owner_token())[0], 200)
        finally:
            conn.close()

    def test_mssbcbs_bytes(self):
        """uamqp-c: SASL header, sasl-init MSSBCBS with empty bytes; needs an array of symbols offered."""
        with socket.create_connection(("127.0.0.1", self.emu.amqp_port), timeout=TIMEOUT) as s:
            s.sendall(b"AMQP\x03\x01\x00\x00")
            self.assertEqual(recv_exact(s, 8), b"AMQP\x03\x01\x00\x00")
            mechs = read_frame(s)
            self.assertEqual(mechs[5], 1)  # SASL frame
            self.assertEqual(mechs[8:11], b"\x00\x53\x40")  # sasl-mechanisms
            self.assertIn(b"\xe0", mechs[11:16])  # an array
            for m in (b"MSSBCBS", b"PLAIN", b"ANONYMOUS"):
                self.assertIn(bytes([len(m)]) + m, mechs)
            fields = b"\xa3\x07MSSBCBS" + b"\xa0\x00"
            body = b"\x00\x53\x41\xc0" + bytes([len(fields) + 1, 2]) + fields
            s.sendall(struct.pack(">IBBH", 8 + len(body), 2, 1, 0) + body)
            outcome = read_frame(s)
            self.assertEqual(outcome[8:11], b"\x00\x53\x44")
            self.assertEqual(outcome[-2:], b"\x50\x00")  # code ok
            s.sendall(b"AMQP\x00\x01\x00\x00")
            self.assertEqual(recv_exact(s, 8), b"AMQP\x00\x01\x00\x00")

    def test_malformed_and_oversized_close_only_that_connection(self):
        conn = self.anonymous()
        try:
            self.assertEqual(put_token(conn, self.owner_token())[0], 200)
            with socket.create_connection(("127.0.0.1", self.emu.amqp_port), timeout=TIMEOUT) as s:
                s.sendall(b"AMQP\x00\x01\x00\x00" + struct.pack(">IBBH", 16, 2, 0, 0) + b"\x00\x53\x10\x99" * 2)
                self.assertTrue(closed_soon(s))
            with socket.create_connection(("127.0.0.1", self.emu.amqp_port), timeout=TIMEOUT) as s:
                s.sendall(b"AMQP\x00\x01\x00\x00" + struct.pack(">IBBH", 10_000_000, 2, 0, 0))
                self.assertTrue(closed_soon(s))
            with socket.create_connection(("127.0.0.1", self.emu.amqp_port), timeout=TIMEOUT) as s:
                s.sendall(b"GET / HTTP/1.1\r\n\r\n")
                self.assertTrue(closed_soon(s))
            # the first client still works
            self.assertEqual(put_token(conn, self.owner_token())[0], 200)
        finally:
            conn.close()

    def test_amqps(self):
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(self.emu.ca_path)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        conn = BlockingConnection("amqps://localhost:%d" % self.emu.amqps_port, timeout=TIMEOUT,
                                  ssl_domain=domain, sasl_enabled=True, allowed_mechs="ANONYMOUS")
        try:
            self.assertEqual(put_token(conn, self.owner_token())[0], 200)
        finally:
            conn.close()

    def test_websocket_amqpwsb10(self):
        """The :443 sniff hands /$servicebus/websocket/ with AMQPWSB10 to the AMQP front."""
        ctx = self.emu.tls_context()
        for path in ("/$servicebus/websocket/", "/$iothub/websocket"):
            with socket.create_connection(("127.0.0.1", self.emu.https_port), timeout=TIMEOUT) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    key = base64.b64encode(os.urandom(16)).decode()
                    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Protocol: AMQPWSB10\r\n\r\n" % (path, key)).encode())
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += s.recv(1)
                    self.assertIn(b" 101 ", head.split(b"\r\n")[0])
                    self.assertIn(b"sec-websocket-protocol: amqpwsb10", head.lower())
                    payload = b"AMQP\x00\x01\x00\x00"
                    mask = os.urandom(4)
                    s.sendall(bytes([0x82, 0x80 | len(payload)]) + mask +
                              bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                    frame = recv_exact(s, 2)
                    self.assertEqual(frame[0], 0x82)
                    self.assertEqual(recv_exact(s, frame[1] & 0x7f)[:8], payload)

    def test_health_reports_amqp_ports(self):
        import json
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % self.emu.http_port, timeout=TIMEOUT) as r:
            health = json.loads(r.read())
        self.assertEqual(health["amqpsPort"], self.emu.amqps_port)
        self.assertEqual(health["amqpPort"], self.emu.amqp_port)


class RawDevice(RawMqtt):
    """A bare MQTT 3.1.1 device (so the test decides when, and whether, to PUBACK)."""

    def __init__(self, emu, device_id, qos=1):
        super().__init__()
        self.sock = socket.create_connection(("127.0.0.1", emu.mqtt_port), timeout=TIMEOUT)
        user = ("localhost/%s/?api-version=2021-04-12" % device_id).encode()
        body = (mqtt_str(b"MQTT") + bytes([4, 0xc2]) + struct.pack(">H", 60) + mqtt_str(device_id.encode()) +
                mqtt_str(user) + mqtt_str(emu.device_token(device_id).encode()))
        self.sock.sendall(mqtt_packet(0x10, body))
        h, b = self.read_whole(TIMEOUT)
        assert h == 0x20 and b[1] == 0, (h, b)
        topic = ("devices/%s/messages/devicebound/#" % device_id).encode()
        self.sock.sendall(mqtt_packet(0x82, struct.pack(">H", 1) + mqtt_str(topic) + bytes([qos])))
        h, b = self.read_whole(TIMEOUT)
        assert h == 0x90, h

    def publish(self):
        """The next PUBLISH: (dup, qos, packet id, topic, payload)."""
        h, b = self.read_whole(TIMEOUT)
        assert h >> 4 == 3, h
        tl = struct.unpack(">H", b[:2])[0]
        topic, rest = b[2:2 + tl].decode(), b[2 + tl:]
        qos = (h >> 1) & 3
        pid = struct.unpack(">H", rest[:2])[0] if qos else 0
        return bool(h & 8), qos, pid, topic, rest[2:] if qos else rest

    def puback(self, pid):
        self.sock.sendall(mqtt_packet(0x40, struct.pack(">H", pid)))

    def close(self):
        self.sock.close()


class C2dDeliveryTest(unittest.TestCase):
    """C2D from an AMQP sender to an MQTT device: the property bag, PUBACK completion, redelivery, expiry."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator().start()
        cls.conn = BlockingConnection("amqp://127.0.0.1:%d" % cls.emu.amqp_port, timeout=TIMEOUT, sasl_enabled=False)
        status, _ = put_token(cls.conn, sas_token("localhost", OWNER_KEY, key_name="iothubowner", encode=False))
        assert status == 200
        cls.snd = cls.conn.create_sender("/messages/devicebound")

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        cls.emu.stop()

    def test_property_bag_puback_and_redelivery(self):
        self.assertEqual(self.emu.create_device("c2d-raw", DEVICE1_KEY, DEVICE1_KEY)[0], 200)
        m = c2d("c2d-raw", body="first", color="blue green")
        m.id = "mid-1"
        m.correlation_id = "cid-1"
        m.content_type = "text/plain"
        self.snd.send(m)
        self.snd.send(c2d("c2d-raw", body="second"))
        dev = RawDevice(self.emu, "c2d-raw")
        dup, qos, pid, topic, payload = dev.publish()
        self.assertEqual((dup, qos, payload), (False, 1, b"first"))
        prefix = "devices/c2d-raw/messages/devicebound/"
        self.assertTrue(topic.startswith(prefix), topic)
        bag = dict(kv.split("=", 1) for kv in topic[len(prefix):].split("&"))
        self.assertEqual(bag["%24.mid"], "mid-1")
        self.assertEqual(bag["%24.cid"], "cid-1")
        self.assertEqual(bag["%24.to"], "%2Fdevices%2Fc2d-raw%2Fmessages%2Fdevicebound")
        self.assertEqual(bag["%24.ct"], "text%2Fplain")
        self.assertEqual(bag["color"], "blue%20green")
        self.assertNotIn("%24.exp", bag)  # the sender set no expiry
        dev.close()  # no PUBACK: the message stays queued
        dev = RawDevice(self.emu, "c2d-raw")
        dup, qos, pid, topic, payload = dev.publish()
        self.assertEqual((dup, payload), (True, b"first"))  # delivered again, marked DUP
        dev.puback(pid)
        dup, qos, pid, topic, payload = dev.publish()
        self.assertEqual((dup, payload), (False, b"second"))  # the next only after the PUBACK
        dev.puback(pid)
        dev.close()

    def test_message_count_and_purge(self):
        self.assertEqual(self.emu.create_device("c2d-purge")[0], 200)
        self.snd.send(c2d("c2d-purge", body="one"))
        self.snd.send(c2d("c2d-purge", body="two"))
        status, _, dev = self.emu.rest("GET", "/devices/c2d-purge?api-version=2021-04-12")
        self.assertEqual((status, dev["cloudToDeviceMessageCount"]), (200, 2))
        status, _, body = self.emu.rest("DELETE", "/devices/c2d-purge/commands?api-version=2021-04-12")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"totalMessagesPurged": 2, "deviceId": "c2d-purge"})
        status, _, dev = self.emu.rest("GET", "/devices/c2d-purge?api-version=2021-04-12")
        self.assertEqual(dev["cloudToDeviceMessageCount"], 0)
        status, _, _ = self.emu.rest("DELETE", "/devices/nobody-here/commands?api-version=2021-04-12")
        self.assertEqual(status, 404)
        # deleting the device forgets its queue: a device re-created under the same id starts empty
        self.snd.send(c2d("c2d-purge", body="three"))
        self.assertEqual(self.emu.rest("DELETE", "/devices/c2d-purge?api-version=2021-04-12",
                                       headers={"If-Match": "*"})[0], 204)
        self.assertEqual(self.emu.create_device("c2d-purge")[0], 200)
        status, _, dev = self.emu.rest("GET", "/devices/c2d-purge?api-version=2021-04-12")
        self.assertEqual(dev["cloudToDeviceMessageCount"], 0)

    def test_expired_messages_are_not_delivered(self):
        self.assertEqual(self.emu.create_device("c2d-exp", DEVICE1_KEY, DEVICE1_KEY)[0], 200)
        m = c2d("c2d-exp", body="short-lived")
        m.expiry_time = time.time() + 1  # absolute-expiry-time, one second from now
        self.snd.send(m)
        keep = c2d("c2d-exp", body="kept")
        keep.expiry_time = time.time() + 3600
        time.sleep(1.5)  # the behaviour under test is the passing of time
        self.snd.send(keep)
        dev = RawDevice(self.emu, "c2d-exp", qos=0)
        dup, qos, pid, topic, payload = dev.publish()
        self.assertEqual((qos, payload), (0, b"kept"))
        self.assertIn("%24.exp=", topic)
        dev.close()


class C2dRestartTest(unittest.TestCase):
    """Queues live in the store: a message accepted for an offline device (the sender's disposition comes only
    after the commit) is delivered after an emulator restart, by SIGTERM and by kill -9; a completed one is not
    delivered again after the next restart."""

    def setUp(self):
        self.emu = Emulator().start()

    def tearDown(self):
        self.emu.stop()

    def send(self, m):
        conn = BlockingConnection("amqp://127.0.0.1:%d" % self.emu.amqp_port, timeout=TIMEOUT, sasl_enabled=False)
        try:
            status, _ = put_token(conn, sas_token("localhost", OWNER_KEY, key_name="iothubowner", encode=False))
            self.assertEqual(status, 200)
            conn.create_sender("/messages/devicebound").send(m)  # returns once the hub accepted it
        finally:
            conn.close()

    def restarted(self, sig):
        self.emu.stop(sig=sig)
        again = Emulator(data_dir=self.emu.data_dir)
        again.tmp = self.emu.tmp
        self.emu = again.start()

    def count(self, device_id):
        status, _, dev = self.emu.rest("GET", "/devices/%s?api-version=2021-04-12" % device_id)
        self.assertEqual(status, 200)
        return dev["cloudToDeviceMessageCount"]

    def test_offline_device_gets_its_message_after_a_restart(self):
        self.assertEqual(self.emu.create_device("c2d-restart", DEVICE1_KEY, DEVICE1_KEY)[0], 200)
        for sig in (15, 9):
            with self.subTest(signal=sig):
                m = c2d("c2d-restart", body="kept %d" % sig, color="red")
                m.id = "mid-restart-%d" % sig
                self.send(m)
                self.send(c2d("c2d-restart", body="second %d" % sig))
                self.restarted(sig)
                self.assertEqual(self.count("c2d-restart"), 2)
                dev = RawDevice(self.emu, "c2d-restart")
                _, qos, pid, topic, payload = dev.publish()
                self.assertEqual((qos, payload), (1, ("kept %d" % sig).encode()))
                bag = dict(kv.split("=", 1) for kv in topic.split("/", 4)[4].split("&"))
                self.assertEqual(bag["%24.mid"], "mid-restart-%d" % sig)
                self.assertEqual(bag["color"], "red")
                dev.puback(pid)  # completes the first; the second follows
                _, _, pid, _, payload = dev.publish()
                self.assertEqual(payload, ("second %d" % sig).encode())
                dev.puback(pid)
                deadline = time.monotonic() + TIMEOUT
                while self.count("c2d-restart") and time.monotonic() < deadline:
                    time.sleep(0.05)  # the PUBACK has no reply to await; poll the emulator's own count
                dev.close()
                self.assertEqual(self.count("c2d-restart"), 0)
                self.restarted(15)
                self.assertEqual(self.count("c2d-restart"), 0)  # completed messages left the store too


class HttpsDeviceC2dTest(unittest.TestCase):
    """The C SDK's HTTP device transport, reproduced with curl: GET .../messages/deviceBound (204 when empty;
    ETag = lock token; iothub-* headers), DELETE .../deviceBound/{etag} completes, ?reject rejects, POST
    .../{etag}/abandon gives it back; POST .../messages/events is telemetry. Device SAS tokens."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator().start()
        cls.conn = BlockingConnection("amqp://127.0.0.1:%d" % cls.emu.amqp_port, timeout=TIMEOUT, sasl_enabled=False)
        assert put_token(cls.conn, sas_token("localhost", OWNER_KEY, key_name="iothubowner", encode=False))[0] == 200
        cls.snd = cls.conn.create_sender("/messages/devicebound")

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        cls.emu.stop()

    def curl(self, method, path, token=None, data=None, headers=()):
        import subprocess
        args = ["curl", "-sS", "-i", "-X", method, "--cacert", self.emu.ca_path,
                "https://localhost:%d%s" % (self.emu.https_port, path),
                "-H", "Authorization: " + (token or self.emu.device_token("device1"))]
        for h in headers:
            args += ["-H", h]
        if data is not None:
            args += ["--data-binary", data]
        out = subprocess.run(args, capture_output=True, timeout=TIMEOUT, check=True).stdout
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        return status, hdrs, body

    def test_receive_complete_reject_abandon(self):
        api = "?api-version=2020-09-30"
        status, _, _ = self.curl("GET", "/devices/device1/messages/deviceBound" + api)
        self.assertEqual(status, 204)
        status, _, _ = self.curl("GET", "/devices/device1/messages/deviceBound" + api,
                                 token=self.emu.device_token("device1", key=OWNER_KEY))
        self.assertEqual(status, 401)
        m = c2d("device1", body="over https", color="red")
        m.id = "https-1"
        self.snd.send(m)
        self.snd.send(c2d("device1", body="to reject"))
        status, h, body = self.curl("GET", "/devices/device1/messages/deviceBound" + api)
        self.assertEqual((status, body), (200, b"over https"))
        self.assertEqual(h["iothub-messageid"], "https-1")
        self.assertEqual(h["iothub-app-color"], "red")
        self.assertEqual(h["iothub-to"], "/devices/device1/messages/devicebound")
        self.assertEqual(h["iothub-deliverycount"], "1")
        etag = h["etag"].strip('"')
        # the next GET does not see the locked message; abandon makes it available again
        status, h2, body2 = self.curl("GET", "/devices/device1/messages/deviceBound" + api)
        self.assertEqual((status, body2), (200, b"to reject"))
        status, _, _ = self.curl("POST", "/devices/device1/messages/deviceBound/%s/abandon%s" % (etag, api), data="")
        self.assertEqual(status, 204)
        status, h, body = self.curl("GET", "/devices/device1/messages/deviceBound" + api)
        self.assertEqual((status, body, h["iothub-deliverycount"]), (200, b"over https", "2"))
        status, _, _ = self.curl("DELETE", "/devices/device1/messages/deviceBound/%s%s" % (h["etag"], api))
        self.assertEqual(status, 204)
        status, _, _ = self.curl("DELETE", "/devices/device1/messages/deviceBound/%s%s" % (h["etag"], api))
        self.assertEqual(status, 412)  # completed already
        status, _, _ = self.curl("DELETE", "/devices/device1/messages/deviceBound/%s%s&reject" %
                                 (h2["etag"].strip('"'), api))
        self.assertEqual(status, 204)
        status, _, _ = self.curl("GET", "/devices/device1/messages/deviceBound" + api)
        self.assertEqual(status, 204)

    def test_telemetry_over_https(self):
        status, _, _ = self.curl("POST", "/devices/device1/messages/events?api-version=2020-09-30", data="t-body",
                                 headers=("iothub-app-temp: 21", "iothub-messageid: tm-1"))
        self.assertEqual(status, 204)
        status, _, log = self.emu.rest("GET", "/emulator/telemetry/device1")
        self.assertEqual(status, 200)
        last = log[-1]
        self.assertEqual(last["body"], "t-body")
        self.assertEqual(last["properties"].get("temp"), "21")
        self.assertEqual(last["properties"].get("$.mid"), "tm-1")


class UamqpTest(unittest.TestCase):
    """uamqp (Debian python3-uamqp), the AMQP stack of Python azure-iot-hub send_c2d_message and of the C SDK:
    SASL MSSBCBS over TLS, a put-token for https://{host}, a full-URL target; sent as azure-iot-hub sends."""

    def test_send_c2d_like_azure_iot_hub(self):
        try:
            import collections
            import uamqp
            from uamqp import authentication
            from uamqp.message import MessageProperties
        except ImportError:
            self.skipTest("python3-uamqp is not installed")
        with Emulator() as emu:
            token = collections.namedtuple("Token", "token expires_on")

            def get_token():
                return token(sas_token("localhost", OWNER_KEY, key_name="iothubowner", encode=False),
                             int(time.time()) + 3600)

            auth = authentication.JWTTokenAuth(audience="https://localhost", uri="https://localhost",
                                               get_token=get_token, token_type=b"servicebus.windows.net:sastoken",
                                               port=emu.amqps_port, verify=emu.ca_path)
            client = uamqp.SendClient(target="amqps://localhost/messages/devicebound", auth=auth)
            props = MessageProperties(message_id=str(uuid.uuid4()), to="/devices/device1/messages/devicebound")
            client.queue_message(uamqp.Message(b"from uamqp", properties=props, application_properties={"k1": "v1"}))
            results = client.send_all_messages(close_on_done=True)
            self.assertEqual([r.name for r in results], ["SendComplete"])
            status, _, dev = emu.rest("GET", "/devices/device1?api-version=2021-04-12")
            self.assertEqual(dev["cloudToDeviceMessageCount"], 1)
            log = emu.log_text()
            self.assertIn("put-token https://localhost: 200", log)


class AmqpDeadlineTest(unittest.TestCase):
    def test_no_token_in_time_closes(self):
        with Emulator(extra_args=["--connect-timeout", "1"]) as emu:
            with socket.create_connection(("127.0.0.1", emu.amqp_port), timeout=TIMEOUT) as s:
                s.sendall(b"AMQP\x03\x01\x00\x00")  # then nothing: SASL never finishes
                start = time.monotonic()
                self.assertTrue(closed_soon(s, timeout=10))
                self.assertLess(time.monotonic() - start, 10)


if __name__ == "__main__":
    unittest.main()
