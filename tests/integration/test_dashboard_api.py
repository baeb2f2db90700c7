"""test_dashboard_api.py -- the dashboard's own HTTP routes over the plain port (README "Dashboard"): the page
and its files, GET /emulator/session (a token only for a loopback page of a loopback-bound emulator, never to a
cross-site or rebinding request), GET /emulator/stats, GET /emulator/events (Server-Sent Events: connections,
method calls with status and latency, twin changes, C2D activity, telemetry; replay after ?since= and
Last-Event-ID), POST /emulator/devices/{id}[/modules/{mid}]/messages, with bad input answered in the hub's error
shape. The other routes the page uses are the hub's own, tested elsewhere. Free ports."""

import http.client
import json
import socket
import threading
import time
import unittest
import urllib.parse

import paho.mqtt.client as mqtt

from harness import Emulator

SERVICE_KEY = "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY="  # the published "service" policy (ServiceConnect)


def get(emu, path, headers=None, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", emu.http_port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def error_code(body):
    """The name in the hub's Envelope A: {"Message":"ErrorCode:<Name>;<text>",...}."""
    msg = json.loads(body)["Message"]
    assert msg.startswith("ErrorCode:"), msg
    return msg[len("ErrorCode:"):].split(";", 1)[0]


class Stream:
    """Reads /emulator/events on a raw socket, record by record."""

    def __init__(self, emu, token, query="", headers=(), rcvbuf=None):
        if rcvbuf:  # a slow reader: a small receive window, set before connecting
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(10)
            self.sock.connect(("127.0.0.1", emu.http_port))
        else:
            self.sock = socket.create_connection(("127.0.0.1", emu.http_port), timeout=10)
        extra = "".join("%s: %s\r\n" % h for h in headers)
        self.sock.sendall(("GET /emulator/events%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\n%s\r\n"
                           % (query, token, extra)).encode())
        self.buf = b""
        self.head = self._until(b"\r\n\r\n").decode()
        self.text = ""

    def _until(self, sep):
        while sep not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("stream closed")
            self.buf += chunk
        out, self.buf = self.buf.split(sep, 1)
        return out

    def _chunk(self):
        size = int(self._until(b"\r\n"), 16)
        while len(self.buf) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("stream closed")
            self.buf += chunk
        data, self.buf = self.buf[:size], self.buf[size + 2:]
        if size == 0:
            raise EOFError("end of stream")
        return data.decode()

    def record(self):
        """The next SSE record as (event, data dict, id), comments skipped."""
        while True:
            while "\n\n" not in self.text:
                self.text += self._chunk()
            rec, self.text = self.text.split("\n\n", 1)
            fields = {}
            for line in rec.split("\n"):
                if line.startswith(":"):
                    continue
                k, _, v = line.partition(": ")
                fields[k] = v
            if "data" in fields:
                return fields.get("event", "message"), json.loads(fields["data"]), fields.get("id")

    def until(self, pred, limit=50):
        for _ in range(limit):
            ev = self.record()
            if pred(*ev):
                return ev
        raise AssertionError("no matching record")

    def close(self):
        self.sock.close()

    def read_to_end(self):
        """Reads until the server ends the chunked answer; returns how many records came before."""
        n = 0
        try:
            while True:
                self.record()
                n += 1
        except EOFError as e:
            if str(e) != "end of stream":
                raise
        return n


class MqttDevice:
    """A raw paho device (MQTT, plain port) that answers methods with 200 and the payload it got."""

    def __init__(self, emu, device_id="device1"):
        self.c = mqtt.Client(client_id=device_id, protocol=mqtt.MQTTv311)
        self.c.username_pw_set("127.0.0.1/%s/?api-version=2021-04-12" % device_id, emu.device_token(device_id))
        self.subscribed = threading.Event()
        self.c2d = []
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", emu.mqtt_port)
        self.c.subscribe([("$iothub/methods/POST/#", 0), ("devices/%s/messages/devicebound/#" % device_id, 1)])
        self.c.loop_start()
        assert self.subscribed.wait(10)
        self.device_id = device_id

    def on_message(self, c, userdata, msg):
        if msg.topic.startswith("$iothub/methods/POST/"):
            rid = msg.topic.split("$rid=")[1]
            c.publish("$iothub/methods/res/200/?$rid=" + rid, msg.payload)
        elif msg.topic.startswith("devices/"):
            self.c2d.append((msg.topic, msg.payload))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class DashboardLoopbackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(hostname="127.0.0.1").start()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def token(self):
        status, _, body = get(self.emu, "/emulator/session", {"Host": "127.0.0.1:%d" % self.emu.http_port})
        self.assertEqual(status, 200)
        return json.loads(body)["token"]

    def test_page_and_files(self):
        for path in ("/", "/index.html", "/dashboard"):
            status, headers, body = get(self.emu, path)
            self.assertEqual(status, 200, path)
            self.assertTrue(headers["Content-Type"].startswith("text/html"))
            self.assertIn(b'src="/dashboard/app.js"', body)
            self.assertIn("default-src 'self'", headers["Content-Security-Policy"])
        for name, ctype in (("app.js", "text/javascript"), ("sha256.js", "text/javascript"), ("style.css", "text/css")):
            status, headers, body = get(self.emu, "/dashboard/" + name)
            self.assertEqual(status, 200, name)
            self.assertTrue(headers["Content-Type"].startswith(ctype), headers)
            self.assertGreater(len(body), 100)
        for bad in ("/dashboard/nope.js", "/dashboard/..%2fmain.c", "/dashboard/.hidden", "/dashboard/a/b.js"):
            status, headers, body = get(self.emu, bad)
            self.assertEqual(status, 404, bad)
            self.assertEqual(error_code(body), "NotFound")
        status, headers, body = get(self.emu, "/", method="POST", body=b"x")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET")
        self.assertEqual(error_code(body), "MethodNotAllowed")

    def test_session_gives_a_working_token_to_a_loopback_page(self):
        status, _, body = get(self.emu, "/emulator/session", {"Host": "localhost:%d" % self.emu.http_port})
        s = json.loads(body)
        self.assertTrue(s["open"])
        self.assertEqual(s["hostName"], "127.0.0.1")
        self.assertEqual(s["policy"], "iothubowner")
        self.assertNotIn("key", json.dumps(s).lower().replace("iothubowner", ""))  # a token, never the key
        self.assertGreater(s["expiresOn"], time.time() + 3000)
        status, _, _ = self.emu.rest("GET", "/devices?api-version=2021-04-12", token=s["token"])
        self.assertEqual(status, 200)

    def test_session_refuses_rebinding_and_cross_site_requests(self):
        port = self.emu.http_port
        for headers in ({"Host": "evil.example:%d" % port},
                        {"Host": "127.0.0.1:%d" % port, "Origin": "http://evil.example"},
                        {"Host": "127.0.0.1:%d" % port, "Sec-Fetch-Site": "cross-site"}):
            status, _, body = get(self.emu, "/emulator/session", headers)
            s = json.loads(body)
            self.assertEqual(status, 200)
            self.assertFalse(s["open"], headers)
            self.assertNotIn("token", s)
            self.assertTrue(s["reason"])
        # The page's own origin is fine.
        status, _, body = get(self.emu, "/emulator/session",
                              {"Host": "127.0.0.1:%d" % port, "Origin": "http://127.0.0.1:%d" % port,
                               "Sec-Fetch-Site": "same-origin"})
        self.assertTrue(json.loads(body)["open"])

    def test_routes_need_a_service_token(self):
        device_token = self.emu.device_token()
        for path, method in (("/emulator/stats", "GET"), ("/emulator/events", "GET"),
                             ("/emulator/devices/device1/messages", "POST")):
            for authz in (None, "SharedAccessSignature sr=127.0.0.1&sig=bad&se=9999999999&skn=iothubowner",
                          device_token):
                headers = {"Authorization": authz} if authz else {}
                status, h, body = get(self.emu, path, headers, method=method, body=b"{}" if method == "POST" else None)
                self.assertEqual(status, 401, (path, authz))
                self.assertEqual(h["iothub-errorcode"], "IotHubUnauthorizedAccess")
                self.assertEqual(error_code(body), "IotHubUnauthorizedAccess")
        # The service policy (ServiceConnect) is enough.
        status, _, _ = get(self.emu, "/emulator/stats",
                           {"Authorization": self.emu.service_token("service", key=SERVICE_KEY)})
        self.assertEqual(status, 200)

    def test_stats(self):
        status, _, body = get(self.emu, "/emulator/stats", {"Authorization": self.token()})
        self.assertEqual(status, 200)
        s = json.loads(body)
        self.assertGreaterEqual(s["devices"], 1)
        self.assertEqual(s["eventLog"]["partitionCount"], len(s["eventLog"]["partitions"]))
        self.assertIn("$Default", s["eventLog"]["consumerGroups"])
        for k in ("connection", "method", "twin", "c2d"):
            self.assertIn(k, s["events"])
        status, h, body = get(self.emu, "/emulator/stats", {"Authorization": self.token()}, method="DELETE")
        self.assertEqual(status, 405)
        self.assertEqual(h["Allow"], "GET")

    def test_stream_carries_each_kind_of_event(self):
        token = self.token()
        _, _, body = get(self.emu, "/emulator/stats", {"Authorization": token})
        st = Stream(self.emu, token, "?since=%d" % json.loads(body)["lastEventId"])  # no replay of other tests
        self.assertIn("200 OK", st.head.split("\r\n")[0])
        self.assertIn("text/event-stream", st.head)
        event, hello, _ = st.record()
        self.assertEqual(event, "hello")
        dev = MqttDevice(self.emu)
        try:
            _, ev, ev_id = st.until(lambda e, d, i: e == "hub" and d["type"] == "connection")
            self.assertEqual((ev["identity"], ev["what"]), ("device1", "connected"))
            self.assertEqual(int(ev_id), ev["id"])
            status, _, body = self.emu.invoke("device1", "Ping", {"n": 1})
            self.assertEqual(status, 200)
            _, ev, _ = st.until(lambda e, d, i: e == "hub" and d["type"] == "method")
            self.assertEqual((ev["what"], ev["detail"], ev["status"]), ("Ping", "answered", 200))
            self.assertGreaterEqual(ev["latencyMs"], 0)
            self.emu.rest("PATCH", "/twins/device1?api-version=2021-04-12", {"properties": {"desired": {"a": 1}}})
            _, ev, _ = st.until(lambda e, d, i: e == "hub" and d["type"] == "twin")
            self.assertEqual(ev["what"], "desired")
            dev.c.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"r":1}')
            _, ev, _ = st.until(lambda e, d, i: e == "hub" and d["type"] == "twin")
            self.assertEqual((ev["what"], ev["identity"], ev["status"]), ("reported", "device1", 2))
            dev.c.publish("devices/device1/messages/events/k1=v1", b'{"t":1}', qos=1)
            _, ev, _ = st.until(lambda e, d, i: e == "telemetry")
            self.assertEqual((ev["deviceId"], ev["body"], ev["properties"]), ("device1", '{"t":1}', {"k1": "v1"}))
            dev.c.publish("devices/device1/messages/events/", bytes([0xff, 0x00, 0xfe]), qos=1)
            _, ev, _ = st.until(lambda e, d, i: e == "telemetry")
            self.assertEqual(ev["bodyBase64"], "/wD+")  # not UTF-8: base64, as in /emulator/telemetry
            self.assertNotIn("body", ev)
            status, _, body = get(self.emu, "/emulator/devices/device1/messages", {"Authorization": token},
                                  method="POST", body=json.dumps({"body": "hi", "properties": {"p": "q"},
                                                                  "messageId": "m-1"}).encode())
            self.assertEqual(status, 201, body)
            self.assertEqual(json.loads(body)["messageId"], "m-1")
            _, ev, _ = st.until(lambda e, d, i: e == "hub" and d["type"] == "c2d")
            self.assertEqual((ev["what"], ev["detail"]), ("queued", "m-1"))
            _, ev, _ = st.until(lambda e, d, i: e == "hub" and d["type"] == "c2d")
            self.assertEqual(ev["what"], "delivered")
            for _ in range(100):
                if dev.c2d:
                    break
                time.sleep(0.05)
            topic, payload = dev.c2d[0]
            self.assertEqual(payload, b"hi")
            self.assertIn("p=q", topic)
            last = ev["id"]
        finally:
            dev.close()
        _, ev, _ = st.until(lambda e, d, i: e == "hub" and d["type"] == "connection")
        self.assertEqual(ev["what"], "disconnected")
        status, _, _ = self.emu.invoke("device1", "Ping")
        self.assertEqual(status, 404)
        _, ev, _ = st.until(lambda e, d, i: e == "hub" and d["type"] == "method")
        self.assertEqual((ev["what"], ev["detail"]), ("Ping", "notOnline"))
        last = ev["id"] - 1
        st.close()
        # A page that reconnects gets what it missed: after ?since=, or after Last-Event-ID.
        for query, headers in (("?since=%d" % last, ()), ("", (("Last-Event-ID", str(last)),))):
            again = Stream(self.emu, token, query, headers)
            again.record()  # hello
            _, ev, _ = again.record()
            self.assertEqual(ev["id"], last + 1)
            again.close()

    def test_c2d_send_bad_input(self):
        token = self.token()
        cases = [
            ("/emulator/devices/nobody/messages", b'{"body":"x"}', 404, "DeviceNotFound"),
            ("/emulator/devices/device1/modules/nomod/messages", b'{"body":"x"}', 404, "ModuleNotFound"),
            ("/emulator/devices/device1/messages", b'not json', 400, "ArgumentInvalid"),
            ("/emulator/devices/device1/messages", b'[]', 400, "ArgumentInvalid"),
            ("/emulator/devices/device1/messages", b'{"body":3}', 400, "ArgumentInvalid"),
            ("/emulator/devices/device1/messages", b'{"body":"x","properties":{"a":1}}', 400, "ArgumentInvalid"),
            ("/emulator/devices/device1/messages", b'{"body":"x","properties":{"$.mid":"1"}}', 400, "ArgumentInvalid"),
            ("/emulator/devices/device1/messages", b'{"body":"x","ack":"sometimes"}', 400, "ArgumentInvalid"),
            ("/emulator/devices/device1/messages", b'{"body":"x","body":"y"}', 400, "ArgumentInvalid"),
            ("/emulator/devices/device1/messages", json.dumps({"body": "x" * 70000}).encode(), 413, "MessageTooLarge"),
            ("/emulator/devices/device1/messages", b'{"body":"' + b"x" * 200000 + b'"}', 413, "MessageTooLarge"),
            ("/emulator/devices/bad%zz/messages", b'{"body":"x"}', 400, "ArgumentInvalid"),
            # Ids longer than any the registry holds are unknown, whatever their encoded length (was: a cut
            # address and a 400 about 'to').
            ("/emulator/devices/" + "%25" * 600 + "/messages", b'{"body":"x"}', 404, "DeviceNotFound"),
            ("/emulator/devices/device1/modules/" + "m" * 200 + "/messages", b'{"body":"x"}', 404, "ModuleNotFound"),
        ]
        for path, body, status_want, code in cases:
            status, h, resp = get(self.emu, path, {"Authorization": token, "Content-Type": "application/json"},
                                  method="POST", body=body)
            self.assertEqual((status, error_code(resp)), (status_want, code), (path, body[:60]))
            self.assertEqual(h["iothub-errorcode"], code)
        status, h, _ = get(self.emu, "/emulator/devices/device1/messages", {"Authorization": token})
        self.assertEqual((status, h["Allow"]), (405, "POST"))
        # The queue's limit: the 51st message is refused as the hub does.
        self.emu.create_device("full")
        for i in range(50):
            status, _, _ = get(self.emu, "/emulator/devices/full/messages", {"Authorization": token}, method="POST",
                               body=json.dumps({"body": str(i)}).encode())
            self.assertEqual(status, 201)
        status, _, resp = get(self.emu, "/emulator/devices/full/messages", {"Authorization": token}, method="POST",
                              body=b'{"body":"one too many"}')
        self.assertEqual((status, error_code(resp)), (403, "DeviceMaximumQueueDepthExceeded"))

    def test_c2d_to_an_encoded_id(self):
        token = self.token()
        status, _, _ = self.emu.create_device("d#1%x+y?")
        self.assertEqual(status, 200)
        path = "/emulator/devices/%s/messages" % urllib.parse.quote("d#1%x+y?", safe="")
        status, _, body = get(self.emu, path, {"Authorization": token}, method="POST", body=b'{"body":"x"}')
        self.assertEqual(status, 201, body)


