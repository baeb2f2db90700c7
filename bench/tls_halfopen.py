#!/usr/bin/python3
"""tls_halfopen.py -- the emulator's memory under a burst of half-open TLS handshakes (issue 23, defect 6).

Starts its own emulator (free loopback ports, in-memory registry), then in rounds opens --concurrent TCP
connections to the MQTTS port that each send one real ClientHello (made by Python's ssl with a memory BIO)
and nothing else, waits until the emulator has answered every one (its ServerHello flight), records the
emulator's VmRSS, closes them all and records VmRSS again once the emulator has reaped them. --total
handshakes in all (default 20,000). Prints one JSON object (also appended to --jsonl if given).
usage: bench/tls_halfopen.py --emulator PATH [--total N] [--concurrent N] [--jsonl FILE]"""

import argparse
import json
import os
import resource
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def client_hello():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def one_round(port, n):
    """n half-open handshakes at once; returns when the emulator answered each (or 60 s passed)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    hello = client_hello()  # the same bytes for every connection: the emulator cannot tell
    poller = select.poll()
    pending = {}
    for s in socks:
        poller.register(s.fileno(), select.POLLOUT)
        pending[s.fileno()] = (s, "connect")
    answered = 0
    end = time.monotonic() + 60
    while pending and time.monotonic() < end:
        for fd, ev in poller.poll(1000):
            s, state = pending[fd]
            if state == "connect":
                try:
                    s.send(hello)
                except OSError:
                    poller.unregister(fd)
                    del pending[fd]
                    continue
                pending[fd] = (s, "hello")
                poller.modify(fd, select.POLLIN)
            else:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                poller.unregister(fd)
                del pending[fd]
                answered += 1 if data else 0
    return socks, answered


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--total", type=int, default=20000)
    ap.add_argument("--concurrent", type=int, default=5000)
    ap.add_argument("--jsonl")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    concurrent = min(a.concurrent, hard - 200)
    tmp = tempfile.mkdtemp(prefix="tls-halfopen-")
    ports = {k: free_port() for k in ("mqtts", "https", "mqtt", "http")}
    proc = subprocess.Popen([a.emulator, "--bind", "127.0.0.1", "--in-memory", "--data-dir", tmp,
                             "--mqtts-port", str(ports["mqtts"]), "--https-port", str(ports["https"]),
                             "--mqtt-port", str(ports["mqtt"]), "--http-port", str(ports["http"]),
                             "--max-connections", str(concurrent + 100), "--log-level", "error"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        base_fds = fd_count(proc.pid)
        record = {"total": 0, "concurrent": concurrent, "rss_start_kib": rss_kib(proc.pid), "rounds": []}
        done = 0
        while done < a.total:
            n = min(concurrent, a.total - done)
            socks, answered = one_round(ports["mqtts"], n)
            held = rss_kib(proc.pid)
            for s in socks:
                s.close()
            end = time.monotonic() + 30
            while fd_count(proc.pid) > base_fds + 5 and time.monotonic() < end:
                time.sleep(0.05)  # polling /proc: the emulator has no event to await here
            time.sleep(1.0)  # the emulator trims 200 ms after a burst starts closing
            record["rounds"].append({"handshakes": n, "answered": answered, "rss_held_kib": held,
                                     "rss_after_close_kib": rss_kib(proc.pid)})
            done += n
        record["total"] = done
        record["rss_end_kib"] = rss_kib(proc.pid)
        peak = max(r["rss_held_kib"] for r in record["rounds"])
        largest = max(r["handshakes"] for r in record["rounds"])
        record["kib_per_halfopen_held"] = round((peak - record["rss_start_kib"]) / largest, 2)
        record["kib_retained_after"] = record["rss_end_kib"] - record["rss_start_kib"]
        print(json.dumps(record))
        if a.jsonl:
            with open(a.jsonl, "a") as f:
                f.write(json.dumps(record) + "\n")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
