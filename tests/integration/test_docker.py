"""test_docker.py -- `docker compose up` for real (ctest label docker): the README's Docker commands against a
Docker engine. It uses the engine DOCKER_HOST (or the default socket) names when one answers; otherwise, as
root, it starts its own dockerd (--iptables=false, data root, exec root, pid file and socket in a temporary
directory; stopped and removed at the end). When debian:bookworm-slim can be neither found nor pulled it
imports a stand-in made offline with debootstrap from the machine's configured Debian mirror (the tarball is
cached in IOTHUB_DOCKER_CACHE, the build dir). Then, with the compose file as users have it:
`docker compose build`, `up -d --wait` (Compose v1: `up -d` and waiting for the healthcheck), /health from the
host, the tutorial call through the call-method profile, the dashboard at the printed URL (its API, and the page
in chromium: compose_dashboard.test.js), the official Node SDKs against the published ports
with the printed connection strings and the CA copied out of the volume, our C service client likewise, a
recreated emulator container that keeps the registry and the CA (the named volume), and `down -v`. A second
test runs the Testcontainers example (testcontainers.test.js) against the built image. Whatever the test
started is removed even when it fails. Exit status 77 (ctest: skipped) with the reason when no engine can be
reached or started here."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from harness import OWNER_KEY, sas_token

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PROJECT = "iothub-emulator-test"  # COMPOSE_PROJECT_NAME: the command lines stay exactly the README's
IMAGE = "iothub-emulator:local"
BASE_IMAGE = "debian:bookworm-slim"
MAX_IMAGE_MB = 150  # the runtime image is ~95 MB on a 74 MB base; a build-stage leak would show here
SKIP = 77


def log(msg):
    print("[test_docker %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Skip(unittest.SkipTest):
    """This machine cannot run the test (no engine, no root...): ctest reports it skipped, with the reason."""


def run(argv, env, timeout=600, check=True, cwd=ROOT, **kw):
    log("$ " + " ".join(argv))
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\n--- stdout\n%s\n--- stderr\n%s" % (argv, p.returncode, p.stdout,
                                                                                 p.stderr))
    return p


def wait_for(what, probe, timeout):
    """Polls probe() until it returns a true value (Docker offers no event to await for these)."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(0.5)


# ---------------------------------------------------------------- the engine

class Engine:
    """The Docker engine the test talks to: an existing one, or a dockerd of its own."""

    def __init__(self, cache_dir):
        self.cache_dir = cache_dir
        self.env = dict(os.environ, DOCKER_CLI_HINTS="false")
        self.proc = None
        self.tmp = None
        self.docker = shutil.which("docker")
        self.had_docker0 = os.path.exists("/sys/class/net/docker0")
        self.pid_record = os.path.join(cache_dir, "dockerd.pid")

    def answers(self, env):
        try:
            return subprocess.run([self.docker, "version", "--format", "{{.Server.Version}}"], env=env,
                                  capture_output=True, timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self):
        if not self.docker:
            raise Skip("no docker CLI (Debian: apt-get install docker.io)")
        if self.answers(self.env):
            log("using the running Docker engine (%s)" % self.env.get("DOCKER_HOST", "default socket"))
            return
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise Skip("no Docker engine answers and dockerd is not installed (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise Skip("no Docker engine answers and starting dockerd needs root")
        self.stop_stale()
        # A short path: the socket's must fit in sun_path (108 bytes).
        self.tmp = tempfile.mkdtemp(prefix="iothub-dockerd-", dir="/tmp")
        sock = os.path.join(self.tmp, "docker.sock")
        self.log_path = os.path.join(self.tmp, "dockerd.log")
        # --iptables=false: no NAT rules on the host (builds use the host's network, see docker-compose.yml;
        # published ports go through docker-proxy); --ip-forward=false: the host's sysctl stays as it is.
        argv = [dockerd, "--iptables=false", "--ip-forward=false", "--data-root", os.path.join(self.tmp, "root"),
                "--exec-root", os.path.join(self.tmp, "exec"), "--pidfile", os.path.join(self.tmp, "dockerd.pid"),
                "-H", "unix://" + sock]
        log("starting " + " ".join(argv))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with open(self.pid_record, "w") as f:
            f.write("%d %s\n" % (self.proc.pid, self.tmp))
        self.env["DOCKER_HOST"] = "unix://" + sock
        deadline = time.monotonic() + 60
        while not self.answers(self.env):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise Skip("dockerd could not start here:\n" + tail)
            time.sleep(0.5)
        log("dockerd %d answers on %s" % (self.proc.pid, sock))

    def stop_stale(self):
        """A dockerd this test started in an earlier run that was killed (e.g. by a ctest timeout)."""
        try:
            with open(self.pid_record) as f:
                pid_s, tmp = f.read().split()
            pid = int(pid_s)
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read().split(b"\0")
        except (OSError, ValueError):
            return
        if os.path.basename(cmdline[0]) == b"dockerd" and (tmp + "/root").encode() in cmdline:
            log("stopping the dockerd %d left by an earlier run" % pid)
            os.kill(pid, signal.SIGTERM)
            wait_for("the stale dockerd to exit", lambda: not os.path.exists("/proc/%d" % pid), 60)
            self.remove_tree(tmp)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except (OSError, AttributeError):
            return ""

    def remove_tree(self, tmp):
        # dockerd unmounts its overlays when it stops; anything left (a crash) is unmounted first.
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for m in reversed(mounts):
            if m.startswith(tmp + "/"):
                subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def stop(self):
        if self.proc:
            if self.proc.poll() is None:
                # Our own engine holds only what this test made: remove every container first.
                ids = subprocess.run([self.docker, "ps", "-aq"], env=self.env, capture_output=True, text=True,
                                     timeout=60).stdout.split()
                if ids:
                    subprocess.run([self.docker, "rm", "-f", "-v"] + ids, env=self.env, capture_output=True,
                                   timeout=120)
                self.proc.terminate()
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            log("dockerd stopped")
            self.proc = None
            try:
                os.unlink(self.pid_record)
            except OSError:
                pass
        if self.tmp:
            self.remove_tree(self.tmp)
            self.tmp = None
        if not self.had_docker0 and os.path.exists("/sys/class/net/docker0"):
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True)

    def docker_cmd(self, *args, **kw):
        return run([self.docker] + list(args), self.env, **kw)


