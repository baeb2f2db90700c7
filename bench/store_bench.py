#!/usr/bin/env python3
"""store_bench.py -- benchmarks of the SQLite store (issue 12) beside the JSON-file registry it replaced, in one
run on this machine: registry writes (10,000 devices created one PUT at a time, and in bulk requests of 100), the
cost of one PUT at 100 and at 10,000 registered devices, and start-up (exec to the first GET /health 200) with
10,000 and 100,000 registered devices. The JSON figures come from a build of the last JSON-registry release
(--baseline, or built here from git rev 28b5074). Writes a Markdown section into RESULTS.md (between
"<!-- store-bench -->" markers, replacing an older one; run.sh calls this after its report) and prints it.

Usage: bench/store_bench.py [--emulator PATH] [--baseline PATH | --baseline-rev REV] [--out RESULTS.md]
       [--quick] [--runs N]
Needs only python3 (stdlib). Timings are wall clock on a shared machine: compare the columns, not the runs."""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OWNER_KEY = "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
API = "?api-version=2021-04-12"
BEGIN, END = "<!-- store-bench -->", "<!-- /store-bench -->"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def owner_token():
    sr, se = "localhost", int(time.time()) + 7200
    sig = base64.b64encode(hmac.new(base64.b64decode(OWNER_KEY), ("%s\n%d" % (sr, se)).encode(),
                                    hashlib.sha256).digest()).decode()
    return "SharedAccessSignature sr=%s&sig=%s&se=%d&skn=iothubowner" % (sr, urllib.parse.quote(sig, safe=""), se)


