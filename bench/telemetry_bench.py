#!/usr/bin/python3
"""telemetry_bench.py -- telemetry throughput and end-to-end latency: devices -> emulator (MQTT) -> a back end
reading the Event Hub-compatible endpoint (AMQP, every partition, from @latest), against the same devices ->
Mosquitto -> an MQTT subscriber, in the same run, at 1 and 100 devices.

The same clients on both sides where they can be: the devices are paho-mqtt (Debian python3-paho-mqtt)
publishing QoS 1 as the IoT SDKs send telemetry, over plain TCP; the emulator's reader is Qpid Proton
(python3-qpid-proton, C core) as an Event Hubs consumer (SASL ANONYMOUS, $cbs put-token, one receiver per
partition, prefetch 1000); Mosquitto's reader is a paho subscriber on devices/+/messages/events/#. Each body
carries its send time; the reader runs in its own process. Figures: events/s from the first send to the last
receive, p50/p99 of send-to-receive latency, and the server's CPU use (utime+stime over the run's wall time:
below 100% the clients, not the server, set the pace). Writes a Markdown table to stdout (and JSON with --json FILE).

Two phases: flat out (throughput; latency then is mostly queueing in the clients) and paced at --rate events/s
for 5 s (latency of the pipeline itself).

usage: bench/telemetry_bench.py [--emulator PATH] [--messages N] [--rate R] [--json FILE]
Needs mosquitto, python3-paho-mqtt, python3-qpid-proton (exit 77 when one is missing)."""

import argparse
import base64
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

try:
    import paho.mqtt.client as mqtt
    from proton import Message
    from proton.handlers import MessagingHandler
    from proton.reactor import Container, Selector
except ImportError as e:  # pragma: no cover
    print("SKIPPED: %s (apt-get install python3-paho-mqtt python3-qpid-proton)" % e)
    sys.exit(77)

OWNER_KEY = "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
DEVICE_KEY = "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
HOST = "127.0.0.1"
HUB = "iothub"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def iot_token(uri, key, skn=None, ttl=3600):
    sr = urllib.parse.quote(uri, safe="")
    se = int(time.time()) + ttl
    sig = base64.b64encode(hmac.new(base64.b64decode(key), ("%s\n%d" % (sr, se)).encode(), hashlib.sha256).digest())
    t = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, urllib.parse.quote(sig.decode(), safe=""), se)
    return t + ("&skn=%s" % skn if skn else "")


def eh_token(audience, key, skn, ttl=3600):
    """Event Hubs style: HMAC keyed with the key string."""
    sr = urllib.parse.quote_plus(audience)
    se = int(time.time()) + ttl
    sig = base64.b64encode(hmac.new(key.encode(), ("%s\n%d" % (sr, se)).encode(), hashlib.sha256).digest())
    return "SharedAccessSignature sr=%s&sig=%s&se=%d&skn=%s" % (sr, urllib.parse.quote_plus(sig.decode()), se, skn)


# ---- readers (each in its own process; put ("ready",) then ("done", [latencies ns], first_ns, last_ns)) ----

class EventHubReader(MessagingHandler):
    def __init__(self, port, partitions, want, q):
        super().__init__(prefetch=1000, auto_accept=True)
        self.url = "amqp://%s:%d" % (HOST, port)
        self.partitions, self.want, self.q = partitions, want, q
        self.lat, self.last, self.opened, self.sent_token = [], 0, 0, False

    def on_start(self, event):
        self.conn = event.container.connect(self.url, allowed_mechs="ANONYMOUS", user="iothubowner",
                                            sasl_enabled=True)
        self.cbs_out = event.container.create_sender(self.conn, "$cbs")
        self.cbs_in = event.container.create_receiver(self.conn, "$cbs")
        self.timer = event.container.schedule(120, self)

    def on_timer_task(self, event):
        self.finish()

    def on_sendable(self, event):
        if event.sender == self.cbs_out and not self.sent_token:
            aud = "sb://%s/%s" % (HOST, HUB)
            self.cbs_out.send(Message(body=eh_token(aud, OWNER_KEY, "iothubowner"), id=1,
                                      properties={"operation": "put-token", "type": "servicebus.windows.net:sastoken",
                                                  "name": aud}))
            self.sent_token = True

    def on_message(self, event):
        if event.receiver == self.cbs_in:
            if event.message.properties.get("status-code") != 200:
                raise RuntimeError("put-token refused: %r" % event.message.properties)
            for p in range(self.partitions):
                event.container.create_receiver(
                    self.conn, "%s/ConsumerGroups/$Default/Partitions/%d" % (HUB, p),
                    options=Selector("amqp.annotation.x-opt-offset > '@latest'"))
            return
        now = time.time_ns()
        self.lat.append(now - json.loads(event.message.body)["t"])
        self.last = now
        if len(self.lat) >= self.want:
            self.finish()

    def on_link_opened(self, event):
        if event.receiver and event.receiver != self.cbs_in:
            self.opened += 1
            if self.opened == self.partitions:
                self.q.put(("ready",))

    def finish(self):
        self.q.put(("done", self.lat, self.last))
        self.timer.cancel()
        self.conn.close()


def eventhub_reader(port, partitions, want, q):
    Container(EventHubReader(port, partitions, want, q)).run()


def mosquitto_reader(port, want, q):
    lat, state = [], {"last": 0}
    done = threading.Event()

    def on_connect(c, userdata, flags, rc):
        c.subscribe("devices/+/messages/events/#", qos=1)

    def on_subscribe(c, userdata, mid, granted):
        q.put(("ready",))

    def on_message(c, userdata, msg):
        now = time.time_ns()
        lat.append(now - json.loads(msg.payload)["t"])
        state["last"] = now
        if len(lat) >= want:
            done.set()

    c = mqtt.Client(client_id="reader", protocol=mqtt.MQTTv311)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(HOST, port)
    c.loop_start()
    done.wait(120)
    c.loop_stop()
    q.put(("done", lat, state["last"]))


