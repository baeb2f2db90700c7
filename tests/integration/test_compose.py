"""test_compose.py -- keeps docker-compose.yml true without a Docker engine: validates the file with
docker-compose's own parser, then runs the exact command lines of its services natively against each other
(the emulator, the healthcheck, the example device, the one-shot call-method) and checks the tutorial's call
goes through. It runs in private network and mount namespaces (unshare -n -m, as root): the compose ports are
free there, and an /etc/hosts bind-mounted over the host's resolves the service name iothub-emulator to
loopback, as Docker's network does. The only rewrite is the volume path /data -> a temporary directory."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
COMPOSE = os.path.join(HERE, "..", "..", "docker-compose.yml")
BINARIES = {"iothub-emulator": "IOTHUB_EMULATOR_BIN", "iothub-device": "IOTHUB_DEVICE_BIN",
            "iothub-service": "IOTHUB_SERVICE_BIN"}
WAIT = 30


def compose_config():
    out = subprocess.run(["docker-compose", "-f", COMPOSE, "--profile", "call", "config"], capture_output=True,
                         text=True, check=True)
    return yaml.safe_load(out.stdout)["services"]


def native(argv, data_dir):
    """A compose command line as a native one: our binaries for theirs, the volume path rewritten."""
    program = os.environ[BINARIES[argv[0]]] if argv[0] in BINARIES else argv[0]
    return [program] + [a.replace("/data", data_dir) for a in argv[1:]]


def service_argv(svc):
    entry = svc.get("entrypoint") or ["iothub-emulator"]  # the image's ENTRYPOINT
    return list(entry) + list(svc["command"])


class Process:
    def __init__(self, argv, marker):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.seen = threading.Event()
        threading.Thread(target=self._read, args=(marker,), daemon=True).start()

    def _read(self, marker):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))
            if marker in self.lines[-1]:
                self.seen.set()
        self.seen.set()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT)
        return self.proc.returncode


class ComposeTest(unittest.TestCase):
    def test_file_is_valid_and_publishes_the_ports(self):
        services = compose_config()
        self.assertEqual(set(services), {"iothub-emulator", "device", "call-method"})
        published = {int(p["published"]) if isinstance(p, dict) else int(str(p).split(":")[0])
                     for p in services["iothub-emulator"]["ports"]}
        self.assertEqual(published, {8883, 443, 5671, 1883, 5672, 8080})

    def test_services_work_together_natively(self):
        if os.environ.get("IOTHUB_COMPOSE_INNER") != "1":
            self.skipTest("runs inside its own namespaces (see the __main__ block)")
        services = compose_config()
        data = tempfile.mkdtemp(prefix="iothub-compose-")
        emulator = device = None
        passed = False
        try:
            emulator = Process(native(service_argv(services["iothub-emulator"]), data), "ready")
            self.assertTrue(emulator.seen.wait(WAIT) and emulator.proc.poll() is None, "".join(emulator.lines))
            health = subprocess.run(services["iothub-emulator"]["healthcheck"]["test"][1:], capture_output=True,
                                    timeout=WAIT)
            self.assertEqual(health.returncode, 0, health)
            device = Process(native(service_argv(services["device"]), data), "connected")
            self.assertTrue(device.seen.wait(WAIT) and device.proc.poll() is None, "".join(device.lines))
            call = subprocess.run(native(service_argv(services["call-method"]), data), capture_output=True,
                                  text=True, timeout=120)
            self.assertEqual(call.returncode, 0, call.stdout + call.stderr)
            self.assertIn("This is the response from the device", call.stdout)
            self.assertIn("200", call.stdout)
            passed = True
        finally:
            for p in (device, emulator):
                if p:
                    p.stop()
            if not passed:
                for p in (emulator, device):
                    print("".join(p.lines) if p else "")
            shutil.rmtree(data, ignore_errors=True)


def run_in_namespaces():
    """Re-runs this file in new network + mount namespaces with iothub-emulator resolving to loopback."""
    hosts = tempfile.NamedTemporaryFile("w", delete=False, prefix="hosts-")
    hosts.write("127.0.0.1 localhost iothub-emulator\n::1 localhost ip6-localhost\n")
    hosts.close()
    script = 'ip link set lo up && mount --bind "$HOSTS_FILE" /etc/hosts && exec "$0" "$@"'
    env = dict(os.environ, IOTHUB_COMPOSE_INNER="1", HOSTS_FILE=hosts.name)
    try:
        return subprocess.call(["unshare", "-n", "-m", "--propagation", "private", "sh", "-c", script,
                                sys.executable, "-m", "unittest", "-v", "test_compose"], env=env, cwd=HERE)
    finally:
        os.unlink(hosts.name)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("test_compose needs root for its namespaces; running the file checks only")
        sys.exit(unittest.main(argv=[sys.argv[0], "ComposeTest.test_file_is_valid_and_publishes_the_ports"]))
    sys.exit(run_in_namespaces())