class Emulator:
    def __init__(self, binary, data_dir):
        self.binary, self.data_dir, self.port = binary, data_dir, free_port()
        self.proc = None

    def argv(self):
        return [self.binary, "--data-dir", self.data_dir, "--http-port", str(self.port), "--https-port", "0",
                "--mqtts-port", "0", "--mqtt-port", "0", "--log-level", "warn"]

    def start(self):
        """Starts it and returns seconds from exec to the first /health 200 (polled every millisecond)."""
        log = open(os.path.join(os.path.dirname(self.data_dir), "emulator.log"), "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        deadline = t0 + 120
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s" % (self.binary, self.proc.returncode))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    c.close()
                    return time.perf_counter() - t0
                c.close()
            except OSError:
                pass
            time.sleep(0.001)
        raise RuntimeError("no /health 200 within 120 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Client:
    """One keep-alive HTTP/1.1 connection to the plain port."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": owner_token(), "Content-Type": "application/json; charset=utf-8"}

    def call(self, method, path, body):
        self.c.request(method, path, json.dumps(body), self.headers)
        r = self.c.getresponse()
        data = r.read()
        if r.status not in (200, 201):
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:300]))
        return data


def put_devices(port, prefix, n, sample_at):
    """Creates n devices one PUT at a time; returns (total s, {k: median ms of the 100 PUTs after k devices})."""
    cl = Client(port)
    times = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        did = "%s-%06d" % (prefix, i)
        cl.call("PUT", "/devices/%s%s" % (did, API), {"deviceId": did})
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return total, {k: statistics.median(times[k - 100:k]) * 1000 for k in sample_at if k <= n}


def bulk_devices(port, prefix, n):
    cl = Client(port)
    t0 = time.perf_counter()
    for start in range(0, n, 100):
        body = [{"id": "%s-%06d" % (prefix, i), "importMode": "create"} for i in range(start, min(n, start + 100))]
        cl.call("POST", "/devices" + API, body)
    return time.perf_counter() - t0


def registry_json(path, n):
    """A registry.json in the format of the JSON-file registry (release 0.1.0), n devices."""
    key = base64.b64encode(bytes(range(32))).decode()
    devs = [{"deviceId": "gen-%06d" % i, "primaryKey": key, "secondaryKey": key, "status": "enabled",
             "statusReason": None, "generationId": str(100000000000000000 + i), "version": 0,
             "statusUpdatedTime": 0, "iotEdge": False, "modules": []} for i in range(n)]
    with open(path, "w") as f:
        json.dump({"version": 1, "devices": devs}, f, separators=(",", ":"))


def startup_times(binary, work, n, runs, label):
    """Start-up with n registered devices: an unmeasured warm-up (the SQLite build imports registry.json in it),
    then runs measured starts. Returns the sorted times in ms."""
    d = os.path.join(work, "%s-%d" % (label, n), "data")
    os.makedirs(d)
    registry_json(os.path.join(d, "registry.json"), n)
    out = []
    for i in range(runs + 1):
        emu = Emulator(binary, d)
        t = emu.start()
        emu.stop()
        if i:
            out.append(t * 1000)
    return sorted(out)


def build_baseline(rev, work):
    src = os.path.join(work, "baseline-src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", REPO, "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    build = os.path.join(work, "baseline-build")
    subprocess.run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DBUILD_TESTING=OFF"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", build, "-j2", "--target", "iothub-emulator"], check=True, capture_output=True)
    return os.path.join(build, "emulator", "iothub-emulator")


def fmt_ms(v):
    return "%.2f" % v if v < 10 else "%.1f" % v if v < 100 else "%.0f" % v


def spread(ts):
    return "%s (%s-%s)" % (fmt_ms(statistics.median(ts)), fmt_ms(ts[0]), fmt_ms(ts[-1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emulator", default=os.path.join(REPO, "build", "emulator", "iothub-emulator"))
    ap.add_argument("--baseline", help="a JSON-registry build of iothub-emulator")
    ap.add_argument("--baseline-rev", default="28b5074", help="git rev to build the baseline from")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "RESULTS.md"))
    ap.add_argument("--quick", action="store_true", help="1,000 devices and 10,000 at start-up; 2 runs")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    n_put = 1000 if a.quick else 10000
    n_json_put = 500 if a.quick else 2500  # the JSON registry takes minutes for 10,000
    sizes = [10000] if a.quick else [10000, 100000]
    runs = 2 if a.quick else a.runs
    work = tempfile.mkdtemp(prefix="iothub-store-bench-")
    try:
        baseline = a.baseline or build_baseline(a.baseline_rev, work)
        rows = []
        res = {}
        # ---- writes ----
        for label, binary, n in (("sqlite", a.emulator, n_put), ("json", baseline, n_json_put)):
            d = os.path.join(work, "writes-" + label, "data")
            os.makedirs(d)
            emu = Emulator(binary, d)
            emu.start()
            try:
                res[label] = put_devices(emu.port, "one", n, [200, 500, 2500, 10000])
                if label == "sqlite":
                    res["bulk"] = bulk_devices(emu.port, "bulk", n_put)
            finally:
                emu.stop()
        s_total, s_at = res["sqlite"]
        j_total, j_at = res["json"]
        # ---- start-up ----
        st = {}
        for n in sizes:
            st[("sqlite", n)] = startup_times(a.emulator, work, n, runs, "sqlite")
            st[("json", n)] = startup_times(baseline, work, n, runs, "json")
        # ---- report ----
        machine = "%s, %d cores, load %s, %s" % (platform.machine(), os.cpu_count(),
                                                  " ".join(open("/proc/loadavg").read().split()[:3]),
                                                  time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        rev = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                             text=True).stdout.strip()
        L = [BEGIN, "## Store (issue 12): SQLite against the JSON-file registry, same run", "",
             "`bench/store_bench.py%s` on %s; emulator %s, JSON baseline %s (release 0.1.0). One keep-alive HTTP/1.1"
             " connection on the plain port, one request at a time; a PUT is answered after its commit"
             " (WAL, synchronous=NORMAL)." % (" --quick" if a.quick else "", machine, rev,
                                             a.baseline or "built from " + a.baseline_rev), "",
             "| registry writes | SQLite store | JSON file | ratio |", "|---|---|---|---|"]
        L.append("| %d devices one PUT at a time | %.1f s | %s | |" % (
            n_put, s_total, "%.1f s for the first %d" % (j_total, n_json_put)))
        L.append("| %d devices in bulk requests of 100 | %.2f s | (no bulk API) | |" % (n_put, res["bulk"]))
        for k in (200, 500, 2500, 10000):
            if k in s_at or k in j_at:
                sv, jv = s_at.get(k), j_at.get(k)
                L.append("| one PUT, devices %d-%d (median), ms | %s | %s | %s |" % (
                    k - 99, k, fmt_ms(sv) if sv else "", fmt_ms(jv) if jv else "",
                    "%.0fx" % (jv / sv) if sv and jv else ""))
        if 200 in s_at and n_put in s_at:
            L += ["", "PUT cost at %d against at 200 devices: SQLite %.2fx, JSON (%d against 200) %.1fx." % (
                n_put, s_at[n_put] / s_at[200], n_json_put, j_at[n_json_put] / j_at[200])]
        L += ["", "| start-up, exec to /health 200, ms: median (min-max) of %d | SQLite store | JSON file | ratio |"
              % runs, "|---|---|---|---|"]
        for n in sizes:
            sv, jv = st[("sqlite", n)], st[("json", n)]
            L.append("| %d devices | %s | %s | %.1fx |" % (n, spread(sv), spread(jv),
                                                           statistics.median(jv) / statistics.median(sv)))
        L += ["", "Targets (issue 12): start-up under 100 ms with 10,000 devices and under 500 ms with 100,000; PUT"
              " cost flat in the registry size. The SQLite build's measured starts read the store its first (unmeasured)"
              " start imported from the same registry.json the JSON build loads each time.", END]
        section = "\n".join(L) + "\n"
        print(section)
        text = open(a.out).read() if os.path.exists(a.out) else ""
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
        with open(a.out, "w") as f:
            f.write(text)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