# ---- devices ----

def device_clients(n, port, emulator):
    clients = []
    for i in range(n):
        dev = "bench%03d" % i
        c = mqtt.Client(client_id=dev, protocol=mqtt.MQTTv311)
        if emulator:
            c.username_pw_set("%s/%s/?api-version=2021-04-12" % (HOST, dev),
                              iot_token("%s/devices/%s" % (HOST, dev), DEVICE_KEY))
        c.max_inflight_messages_set(100)
        c.connect(HOST, port)
        c.loop_start()
        clients.append((dev, c))
    time.sleep(0.5)
    return clients


def publish_all(clients, per_device, rate):
    def run(dev, c):
        infos = []
        start = time.monotonic()
        for k in range(per_device):
            if rate:  # paced: each device sends rate / devices per second
                delay = start + k * len(clients) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            body = json.dumps({"t": time.time_ns(), "k": k, "pad": "x" * 64})
            infos.append(c.publish("devices/%s/messages/events/" % dev, body, qos=1))
        for info in infos:
            info.wait_for_publish()
    threads = [threading.Thread(target=run, args=d) for d in clients]
    first = time.time_ns()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return first


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(target, port, n_devices, total, partitions, rate=0, server_pid=0):
    q = mp.Queue()
    want = (total // n_devices) * n_devices
    if target == "emulator":
        reader = mp.Process(target=eventhub_reader, args=(port["amqp"], partitions, want, q))
    else:
        reader = mp.Process(target=mosquitto_reader, args=(port["mqtt"], want, q))
    reader.start()
    assert q.get(timeout=30)[0] == "ready"
    clients = device_clients(n_devices, port["mqtt"], target == "emulator")
    cpu0, t0 = cpu_s(server_pid), time.monotonic()
    first = publish_all(clients, total // n_devices, rate)
    _, lat, last = q.get(timeout=150)
    busy = (cpu_s(server_pid) - cpu0) / (time.monotonic() - t0)
    if os.environ.get("BENCH_DEBUG"):
        print(target, n_devices, "first", first, "last", last, "n", len(lat), file=sys.stderr)
    reader.join(10)
    for _, c in clients:
        c.disconnect()
        c.loop_stop()
    lat.sort()
    got = len(lat)
    pct = lambda p: lat[min(got - 1, int(p * got))] / 1e6 if got else float("nan")
    return {"target": target, "devices": n_devices, "rate": rate, "sent": want, "received": got,
            "events_per_s": got / ((last - first) / 1e9) if got and last > first else 0.0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "server_cpu": busy}


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--emulator", default=os.path.join(here, "..", "build", "emulator", "iothub-emulator"))
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=1000, help="events/s of the paced (latency) runs")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not shutil.which("mosquitto") and not os.path.exists("/usr/sbin/mosquitto"):
        print("SKIPPED: mosquitto is not installed")
        return 77
    tmp = tempfile.mkdtemp(prefix="telemetry-bench-")
    port = {"mqtt": free_port(), "amqp": free_port(), "http": free_port()}
    mport = {"mqtt": free_port()}
    emu = subprocess.Popen([a.emulator, "--in-memory", "--bind", HOST, "--hostname", HOST, "--mqtts-port", "0",
                            "--https-port", "0", "--amqps-port", "0", "--mqtt-port", str(port["mqtt"]),
                            "--amqp-port", str(port["amqp"]), "--http-port", str(port["http"]),
                            "--log-level", "warn", "--retention-events", str(4 * a.messages)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in emu.stdout:
        if line.strip() == "ready":
            break
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d %s\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 0\n"
                % (mport["mqtt"], HOST))
    mosq = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        token = iot_token(HOST, OWNER_KEY, "iothubowner")
        for i in range(100):
            dev = "bench%03d" % i
            body = json.dumps({"deviceId": dev, "authentication": {"type": "sas", "symmetricKey": {
                "primaryKey": DEVICE_KEY, "secondaryKey": DEVICE_KEY}}}).encode()
            req = urllib.request.Request("http://%s:%d/devices/%s?api-version=2021-04-12" % (HOST, port["http"], dev),
                                         data=body, method="PUT", headers={"Authorization": token,
                                                                             "Content-Type": "application/json"})
            urllib.request.urlopen(req).read()
        time.sleep(0.3)
        results = []
        for rate, total in ((0, a.messages), (a.rate, a.rate * 5)):
            for n in (1, 100):
                for target in ("emulator", "mosquitto"):  # alternating, same clients
                    results.append(one_run(target, port if target == "emulator" else mport, n, total, 4, rate,
                                           emu.pid if target == "emulator" else mosq.pid))
        print("| devices | sending | server | events sent | received | events/s | p50 ms | p99 ms | server CPU |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print("| %d | %s | %s | %d | %d | %.0f | %.1f | %.1f | %.0f%% |" % (
                r["devices"], "%d/s" % r["rate"] if r["rate"] else "flat out",
                "emulator -> Event Hubs consumer" if r["target"] == "emulator"
                else "Mosquitto -> MQTT subscriber", r["sent"], r["received"], r["events_per_s"], r["p50_ms"],
                r["p99_ms"], 100 * r["server_cpu"]))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"machine": os.uname().nodename, "cpus": os.cpu_count(), "results": results}, f, indent=1)
        return 0 if all(r["received"] == r["sent"] for r in results) else 1
    finally:
        emu.terminate()
        mosq.terminate()
        emu.wait(10)
        mosq.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