# ---------------------------------------------------------------- the base image

def apt_sources():
    """(type, uri, suite) for each source the machine's apt is configured with (one-line and deb822 files)."""
    out = []
    files = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        files += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.lstrip().startswith("#") and not line.startswith(" "):
                        k, v = line.split(":", 1)
                        fields[k.strip().lower()] = v.split()
                for t in fields.get("types", []):
                    for uri in fields.get("uris", []):
                        for suite in fields.get("suites", []):
                            out.append((t, uri, suite))
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] in ("deb", "deb-src"):
                    out.append((words[0], words[1], words[2]))
    return out


def debian_mirrors():
    """The machine's Debian mirror for bookworm (and its security mirror, if any)."""
    srcs = [(u.rstrip("/"), s) for t, u, s in apt_sources() if t == "deb"]
    main = next((u for u, s in srcs if s == "bookworm"), "http://deb.debian.org/debian")
    security = next((u for u, s in srcs if s == "bookworm-security"), None)
    return main, security


def make_standin_tarball(path):
    """debian:bookworm-slim's stand-in: debootstrap minbase, trimmed and configured like the real slim image."""
    if not shutil.which("debootstrap"):
        raise Skip("%s cannot be pulled and debootstrap is not installed (apt-get install debootstrap)" % BASE_IMAGE)
    if os.geteuid() != 0:
        raise Skip("%s cannot be pulled and debootstrap needs root" % BASE_IMAGE)
    main, security = debian_mirrors()
    work = tempfile.mkdtemp(prefix="iothub-debootstrap-")
    rootfs = os.path.join(work, "rootfs")
    try:
        log("debootstrap --variant=minbase bookworm from %s" % main)
        run(["debootstrap", "--variant=minbase", "bookworm", rootfs, main], dict(os.environ), timeout=900)
        # The real slim image's apt and dpkg settings: no documentation, no package caches, no translations.
        conf = {
            "etc/dpkg/dpkg.cfg.d/docker": "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
                                          "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
                                          "path-exclude /usr/share/locale/*\n",
            "etc/apt/apt.conf.d/docker-clean": 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
                                               'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                                               '/var/cache/apt/archives/partial/*.deb || true"; };\n'
                                               'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                                               '/var/cache/apt/archives/partial/*.deb || true"; };\n',
            "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
            "etc/apt/sources.list.d/debian.sources":
                "Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" % main
                + ("\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n"
                   "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" % security if security else ""),
        }
        for rel, text in conf.items():
            with open(os.path.join(rootfs, rel), "w") as f:
                f.write(text)
        os.unlink(os.path.join(rootfs, "etc/apt/sources.list"))
        for rel in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
                    "usr/share/locale"):
            d = os.path.join(rootfs, rel)
            for name in os.listdir(d) if os.path.isdir(d) else []:
                p = os.path.join(d, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
        os.makedirs(os.path.join(rootfs, "var/lib/apt/lists/partial"), exist_ok=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        run(["tar", "-C", rootfs, "--numeric-owner", "-cf", path + ".tmp", "."], dict(os.environ))
        os.rename(path + ".tmp", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_base_image(engine):
    if engine.docker_cmd("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return "present"
    if engine.docker_cmd("pull", BASE_IMAGE, check=False, timeout=300).returncode == 0:
        return "pulled"
    tarball = os.path.join(engine.cache_dir, "debian-bookworm-slim-standin.tar")
    if not os.path.exists(tarball):
        make_standin_tarball(tarball)
    with open(tarball, "rb") as f:
        run([engine.docker, "import", "-", BASE_IMAGE], engine.env, stdin=f)
    return "stand-in imported from " + tarball


# ---------------------------------------------------------------- the tests

def compose_command(engine):
    """`docker compose` (v2) when the plugin is there, else `docker-compose` (v1)."""
    if subprocess.run([engine.docker, "compose", "version"], env=engine.env, capture_output=True).returncode == 0:
        return [engine.docker, "compose"], True
    if shutil.which("docker-compose"):
        return [shutil.which("docker-compose")], False
    raise Skip("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)")


PUBLISHED_PORTS = (8883, 443, 5671, 1883, 5672, 8080)


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


class DockerTest(unittest.TestCase):
    engine = None

    @classmethod
    def setUpClass(cls):
        cache = os.environ.get("IOTHUB_DOCKER_CACHE") or os.path.join(tempfile.gettempdir(), "iothub-docker-cache")
        os.makedirs(cache, exist_ok=True)
        cls.engine = Engine(cache)
        try:
            cls.engine.start()
            cls.compose, cls.v2 = compose_command(cls.engine)
            cls.env = dict(cls.engine.env, COMPOSE_PROJECT_NAME=PROJECT)
            if cls.engine.proc:  # our dockerd runs with --iptables=false: build containers get no NAT
                cls.env["IOTHUB_BUILD_NETWORK"] = "host"
            log("base image: " + ensure_base_image(cls.engine))
            cls.compose_run("down", "-v", "--remove-orphans")  # whatever a killed earlier run left
            started = time.monotonic()
            cls.compose_run("build", timeout=1200)
            log("docker compose build took %.0f s" % (time.monotonic() - started))
        except BaseException:
            cls.engine.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.engine.stop()

    @classmethod
    def compose_run(cls, *args, check=True, timeout=300):
        return run(cls.compose + list(args), cls.env, check=check, timeout=timeout)

    def container_id(self, service):
        return self.compose_run("ps", "-q", service).stdout.strip()

    def health(self, cid):
        return self.engine.docker_cmd("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                                      cid).stdout.strip()

    def up(self, *services):
        """`docker compose up -d --wait` (v2) or `docker-compose up -d` and waiting for the healthcheck (v1)."""
        self.compose_run("up", "-d", *(["--wait"] if self.v2 else []), *services, timeout=300)
        cid = self.container_id("iothub-emulator")
        wait_for("iothub-emulator to be healthy", lambda: self.health(cid) == "healthy", 120)
        return cid

    def device_connected_count(self, service="device"):
        return self.compose_run("logs", "--no-color", service).stdout.count("Waiting for direct method calls")

    def test_image_is_small_and_complete(self):
        size = int(self.engine.docker_cmd("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout.strip())
        log("image %s: %.1f MB" % (IMAGE, size / 1e6))
        self.assertLess(size / 1e6, MAX_IMAGE_MB)
        # Every shared library the binaries link is in the runtime stage, and they run.
        ldd = self.engine.docker_cmd("run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                                     "ldd /usr/local/bin/iothub-emulator /usr/local/bin/iothub-device "
                                     "/usr/local/bin/iothub-service").stdout
        self.assertNotIn("not found", ldd)
        version = self.engine.docker_cmd("run", "--rm", IMAGE, "--version").stdout
        self.assertIn("0.", version)

    def test_compose_up_end_to_end(self):
        tmp = tempfile.mkdtemp(prefix="iothub-compose-")
        done = False
        try:
            busy = [p for p in PUBLISHED_PORTS if not port_is_free(p)]
            self.assertEqual(busy, [], "docker-compose.yml publishes these ports on this host; they are in use")
            # 1. up: the emulator turns healthy, then the example device connects.
            cid = self.up()
            wait_for("the example device to connect", self.device_connected_count, 60)
            self.assertEqual(self.health(self.container_id("device")), "", "the device runs no healthcheck")
            # 2. /health from the host through the published port.
            status, body = http_get("http://127.0.0.1:8080/health")
            self.assertEqual((status, json.loads(body)["status"]), (200, "ok"))
            # 3. The tutorial's call through the call-method profile.
            call = self.compose_run("--profile", "call", "run", "--rm", "call-method", timeout=180)
            self.assertIn("Response status: 200", call.stdout)
            self.assertIn('{"Response":"This is the response from the device"}', call.stdout)
            # 4. The printed connection strings and the CA copied out of the volume.
            banner = self.compose_run("logs", "--no-color", "iothub-emulator").stdout
            service_cs = re.search(r"Service connection string: (\S+)", banner).group(1)
            device_cs = re.search(r"Device connection string: +(\S+)", banner).group(1)
            self.assertTrue(service_cs.startswith("HostName=127.0.0.1;SharedAccessKeyName=iothubowner;"), banner)
            self.assertTrue(device_cs.startswith("HostName=127.0.0.1;DeviceId=device1;"), banner)
            self.assertIn("mqtts://127.0.0.1:8883", banner)  # endpoints name the host, not the 0.0.0.0 bind
            self.check_dashboard(banner, service_cs)
            ca = os.path.join(tmp, "ca.pem")
            self.engine.docker_cmd("cp", cid + ":/data/ca.pem", ca)
            with open(ca) as f:
                ca_text = f.read()
            self.assertEqual(http_get("http://127.0.0.1:8080/emulator/ca.pem")[1], ca_text)
            # 5. The official Node SDKs from the host with those strings (device1 has one connection at a time:
            #    the example device steps aside), then our C service client against the example device again.
            self.compose_run("stop", "device")
            node = run(["node", "--test", "--test-reporter=spec", "compose_sdk.test.js"],
                       dict(os.environ, NODE_EXTRA_CA_CERTS=ca, IOTHUB_PRINTED_DEVICE_CS=device_cs,
                            IOTHUB_PRINTED_SERVICE_CS=service_cs), cwd=HERE, check=False, timeout=180)
            self.assertEqual(node.returncode, 0, node.stdout + node.stderr)
            self.compose_run("start", "device")
            service_bin = os.environ.get("IOTHUB_SERVICE_BIN")
            if service_bin:
                c = run([service_bin, "invoke", "device1", "--connect-timeout", "60", "--connection-string",
                         service_cs, "--ca-file", ca], dict(PATH=os.environ["PATH"]), check=False, timeout=120)
                self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
                self.assertIn("This is the response from the device", c.stdout)
            # 6. A new emulator container on the same named volume keeps the registry and the CA.
            token = sas_token("127.0.0.1", OWNER_KEY, key_name="iothubowner")
            req = urllib.request.Request("http://127.0.0.1:8080/devices/kept1?api-version=2021-04-12", method="PUT",
                                         data=json.dumps({"deviceId": "kept1"}).encode(),
                                         headers={"Authorization": token, "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                self.assertEqual(resp.status, 200)
            self.compose_run("rm", "-s", "-f", "iothub-emulator")
            new_cid = self.up("iothub-emulator")
            self.assertNotEqual(new_cid, cid)
            req = urllib.request.Request("http://127.0.0.1:8080/devices/kept1?api-version=2021-04-12",
                                         headers={"Authorization": token})
            with urllib.request.urlopen(req, timeout=10) as resp:
                self.assertEqual(json.loads(resp.read())["deviceId"], "kept1")
            self.assertEqual(http_get("http://127.0.0.1:8080/emulator/ca.pem")[1], ca_text)
            call = self.compose_run("--profile", "call", "run", "--rm", "call-method", timeout=180)
            self.assertIn("Response status: 200", call.stdout)  # the example device reconnected
            # 7. down -v removes the containers, the network and the volume.
            self.compose_run("--profile", "call", "down", "-v")
            done = True
            self.assertEqual(self.compose_run("ps", "-q").stdout.strip(), "")
            volumes = self.engine.docker_cmd("volume", "ls", "-q").stdout.split()
            self.assertNotIn(PROJECT + "_iothub-data", volumes)
        except BaseException:
            print(self.compose_run("--profile", "call", "logs", "--no-color", check=False).stdout)
            raise
        finally:
            if not done:
                self.compose_run("--profile", "call", "down", "-v", "--remove-orphans", check=False)
            shutil.rmtree(tmp, ignore_errors=True)

    def check_dashboard(self, banner, service_cs):
        """The dashboard as a user on the host meets it: the banner's URL is the published port on the host, the
        page is served, the session gives no token (the container listens on 0.0.0.0 and the request comes
        through Docker's proxy), the API wants the key and takes the printed one; then, with chromium, the page
        itself (compose_dashboard.test.js): key prompt, example device online, a method call from the page."""
        url = re.search(r"Dashboard: +(\S+)", banner).group(1)
        self.assertEqual(url, "http://127.0.0.1:8080/", banner)
        self.assertRegex(banner, r"Dashboard: +\S+ +\(asks for the service connection string\)")
        with urllib.request.urlopen(url, timeout=10) as resp:
            page = resp.read().decode()
            self.assertEqual(resp.headers["Content-Type"], "text/html; charset=utf-8")
            self.assertIn("default-src 'self'", resp.headers["Content-Security-Policy"])
        self.assertIn('src="/dashboard/app.js"', page)
        status, body = http_get(url + "emulator/session")
        session = json.loads(body)
        self.assertEqual((status, session["open"], session["hostName"]), (200, False, "127.0.0.1"), body)
        self.assertIn("--bind", session["reason"])
        self.assertNotIn("token", session)
        with self.assertRaises(urllib.error.HTTPError) as refused:
            http_get(url + "emulator/stats")
        self.assertEqual(refused.exception.code, 401)
        key = re.search(r"SharedAccessKey=([^;]+)", service_cs).group(1)
        req = urllib.request.Request(url + "emulator/stats",
                                     headers={"Authorization": sas_token("127.0.0.1", key, key_name="iothubowner")})
        with urllib.request.urlopen(req, timeout=10) as resp:
            stats = json.loads(resp.read())
        self.assertGreaterEqual(stats["devicesConnected"], 1, stats)  # the example device
        shots = os.environ.get("IOTHUB_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="iothub-compose-shots-")
        node = run(["node", "--test", "--test-reporter=spec", "compose_dashboard.test.js"],
                   dict(os.environ, IOTHUB_DASHBOARD_URL=url, IOTHUB_PRINTED_SERVICE_CS=service_cs,
                        IOTHUB_SCREENSHOT_DIR=shots), cwd=HERE, check=False, timeout=180)
        self.assertEqual(node.returncode, 0, node.stdout + node.stderr)
        log("dashboard in the browser: " + ("SKIPPED (no chromium)" if "# skipped 1" in node.stdout else "passed"))

    def test_testcontainers_example(self):
        # Ryuk (Testcontainers' reaper) is an image from Docker Hub; the test removes its own container instead.
        env = dict(self.engine.env, TESTCONTAINERS_RYUK_DISABLED="true", IOTHUB_IMAGE=IMAGE)
        try:
            node = run(["node", "--test", "--test-reporter=spec", "testcontainers.test.js"], env, cwd=HERE,
                       check=False, timeout=300)
            self.assertEqual(node.returncode, 0, node.stdout + node.stderr)
        finally:
            left = self.engine.docker_cmd("ps", "-aq", "--filter", "label=org.testcontainers=true", "--filter",
                                          "ancestor=" + IMAGE, check=False).stdout.split()
            if left:
                self.engine.docker_cmd("rm", "-f", "-v", *left, check=False)


def main():
    # ctest's timeout and Ctrl-C: leave through the finally blocks, so dockerd and the containers go too.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(DockerTest)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if result.skipped and result.testsRun == 0 and result.wasSuccessful():  # setUpClass raised Skip
        print("SKIPPED: " + result.skipped[0][1])
        return SKIP
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
