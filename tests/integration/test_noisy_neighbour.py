"""test_noisy_neighbour.py -- one hostile or greedy client must never stall the others (issue 23). Each attack runs
for a few seconds beside a healthy device (paho, plain MQTT) whose direct methods a caller invokes back to back
over one keep-alive HTTP connection; the test asserts those calls keep flowing by COUNT (latency is the bench's
job, bench/noisy.py). Attacks, each from its own process (noisy_attacker.py): a QoS 0 PUBLISH flood from one
identity (plain and TLS), a WebSocket pong flood and empty AMQP frames with no credentials, pipelined HTTP
requests. Then 1,100 idle TCP sockets on the plain HTTP port and 1,100 idle TLS keep-alive connections on the
HTTPS port, after which new REST clients must still be served; --max-connections counting the plain HTTP port; the deadline for a first request and the keep-alive idle
timeout on both REST ports. Also (its own ctest entry, `test_noisy_neighbour.py memory`): memory handed back
after a burst of half-open TLS handshakes. Free ports chosen at run time."""

import http.client
import json
import os
import resource
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

import paho.mqtt.client as mqtt

from harness import EMULATOR, Emulator, sas_token

HERE = os.path.dirname(os.path.abspath(__file__))
ATTACKER = os.path.join(HERE, "noisy_attacker.py")
HEALTHY_KEY = "aGVhbHRoeS1kZXZpY2Uta2V5LTEyMzQ1Njc4OTAxMg=="
FLOODER_KEY = "Zmxvb2Rlci1kZXZpY2Uta2V5LTEyMzQ1Njc4OTAxMjM="
ATTACK_S = 3.0
IDLE_SOCKETS = 1100
WAIT = 15


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


raise_nofile()  # before any emulator starts: it inherits the limit


class Healthy:
    """A device answering every method call at once, and a caller invoking it back to back."""

    def __init__(self, emu, device_id="healthy"):
        self.emu, self.device_id = emu, device_id
        status, _, body = emu.create_device(device_id, primary=HEALTHY_KEY, secondary=HEALTHY_KEY)
        assert status == 200, body
        self.dev = mqtt.Client(client_id=device_id, clean_session=True, protocol=mqtt.MQTTv311)
        self.dev.username_pw_set("localhost/%s/?api-version=2021-04-12" % device_id,
                                 emu.device_token(device_id, key=HEALTHY_KEY))
        subscribed = threading.Event()
        self.dev.on_connect = lambda c, u, f, rc: c.subscribe("$iothub/methods/POST/#", 0)
        self.dev.on_subscribe = lambda c, u, mid, granted: subscribed.set()
        self.dev.on_message = self.on_message
        self.dev.connect("127.0.0.1", emu.mqtt_port, 60)
        self.dev.loop_start()
        assert subscribed.wait(WAIT), "the healthy device did not subscribe"
        self.http = None

    def on_message(self, client, userdata, msg):
        rid = msg.topic.split("?$rid=")[1]
        client.publish("$iothub/methods/res/200/?$rid=%s" % rid, msg.payload, qos=0)

    def close(self):
        self.dev.disconnect()
        self.dev.loop_stop()
        if self.http:
            self.http.close()

    def call(self, timeout=10, retry=True):
        """One method call over the keep-alive connection; True when answered 200 with the payload echoed."""
        body = json.dumps({"methodName": "ping", "payload": {"n": 1}, "responseTimeoutInSeconds": 10})
        for attempt in range(2 if retry else 1):
            try:
                if self.http is None:
                    self.http = http.client.HTTPConnection("127.0.0.1", self.emu.http_port, timeout=timeout)
                self.http.request("POST", "/twins/%s/methods?api-version=2021-04-12" % self.device_id, body,
                                  {"Authorization": self.emu.service_token(), "Content-Type": "application/json"})
                resp = self.http.getresponse()
                data = resp.read()
                return resp.status == 200 and json.loads(data).get("payload") == {"n": 1}
            except (OSError, http.client.HTTPException):
                self.http.close()
                self.http = None  # the server may close an idle keep-alive connection: one retry on a new one
        return False

    def count_calls(self, seconds):
        """Calls answered correctly in `seconds` (one in flight at a time)."""
        end = time.monotonic() + seconds
        ok = 0
        while time.monotonic() < end:
            if self.call():
                ok += 1
        return ok


