"""harness.py -- starts a fresh iothub-emulator for a test (temporary data dir, free or fixed ports), waits for
its "ready" line, and offers what tests need: connection strings, SAS tokens made independently of our C code
(Python's hmac), raw TLS/MQTT clients (paho from Debian), a byte-level MQTT 3.1.1 reader (RawMqtt), and a REST
helper. On failure the emulator's log is
printed, so ctest shows it."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

EMULATOR = os.environ.get("IOTHUB_EMULATOR_BIN", "iothub-emulator")
OWNER_KEY = "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
DEVICE1_KEY = "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="


def free_ports(n):
    """n distinct free ports: all bound at once, so the kernel cannot hand out one twice (one at a time, it
    can, and the emulator then refuses to start with two listeners on one port)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def sas_token(resource_uri, key_b64, ttl=3600, key_name=None, expiry=None, encode=True):
    """A SAS token as the Python/Node SDKs make it (encode=True) or as the C SDK does (raw sr)."""
    sr = urllib.parse.quote(resource_uri, safe="") if encode else resource_uri
    se = int(expiry if expiry is not None else time.time() + ttl)
    signed = (sr + "\n" + str(se)).encode()
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64), signed, hashlib.sha256).digest()).decode()
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, urllib.parse.quote(sig, safe=""), se)
    if key_name:
        token += "&skn=" + key_name
    return token


class Emulator:
    """One emulator process. Use as a context manager."""

    def __init__(self, fixed_ports=False, extra_args=(), data_dir=None, hostname="localhost", env=None):
        self.tmp = tempfile.mkdtemp(prefix="iothub-test-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.hostname = hostname
        ports = free_ports(6)
        if fixed_ports:
            self.mqtts_port, self.https_port, self.amqps_port = 8883, 443, 5671
        else:
            self.mqtts_port, self.https_port, self.amqps_port = ports[3:]
        self.mqtt_port, self.http_port, self.amqp_port = ports[:3]
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **env) if env else None
        self.proc = None
        self.log_path = os.path.join(self.tmp, "emulator.log")
        self.lines = []

    @property
    def ca_path(self):
        return os.path.join(self.data_dir, "ca.pem")

    def args(self):
        return [EMULATOR, "--bind", "127.0.0.1", "--hostname", self.hostname,
                "--mqtts-port", str(self.mqtts_port), "--https-port", str(self.https_port),
                "--mqtt-port", str(self.mqtt_port), "--http-port", str(self.http_port),
                "--amqps-port", str(self.amqps_port), "--amqp-port", str(self.amqp_port),
                "--data-dir", self.data_dir, "--log-level", "debug"] + self.extra_args

    def start(self, timeout=20):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.PIPE, stderr=self.log, env=self.env)
        ready = threading.Event()
        seen = []  # "ready" was printed (the event is also set at EOF, when the process exits first)

        def reader():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if line == "ready":
                    seen.append(True)
                    ready.set()
            ready.set()

        threading.Thread(target=reader, daemon=True).start()
        if not ready.wait(timeout) or not seen or self.proc.poll() is not None:
            self.dump_log()
            raise RuntimeError("emulator did not start: %s" % self.lines)
        return self

    def stop(self, sig=15, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None

    def dump_log(self):
        try:
            with open(self.log_path, "rb") as f:
                print("----- emulator log -----\n" + f.read().decode(errors="replace") + "----- end -----")
        except OSError:
            pass

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is not None:
            self.dump_log()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- credentials ---
    def device_token(self, device_id="device1", key=DEVICE1_KEY, module_id=None, ttl=3600, **kw):
        uri = "%s/devices/%s" % (self.hostname, device_id)
        if module_id:
            uri += "/modules/" + module_id
        return sas_token(uri, key, ttl=ttl, **kw)

    def service_token(self, policy="iothubowner", key=OWNER_KEY, ttl=3600):
        return sas_token(self.hostname, key, ttl=ttl, key_name=policy)

    def service_connection_string(self):
        return "HostName=%s;SharedAccessKeyName=iothubowner;SharedAccessKey=%s" % (self.hostname, OWNER_KEY)

    def device_connection_string(self, device_id="device1", key=DEVICE1_KEY, module_id=None):
        cs = "HostName=%s;DeviceId=%s;SharedAccessKey=%s" % (self.hostname, device_id, key)
        return cs + (";ModuleId=" + module_id if module_id else "")

    # --- REST over the plain dev port ---
    def rest(self, method, path, body=None, token=None, headers=None, timeout=60):
        url = "http://127.0.0.1:%d%s" % (self.http_port, path)
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", token if token is not None else self.service_token())
        req.add_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, dict(resp.headers), (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw
            return e.code, dict(e.headers), parsed

    def invoke(self, device_id, method="DeviceMethod", payload=None, response_timeout=30, connect_timeout=0,
               module_id=None, **kw):
        path = "/twins/%s" % urllib.parse.quote(device_id, safe="")
        if module_id:
            path += "/modules/%s" % urllib.parse.quote(module_id, safe="")
        body = {"methodName": method, "payload": payload, "responseTimeoutInSeconds": response_timeout,
                "connectTimeoutInSeconds": connect_timeout}
        return self.rest("POST", path + "/methods?api-version=2021-04-12", body, **kw)

    def create_device(self, device_id, primary=None, secondary=None, status=None):
        body = {"deviceId": device_id, "authentication": {"type": "sas", "symmetricKey": {
            "primaryKey": primary or "", "secondaryKey": secondary or ""}}}
        if status:
            body["status"] = status
        return self.rest("PUT", "/devices/%s?api-version=2021-04-12" % urllib.parse.quote(device_id, safe=""), body)

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_path)
        return ctx


# ---- raw MQTT 3.1.1, byte by byte: for tests that must control (or see) every flag ----

RAW_WAIT = 15  # seconds a raw read waits for a packet


def mqtt_string(s):
    """A length-prefixed MQTT string (str or bytes)."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def mqtt_packet(first, body):
    """A control packet: first byte, variable-length Remaining Length, body."""
    n, rl = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        rl += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([first]) + rl + body


class RawMqtt:
    """A socket (plain or TLS; set self.sock, self.buf = b"") read one MQTT packet at a time. A clean close by
    the peer raises EOFError; a reset raises ConnectionResetError."""

    def __init__(self):
        self.sock = None
        self.buf = b""

    def read_packet(self, timeout=RAW_WAIT):
        """The next packet as (type nibble << 4, payload)."""
        first, payload = self.read_whole(timeout)
        return first & 0xF0, payload

    def read_whole(self, timeout=RAW_WAIT):
        """The next packet as (first byte, flags included; payload)."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf):
                    n += (self.buf[i] & 0x7F) * mult
                    mult *= 128
                    if not self.buf[i] & 0x80:
                        break
                    i += 1
                if i < len(self.buf) and len(self.buf) >= i + 1 + n:
                    first, payload = self.buf[0], self.buf[i + 1:i + 1 + n]
                    self.buf = self.buf[i + 1 + n:]
                    return first, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed cleanly by the emulator")
            self.buf += chunk

    def read_publish_topic(self):
        """Skips to the next PUBLISH; returns its topic."""
        while True:
            kind, payload = self.read_packet()
            if kind == 0x30:
                tlen = struct.unpack("!H", payload[:2])[0]
                return payload[2:2 + tlen].decode()
