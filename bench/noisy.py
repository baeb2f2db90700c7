#!/usr/bin/python3
"""noisy.py -- a healthy device's method-call latency while one hostile or greedy client attacks (issue 23).

Starts the emulator (free loopback ports, a registry from `iothub_bench gen-registry`), then measures with
`iothub_bench methods` (one plain-HTTP keep-alive caller, one plain-MQTT device, one call in flight, 16-byte
payload): idle first, then during each attack, each from its own process or socket set:
  publish      QoS 0 PUBLISH flood from one authenticated identity, plain MQTT (tests/integration/noisy_attacker.py)
  publish-tls  the same over MQTT/TLS
  pong         WebSocket pong frames on the HTTPS port with no credentials, reconnecting whenever it is closed
  http         pipelined GET /health on the plain HTTP port as fast as it goes, the answers drained
  idle-http    1,100 idle TCP sockets on the plain HTTP port
  idle-https   1,100 TLS keep-alive connections on the HTTPS port, idle after one GET /health
Idle and attacked runs alternate, --repeat pairs per attack (the machine is shared: each attacked run is
compared with the idle run just before it; the median ratio is reported). The goal (issue 23) is a p50 during
every attack at most 2x the idle p50. Prints a Markdown table and writes
JSON lines to --jsonl.
usage: bench/noisy.py [--emulator PATH] [--bench PATH] [--measure S] [--repeat N] [--only WORDS] [--jsonl FILE]
                      [--md FILE]"""

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ATTACKER = os.path.join(REPO, "tests", "integration", "noisy_attacker.py")
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from harness import sas_token  # noqa: E402

FLOODER_KEY = "Zmxvb2Rlci1kZXZpY2Uta2V5LTEyMzQ1Njc4OTAxMjM="
OWNER_KEY = "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
IDLE_SOCKETS = 1100


