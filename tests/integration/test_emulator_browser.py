"""test_emulator_browser.py -- the browser rule of the unauthenticated /emulator routes (README "Browsers and the
/emulator routes"): a request carrying Origin, a Sec-Fetch-* header (not Sec-Fetch-Mode alone) or a browser's
User-Agent is refused 403 (Envelope A, Forbidden, a message naming the rule) when its Host is not loopback, an IP literal or a --hostname (DNS rebinding), or when
it is cross-site (Sec-Fetch-Site other than same-origin/none, or an Origin that is not the Host): on
/emulator/telemetry, /emulator/consumergroups and /emulator/faults, every verb, with nothing changed (no fault
installed by a cross-site text/plain form POST, no group created, no telemetry cleared). Same-origin requests
(the dashboard page's) and header-less ones (curl, SDKs, compose scripts calling http://iothub:8080) still work,
whatever their Host. Raw HTTP with exact headers over the plain port; one emulator; free ports."""

import http.client
import json
import time
import unittest

import paho.mqtt.client as mqtt

from harness import Emulator

HOSTNAME = "myhub.example"  # the emulator's --hostname: a name a browser's Host may use


def call(emu, method, path, headers, body=None):
    """One request with exactly these headers (http.client adds only Host when it is not given, and
    Content-Length / Accept-Encoding); returns (status, parsed body or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.http_port, timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    data = body.encode() if isinstance(body, str) else body
    if data is not None:
        conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    try:
        return r.status, json.loads(raw) if raw else None
    except ValueError:
        return r.status, raw


def plain(emu, method, path, body=None):
    """A header-less request (like curl's): Host 127.0.0.1, no Origin, no Sec-Fetch-*."""
    return call(emu, method, path, {"Host": "127.0.0.1:%d" % emu.http_port}, body)


CHROMIUM_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 "
               "Safari/537.36")

FAULT = json.dumps({"fault": "refuseConnect", "deviceId": "device1", "seconds": 60, "connack": 5})

# Every verb of every guarded route, with a body where the route takes one.
ROUTES = [
    ("GET", "/emulator/telemetry", None),
    ("GET", "/emulator/telemetry/device1?top=5", None),
    ("DELETE", "/emulator/telemetry", None),
    ("GET", "/emulator/consumergroups", None),
    ("GET", "/emulator/consumergroups/$Default", None),
    ("PUT", "/emulator/consumergroups/evilgroup", None),
    ("DELETE", "/emulator/consumergroups/kept", None),
    ("GET", "/emulator/faults", None),
    ("POST", "/emulator/faults", FAULT),
    ("DELETE", "/emulator/faults", None),
    ("DELETE", "/emulator/faults/1", None),
]