class DashboardStreamLimitsTest(unittest.TestCase):
    """The stream with readers that misbehave: too many, too slow, and the emulator stopping under them."""

    def setUp(self):
        self.emu = Emulator(hostname="127.0.0.1").start()
        self.tok = self.emu.service_token()
        self.streams = []

    def tearDown(self):
        for st in self.streams:
            st.close()
        self.emu.stop()

    def open(self, **kw):
        st = Stream(self.emu, self.tok, **kw)
        self.streams.append(st)
        self.assertIn("200 OK", st.head.split("\r\n")[0])
        self.assertIn("X-Content-Type-Options: nosniff", st.head)
        self.assertEqual(st.record()[0], "hello")
        return st

    def test_past_the_limit_the_oldest_stream_ends(self):
        # A suspended stream sees its reader leave only at its next write: a page reloaded 33 times must still
        # get its stream. The 33rd ends the first (which gets a proper end of the chunked answer).
        first = self.open()
        for _ in range(31):
            self.open()
        newest = self.open()
        self.assertEqual(first.read_to_end(), 0)
        status, _, body = get(self.emu, "/emulator/stats", {"Authorization": self.tok})
        self.assertEqual(json.loads(body)["streams"], 32)
        self.emu.rest("PATCH", "/twins/device1?api-version=2021-04-12", {"properties": {"desired": {"n": 1}}})
        _, ev, _ = newest.until(lambda e, d, i: e == "hub" and d["type"] == "twin")
        self.assertEqual(ev["what"], "desired")

    def test_a_slow_reader_is_cut_off_and_others_go_on(self):
        # Reads nothing while 6.5 MB of telemetry goes by: more than the 1 MiB backlog plus what the kernel holds
        # for the socket (tcp_wmem's 4 MiB at most).
        slow = self.open(rcvbuf=4096)
        fast = self.open()
        dev = MqttDevice(self.emu)
        try:
            body = b"x" * 4096
            for batch in range(48):  # 48 x 32 messages; the reader that keeps up reads each batch to its end
                for i in range(batch * 32, batch * 32 + 32):
                    dev.c.publish("devices/device1/messages/events/n=%d" % i, body, qos=0)
                last = str(batch * 32 + 31)
                _, ev, _ = fast.until(lambda e, d, i: e == "telemetry" and d["properties"].get("n") == last, limit=64)
                self.assertEqual(ev["size"], 4096)
        finally:
            dev.close()
        # The slow one was ended at its 1 MiB backlog (not buffered without bound): what it had, then the end.
        got = slow.read_to_end()
        self.assertGreater(got, 0)
        self.assertLess(got, 48 * 32)
        status, _, body = get(self.emu, "/health")
        self.assertEqual(status, 200)

    def test_stopping_with_streams_open(self):
        idle = self.open()  # suspended, waiting for an event
        busy = self.open(rcvbuf=4096)
        dev = MqttDevice(self.emu)
        for i in range(64):
            dev.c.publish("devices/device1/messages/events/n=%d" % i, b"y" * 4096, qos=0)
        # idle reads all of it, so at the signal it is suspended with nothing left to send
        idle.until(lambda e, d, i: e == "telemetry" and d["properties"].get("n") == "63", limit=100)
        dev.close()
        started = time.monotonic()
        self.assertEqual(self.emu.stop(), 0)  # SIGTERM: a clean exit, not a crash nor the harness's kill
        self.assertLess(time.monotonic() - started, 8)
        # The idle stream was told the stream is over (the chunked answer's end); the busy one got what was
        # sent, then the end or a close.
        self.assertLess(idle.read_to_end(), 5)  # the device's disconnection, then the end
        try:
            busy.read_to_end()
        except (EOFError, ConnectionResetError):
            pass


class DashboardBeyondLoopbackTest(unittest.TestCase):
    def test_no_token_without_the_key(self):
        with Emulator(extra_args=["--bind", "0.0.0.0"]) as emu:
            status, _, body = get(emu, "/emulator/session", {"Host": "127.0.0.1:%d" % emu.http_port})
            s = json.loads(body)
            self.assertEqual(status, 200)
            self.assertFalse(s["open"])
            self.assertNotIn("token", s)
            self.assertIn("--bind", s["reason"])
            status, _, body = get(emu, "/emulator/stats")
            self.assertEqual((status, error_code(body)), (401, "IotHubUnauthorizedAccess"))
            status, _, _ = get(emu, "/emulator/stats", {"Authorization": emu.service_token()})
            self.assertEqual(status, 200)
            status, _, _ = get(emu, "/")  # the page itself holds no secret
            self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