class Emu:
    def __init__(self, emulator, bench):
        self.tmp = tempfile.mkdtemp(prefix="noisy-bench-")
        subprocess.run([bench, "gen-registry", "--devices", "10", "--out", os.path.join(self.tmp, "registry.json")],
                       check=True)
        ports = subprocess.run([bench, "free-ports", "--count", "4"], check=True, capture_output=True,
                               text=True).stdout.split()
        self.mqtts, self.https, self.mqtt, self.http = (int(p) for p in ports)
        self.proc = subprocess.Popen([emulator, "--bind", "127.0.0.1", "--data-dir", self.tmp,
                                      "--mqtts-port", str(self.mqtts), "--https-port", str(self.https),
                                      "--mqtt-port", str(self.mqtt), "--http-port", str(self.http),
                                      "--log-level", "error"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        for line in self.proc.stdout:
            if line.strip() == "ready":
                break
        self.ca = os.path.join(self.tmp, "ca.pem")

    def token(self):
        return sas_token("localhost", OWNER_KEY, key_name="iothubowner")

    def create_flooder(self, device_id):
        c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)
        body = json.dumps({"deviceId": device_id, "authentication": {"type": "sas", "symmetricKey": {
            "primaryKey": FLOODER_KEY, "secondaryKey": FLOODER_KEY}}})
        c.request("PUT", "/devices/%s?api-version=2021-04-12" % device_id, body,
                  {"Authorization": self.token(), "Content-Type": "application/json"})
        assert c.getresponse().status == 200
        c.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def measure(bench, emu, seconds):
    out = subprocess.run([bench, "methods", "--emu-mqtts", str(emu.mqtts), "--emu-https", str(emu.https),
                          "--emu-mqtt", str(emu.mqtt), "--emu-http", str(emu.http), "--emu-ca", emu.ca,
                          "--emu-pid", str(emu.proc.pid), "--devices", "1", "--inflight", "1", "--payloads", "16",
                          "--transports", "plain", "--warmup", "0.5", "--measure", str(seconds), "--drain", "10"],
                         capture_output=True, text=True, timeout=120)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("target") == "emulator":
                return rec
    raise RuntimeError("iothub_bench methods failed: %s %s" % (out.stdout, out.stderr))


def attacker(*args):
    proc = subprocess.Popen([sys.executable, ATTACKER] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "flooding":
        raise RuntimeError("attacker %s did not start" % (args,))
    return proc


def idle_http(emu):
    socks = []
    for _ in range(IDLE_SOCKETS):
        socks.append(socket.create_connection(("127.0.0.1", emu.http)))
    return socks


def idle_https(emu):
    ctx = ssl.create_default_context(cafile=emu.ca)
    conns = []
    for _ in range(IDLE_SOCKETS):
        c = http.client.HTTPSConnection("127.0.0.1", emu.https, context=ctx, timeout=10)
        c.request("GET", "/health", headers={"Host": "localhost"})
        c.getresponse().read()
        conns.append(c)
    return conns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emulator", default=os.path.join(REPO, "build", "emulator", "iothub-emulator"))
    ap.add_argument("--bench", default=os.path.join(REPO, "build", "bench", "iothub_bench"))
    ap.add_argument("--measure", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", help="comma-separated words: run the attacks whose name contains one")
    ap.add_argument("--jsonl")
    ap.add_argument("--md")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    emu = Emu(a.emulator, a.bench)
    rows = []
    try:
        emu.create_flooder("flooder")
        token = sas_token("localhost/devices/flooder", FLOODER_KEY)
        attacks = [
            ("QoS 0 PUBLISH flood, plain MQTT", lambda: attacker("publish", "127.0.0.1", emu.mqtt, "flooder", token)),
            ("QoS 0 PUBLISH flood, MQTT/TLS", lambda: attacker("publish-tls", "127.0.0.1", emu.mqtts, "flooder",
                                                               token)),
            ("WebSocket pong flood, no credentials (reconnecting)", lambda: attacker("pong-loop", "127.0.0.1",
                                                                                     emu.https)),
            ("pipelined GET /health flood, plain HTTP", lambda: attacker("http", "127.0.0.1", emu.http)),
            ("%d idle TCP sockets on the HTTP port" % IDLE_SOCKETS, lambda: idle_http(emu)),
            ("%d idle TLS keep-alive connections on :443" % IDLE_SOCKETS, lambda: idle_https(emu)),
        ]
        if a.only:
            attacks = [t for t in attacks if any(w.lower() in t[0].lower() for w in a.only.split(","))]
        for name, start in attacks:
            # Idle and attacked runs alternate (--repeat pairs): the machine is shared, so each attacked run
            # is compared with the idle run just before it, and the median ratio is reported.
            pairs = []
            for _ in range(a.repeat):
                idle = measure(a.bench, emu, a.measure)
                held = start()
                try:
                    hit = measure(a.bench, emu, a.measure)
                finally:
                    release(held)
                time.sleep(1)  # let the emulator reap the attack's connections before the next run
                pairs.append((hit["p50_ms"] / idle["p50_ms"] if idle["p50_ms"] else 0, idle, hit))
            pairs.sort(key=lambda p: p[0])
            rows.append((name, pairs[len(pairs) // 2]))
    finally:
        emu.stop()
    lines = ["| attack | idle p50 ms | p50 ms | p99 ms | calls/s | p50 / idle p50 (median of %d) |" % a.repeat,
             "|---|---|---|---|---|---|"]
    for name, (ratio, idle, hit) in rows:
        lines.append("| %s | %.3f | %.3f | %.3f | %.0f | %.2f |" % (name, idle["p50_ms"], hit["p50_ms"],
                                                                   hit["p99_ms"], hit["calls_per_s"], ratio))
        if a.jsonl:
            with open(a.jsonl, "a") as f:
                f.write(json.dumps({"attack": name, "ratio": ratio, "idle": idle, "attacked": hit}) + "\n")
    table = "\n".join(lines)
    print(table)
    if a.md:
        with open(a.md, "w") as f:
            f.write(table + "\n")


def release(held):
    if isinstance(held, subprocess.Popen):
        held.kill()
        held.wait()
        held.stdout.close()
    else:
        for s in held:
            s.close()


if __name__ == "__main__":
    sys.exit(main())