class BrowserRule(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(hostname=HOSTNAME).start()
        cls.port = cls.emu.http_port

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        plain(self.emu, "DELETE", "/emulator/faults")
        plain(self.emu, "PUT", "/emulator/consumergroups/kept")

    def assert_refused(self, status, body, *words):
        self.assertEqual(status, 403, body)
        msg = body["Message"]
        self.assertTrue(msg.startswith("ErrorCode:Forbidden;"), msg)
        self.assertIn("A browser may call the emulator's unauthenticated routes only from the same origin", msg)
        for w in words:
            self.assertIn(w, msg)
        self.assertIn("ExceptionMessage", body)

    def assert_untouched(self):
        """No fault installed, no group created, none deleted, the telemetry kept."""
        status, faults = plain(self.emu, "GET", "/emulator/faults")
        self.assertEqual((status, faults["faults"]), (200, []))
        status, groups = plain(self.emu, "GET", "/emulator/consumergroups")
        self.assertEqual(status, 200)
        self.assertIn("kept", groups)
        self.assertNotIn("evilgroup", groups)

    def test_rebinding_host_refused_on_each_route(self):
        evil = "evil.example:%d" % self.port
        variants = [
            # a fetch() from the rebound page: same-origin as far as the browser knows
            {"Host": evil, "Origin": "http://" + evil, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
            # its simple GET: no Origin, only the fetch metadata
            {"Host": evil, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
            # a browser with Origin but no fetch metadata
            {"Host": evil, "Origin": "http://" + evil},
            # any one Sec-Fetch-* header is enough to be a browser's (but Sec-Fetch-Mode alone: Node's fetch)
            {"Host": evil, "Sec-Fetch-Dest": "empty"},
            # what Chromium really sends for the rebound page's GET over plain HTTP: no Origin, no Sec-Fetch-*
            # (fetch metadata only goes to https and localhost), but its User-Agent
            {"Host": evil, "User-Agent": CHROMIUM_UA, "Accept": "*/*", "Referer": "http://%s/" % evil},
        ]
        for headers in variants:
            for method, path, body in ROUTES:
                with self.subTest(method=method, path=path, headers=headers):
                    h = dict(headers, **({"Content-Type": "text/plain"} if body else {}))
                    status, got = call(self.emu, method, path, h, body)
                    self.assert_refused(status, got, "Host 'evil.example:%d'" % self.port, "DNS rebinding")
        self.assert_untouched()
        self.assertIn("refused, a browser's request and its Host 'evil.example", self.emu.log_text())

    def test_rebinding_does_not_clear_telemetry(self):
        dev = mqtt.Client(client_id="device1", protocol=mqtt.MQTTv311)
        dev.username_pw_set("%s/device1/?api-version=2021-04-12" % HOSTNAME, self.emu.device_token("device1"))
        dev.connect("127.0.0.1", self.emu.mqtt_port)
        dev.loop_start()
        try:
            info = dev.publish("devices/device1/messages/events/", b'{"t":"kept"}', qos=1)
            info.wait_for_publish(10)
            self.assertTrue(info.is_published())
        finally:
            dev.loop_stop()
            dev.disconnect()
        evil = "evil.example:%d" % self.port
        status, got = call(self.emu, "DELETE", "/emulator/telemetry",
                           {"Host": evil, "Origin": "http://" + evil, "Sec-Fetch-Site": "same-origin"})
        self.assert_refused(status, got, "DNS rebinding")
        status, rows = plain(self.emu, "GET", "/emulator/telemetry/device1")
        self.assertEqual(status, 200)
        self.assertIn('{"t":"kept"}', [r.get("body") for r in rows])

    def test_cross_site_form_post_refused_and_no_fault_installed(self):
        local = "127.0.0.1:%d" % self.port
        form = {"Content-Type": "text/plain"}
        variants = [
            # a form on https://evil.example posting to http://127.0.0.1:port/emulator/faults
            ({"Host": local, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
              "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, "cross-site"),
            # the same from a browser without fetch metadata: Origin names another site
            ({"Host": local, "Origin": "https://evil.example"}, "Origin is not this Host"),
            # a dev server on another port of localhost is same-site, still another origin
            ({"Host": "localhost:%d" % self.port, "Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
             "cross-site"),
            ({"Host": "localhost:%d" % self.port, "Origin": "http://localhost:3000"}, "Origin is not this Host"),
            # a sandboxed frame or a file:// page
            ({"Host": local, "Origin": "null"}, "Origin is not this Host"),
            # a no-cors request whose Origin is hidden but whose metadata says cross-site
            ({"Host": local, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, "cross-site"),
        ]
        for headers, word in variants:
            with self.subTest(headers=headers):
                status, got = call(self.emu, "POST", "/emulator/faults", dict(headers, **form), FAULT)
                self.assert_refused(status, got, word)
                self.assert_untouched()
        # and the device still connects: the refused fault would have answered CONNACK 5
        dev = mqtt.Client(client_id="device1", protocol=mqtt.MQTTv311)
        dev.username_pw_set("%s/device1/?api-version=2021-04-12" % HOSTNAME, self.emu.device_token("device1"))
        codes = []
        dev.on_connect = lambda c, u, f, rc: codes.append(rc)
        dev.connect("127.0.0.1", self.emu.mqtt_port)
        dev.loop_start()
        try:
            deadline = time.monotonic() + 10
            while not codes and time.monotonic() < deadline:
                time.sleep(0.05)  # paho reports the CONNACK only through its callback thread
            self.assertEqual(codes, [0])
        finally:
            dev.loop_stop()
            dev.disconnect()

    def test_same_origin_requests_work(self):
        for host in ("localhost:%d" % self.port, "127.0.0.1:%d" % self.port, "[::1]:%d" % self.port,
                     "%s:%d" % (HOSTNAME, self.port), "MyHub.Example:%d" % self.port, "192.168.7.7:%d" % self.port):
            with self.subTest(host=host):
                page = {"Host": host, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors",
                        "Sec-Fetch-Dest": "empty"}
                write = dict(page, Origin="http://" + host.lower(), **{"Content-Type": "application/json"})
                status, made = call(self.emu, "POST", "/emulator/faults", write, FAULT)
                self.assertEqual(status, 201, made)
                status, listing = call(self.emu, "GET", "/emulator/faults", page)
                self.assertEqual((status, [f["id"] for f in listing["faults"]]), (200, [made["id"]]))
                status, cleared = call(self.emu, "DELETE", "/emulator/faults/%d" % made["id"], write)
                self.assertEqual((status, cleared), (200, {"cleared": 1}))
                self.assertEqual(call(self.emu, "GET", "/emulator/telemetry?top=1", page)[0], 200)
                self.assertEqual(call(self.emu, "PUT", "/emulator/consumergroups/page", write)[0], 201)
                self.assertEqual(call(self.emu, "DELETE", "/emulator/consumergroups/page", write)[0], 204)
        # a URL typed in the address bar: Sec-Fetch-Site none
        status, listing = call(self.emu, "GET", "/emulator/faults",
                               {"Host": "localhost:%d" % self.port, "Sec-Fetch-Site": "none",
                                "Sec-Fetch-Mode": "navigate", "Sec-Fetch-User": "?1"})
        self.assertEqual((status, listing["faults"]), (200, []))

    def test_headerless_requests_unaffected_whatever_the_host(self):
        # curl, the SDKs, a script in a compose network (Host iothub:8080), a name nobody configured; Node's
        # fetch() (undici) sends Sec-Fetch-Mode: cors on every request, and alone it does not make a browser
        tools = [{}, {"User-Agent": "curl/8.5.0"}, {"User-Agent": "node", "Sec-Fetch-Mode": "cors"}]
        for host, tool in [(h, t) for h in ("127.0.0.1:%d" % self.port, "iothub:8080", "evil.example:%d" % self.port)
                           for t in tools]:
            with self.subTest(host=host, tool=tool):
                h = dict(tool, **{"Host": host, "Content-Type": "text/plain"})
                status, made = call(self.emu, "POST", "/emulator/faults", h, FAULT)
                self.assertEqual(status, 201, made)
                status, cleared = call(self.emu, "DELETE", "/emulator/faults", h)
                self.assertEqual((status, cleared), (200, {"cleared": 1}))
                self.assertEqual(call(self.emu, "GET", "/emulator/telemetry", h)[0], 200)
                self.assertEqual(call(self.emu, "GET", "/emulator/consumergroups", h)[0], 200)
        # the harness's own client (urllib) too
        status, _, body = self.emu.rest("GET", "/emulator/faults", token="")
        self.assertEqual((status, body["faults"]), (200, []))

    def test_health_and_ca_stay_open(self):
        """Nothing secret and nothing changed there: a browser may read them from any page (documented)."""
        evil = "evil.example:%d" % self.port
        headers = {"Host": evil, "Origin": "http://" + evil, "Sec-Fetch-Site": "cross-site"}
        status, health = call(self.emu, "GET", "/health", headers)
        self.assertEqual((status, health["status"]), (200, "ok"))
        status, pem = call(self.emu, "GET", "/emulator/ca.pem", headers)
        self.assertEqual(status, 200)
        self.assertIn(b"BEGIN CERTIFICATE", pem)


if __name__ == "__main__":
    unittest.main()