def start_attacker(*args):
    proc = subprocess.Popen([sys.executable, ATTACKER] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "flooding":
        proc.kill()
        raise AssertionError("attacker did not start: %r %r" % (line, proc.stderr.read()))
    return proc


def stop_attacker(proc):
    proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def get_health(port, timeout=5.0):
    """A fresh client's GET /health on the plain HTTP port: the status, or an exception."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    finally:
        conn.close()


def open_idle(port, n):
    """n TCP connections that never send a byte."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(True)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


# A request MHD answers (GET /health) and one the direct-method front answers itself (http/rest_front.c): a
# method call without a token, 401. Connections of either kind must keep the same deadlines and eviction.
HEALTH = ("GET", "/health")
METHOD = ("POST", "/twins/nodevice/methods?api-version=2021-04-12")


def open_keep_alives(emu, n, conns, request=HEALTH):
    """n HTTPS connections, each kept open (appended to conns) and idle after one request; their statuses."""
    ctx, statuses = emu.tls_context(), []
    for _ in range(n):
        c = http.client.HTTPSConnection("127.0.0.1", emu.https_port, context=ctx, timeout=WAIT)
        conns.append(c)
        c.request(request[0], request[1], body=b"{}" if request[0] == "POST" else None, headers={"Host": "localhost"})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
    return statuses


def closed_by_server(socks, within):
    """How many of socks the server closed (EOF or reset) within `within` seconds; waits until all are or time is up."""
    pending = {s.fileno(): s for s in socks}
    closed = 0
    end = time.monotonic() + within
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while pending and time.monotonic() < end:
        for fd, _ in poller.poll(max(1, int((end - time.monotonic()) * 1000))):
            s = pending.pop(fd, None)
            if s is None:
                continue
            poller.unregister(fd)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed += 1
            else:
                pending[fd] = s  # an answer (e.g. a 503): the closing follows
                poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return closed


class NoisyNeighbourTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(extra_args=["--log-level", "warn"]).start()
        cls.healthy = Healthy(cls.emu)
        cls.healthy.count_calls(0.5)  # warm-up
        cls.baseline = cls.healthy.count_calls(1.0)

    @classmethod
    def tearDownClass(cls):
        cls.healthy.close()
        cls.emu.stop()

    def assert_calls_flow(self, during, what):
        # Idle, the caller makes hundreds of calls a second; a stalled loop let 2 through in 10 s (issue 23).
        floor = max(10, int(self.baseline * ATTACK_S * 0.05))
        print("\n  %s: %d healthy calls in %.0f s (idle: %d in 1 s; floor %d)" % (what, during, ATTACK_S,
                                                                                self.baseline, floor))
        self.assertGreaterEqual(during, floor, "%s: %d calls in %.0f s beside the attack (idle: %d in 1 s)"
                                % (what, during, ATTACK_S, self.baseline))

    def attack(self, what, *args, closes=False):
        """Runs noisy_attacker.py with args for ATTACK_S while the healthy device is called, and asserts the calls
        kept flowing; with closes, also that the emulator closed the attacker's connection meanwhile."""
        proc = start_attacker(*args)
        closed = None
        try:
            during = self.healthy.count_calls(ATTACK_S)
            if closes:
                ready, _, _ = select.select([proc.stdout], [], [], WAIT)
                closed = proc.stdout.readline().strip() if ready else "(still open)"
        finally:
            stop_attacker(proc)
        self.assert_calls_flow(during, what)
        if closes:
            self.assertEqual(closed, "closed")

    def flooder_token(self, device_id):
        status, _, body = self.emu.create_device(device_id, primary=FLOODER_KEY, secondary=FLOODER_KEY)
        self.assertEqual(status, 200, body)
        return sas_token("localhost/devices/" + device_id, FLOODER_KEY)

    def test_publish_flood_from_one_identity(self):
        token = self.flooder_token("flooder")
        self.attack("QoS 0 PUBLISH flood", "publish", "127.0.0.1", self.emu.mqtt_port, "flooder", token)
        self.assertEqual(get_health(self.emu.http_port), 200)

    def test_publish_flood_over_tls(self):
        token = self.flooder_token("tlsflooder")
        self.attack("QoS 0 PUBLISH flood over TLS", "publish-tls", "127.0.0.1", self.emu.mqtts_port, "tlsflooder",
                    token)

    def test_websocket_pong_flood_without_credentials(self):
        # Nothing but control frames before MQTT CONNECT: the emulator closes it after a bounded amount.
        self.attack("WebSocket pong flood", "pong", "127.0.0.1", self.emu.https_port, closes=True)

    def test_pipelined_http_flood(self):
        self.attack("pipelined HTTP flood", "http", "127.0.0.1", self.emu.http_port)

    def test_amqp_frames_without_credentials(self):
        self.attack("empty AMQP frames before SASL", "amqp", "127.0.0.1", self.emu.amqp_port, closes=True)

    def test_idle_sockets_on_the_http_port(self):
        socks = open_idle(self.emu.http_port, IDLE_SOCKETS)
        try:
            self.assertEqual(get_health(self.emu.http_port), 200)
            status, _, body = self.emu.rest("GET", "/devices/healthy?api-version=2021-04-12", timeout=5)
            self.assertEqual(status, 200, body)
            self.assert_calls_flow(self.healthy.count_calls(ATTACK_S), "%d idle HTTP sockets" % IDLE_SOCKETS)
        finally:
            for s in socks:
                s.close()

    def test_idle_tls_keep_alive_connections_on_the_https_port(self):
        ctx = self.emu.tls_context()
        conns = []
        try:
            self.assertEqual(open_keep_alives(self.emu, IDLE_SOCKETS, conns), [200] * IDLE_SOCKETS)
            statuses = []
            for _ in range(20):
                c = http.client.HTTPSConnection("127.0.0.1", self.emu.https_port, context=ctx, timeout=5)
                c.request("GET", "/devices/healthy?api-version=2021-04-12",
                          headers={"Host": "localhost", "Authorization": self.emu.service_token()})
                statuses.append(c.getresponse().status)
                c.close()
            self.assertEqual(statuses, [200] * 20)
        finally:
            for c in conns:
                c.close()


class ConnectionLimitTest(unittest.TestCase):
    def test_max_connections_counts_the_http_port(self):
        with Emulator(extra_args=["--max-connections", "50", "--log-level", "error"]) as emu:
            socks = open_idle(emu.http_port, 80)
            try:
                closed = closed_by_server(socks, within=5)
                # 80 idle connections against a limit of 50: 30 go (the oldest idle ones are evicted).
                self.assertGreaterEqual(closed, 30)
                self.assertEqual(get_health(emu.http_port), 200)  # a new client evicts an idle one, never hangs
            finally:
                for s in socks:
                    s.close()

    def test_at_the_limit_new_https_clients_evict_idle_keep_alives(self):
        for request, status in ((HEALTH, 200), (METHOD, 401)):
            with self.subTest(request=request[0]), Emulator(extra_args=["--max-connections", "20",
                                                                         "--log-level", "error"]) as emu:
                conns = []
                try:
                    # 10 more than the limit: each new one closes the longest-idle one
                    self.assertEqual(open_keep_alives(emu, 30, conns, request), [status] * 30)
                    self.assertGreaterEqual(closed_by_server([c.sock for c in conns[:10]], within=5), 10)
                finally:
                    for c in conns:
                        c.close()

    def test_first_request_deadline_and_idle_keep_alive_timeout(self):
        for method, path in (HEALTH, METHOD):
            with self.subTest(request=method), Emulator(extra_args=["--connect-timeout", "1", "--http-idle-timeout",
                                                                     "2", "--log-level", "error"]) as emu:
                self.deadlines(emu, method, path)

    def deadlines(self, emu, method, path):
        body = b"{}" if method == "POST" else None
        silent = open_idle(emu.http_port, 5)
        slow = socket.create_connection(("127.0.0.1", emu.http_port))
        slow.sendall(("%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)).encode())  # head never finished
        kept = http.client.HTTPConnection("127.0.0.1", emu.http_port, timeout=WAIT)
        kept.request(method, path, body=body)
        self.assertEqual(kept.getresponse().read() != b"", True)
        tls = http.client.HTTPSConnection("127.0.0.1", emu.https_port, context=emu.tls_context(), timeout=WAIT)
        tls.request(method, path, body=body, headers={"Host": "localhost"})
        tls.getresponse().read()
        try:
            start = time.monotonic()
            self.assertEqual(closed_by_server(silent + [slow], within=6), 6)
            self.assertLess(time.monotonic() - start, 4)  # --connect-timeout 1, not the idle timeout
            self.assertEqual(closed_by_server([kept.sock, tls.sock], within=8), 2)
        finally:
            for s in silent + [slow]:
                s.close()
            kept.close()
            tls.close()

    def test_a_slow_body_that_keeps_coming_is_not_idle(self):
        # The idle timeout counts inactivity (as libmicrohttpd's does), not the age of the request: a method
        # call's body trickling in for 1.5 idle-timeouts is answered (401: no token), not cut off.
        with Emulator(extra_args=["--http-idle-timeout", "2", "--log-level", "error"]) as emu:
            body = b"{" + b" " * 1500 + b"}"
            s = socket.create_connection(("127.0.0.1", emu.http_port))
            try:
                s.sendall(b"POST /twins/nodevice/methods?api-version=2021-04-12 HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body))
                for i in range(0, len(body), 250):  # 250 bytes every 0.5 s: 3 s in all
                    s.sendall(body[i:i + 250])
                    time.sleep(0.5)
                s.settimeout(WAIT)
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 401 "))
            finally:
                s.close()

    def test_a_waiting_method_call_is_not_idle(self):
        with Emulator(extra_args=["--http-idle-timeout", "1", "--log-level", "error"]) as emu:
            healthy = Healthy(emu)

            def late(client, userdata, msg):  # answers after 2.5 idle-timeouts
                rid = msg.topic.split("?$rid=")[1]
                threading.Timer(2.5, client.publish, ("$iothub/methods/res/200/?$rid=%s" % rid, msg.payload, 0)).start()

            healthy.dev.on_message = late
            try:
                start = time.monotonic()
                self.assertTrue(healthy.call(timeout=WAIT, retry=False))
                self.assertGreaterEqual(time.monotonic() - start, 2.4)  # the answer really came late
            finally:
                healthy.close()


def sanitized_emulator():
    with open(EMULATOR, "rb") as f:
        return b"__asan_init" in f.read()


class TlsHalfOpenMemoryTest(unittest.TestCase):
    """Defect 6: a burst of half-open TLS handshakes must not leave its memory with the emulator once closed
    (glibc kept ~45 KiB a connection: 2,000 made 89 MB that stayed). The bench (bench/tls_halfopen.py) measures
    20,000; here 1,000, bounded to a few seconds."""

    def test_memory_is_returned_after_a_burst_of_half_open_handshakes(self):
        if sanitized_emulator():
            self.skipTest("the emulator is an AddressSanitizer build: its allocator keeps freed memory in "
                          "quarantine (glibc's malloc_trim does not apply); the release build runs this")
        sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
        import tls_halfopen
        with Emulator(extra_args=["--log-level", "error"]) as emu:
            pid = emu.proc.pid
            fds0, rss0 = tls_halfopen.fd_count(pid), tls_halfopen.rss_kib(pid)
            socks, answered = tls_halfopen.one_round(emu.mqtts_port, 1000)
            self.assertEqual(answered, 1000)
            held = tls_halfopen.rss_kib(pid)
            self.assertGreater(held - rss0, 10000)  # the burst really costs memory while it lasts
            for s in socks:
                s.close()
            # Nothing to await in the emulator: poll /proc, bounded, for its fds and then its RSS.
            limit = rss0 + (held - rss0) // 4
            end = time.monotonic() + 10
            while time.monotonic() < end and (tls_halfopen.fd_count(pid) > fds0 + 5 or
                                              tls_halfopen.rss_kib(pid) > limit):
                time.sleep(0.05)
            after = tls_halfopen.rss_kib(pid)
            print("\n  1,000 half-open TLS handshakes: RSS %d KiB before, %d held, %d after closing" % (rss0, held, after))
            self.assertLessEqual(after, limit)


def run_memory_test():
    """ctest entry integration.tls_halfopen_memory: exit 77 (ctest SKIP) when the test skipped itself."""
    result = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(TlsHalfOpenMemoryTest))
    if not result.wasSuccessful():
        return 1
    return 77 if result.skipped else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["memory"]:
        sys.exit(run_memory_test())
    unittest.main(verbosity=2)
