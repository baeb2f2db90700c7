"""run_node_test.py -- runs one Node test file (node --test) against the emulator on the fixed SDK ports.
Node reads NODE_EXTRA_CA_CERTS only at start-up, so this first starts the emulator once with a fresh data dir to
generate its dev CA, then runs node with NODE_EXTRA_CA_CERTS pointing at it and IOTHUB_TEST_DATA_DIR set; the
tests start their own emulators on that data dir (same certificates).

As root it first moves into a network namespace of its own (unshare -n, loopback up), so the fixed ports are
free whatever else runs on the machine, and several of these tests can run at once."""

import os
import shutil
import subprocess
import sys
import tempfile

from harness import Emulator

def enter_own_network_namespace():
    """Re-executes this script inside a new network namespace when possible; returns only when it is not."""
    if os.environ.get("IOTHUB_TEST_IN_NETNS") or os.geteuid() != 0 or not shutil.which("unshare"):
        return
    env = dict(os.environ, IOTHUB_TEST_IN_NETNS="1")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        return  # no permission here (e.g. an unprivileged container): share the host's loopback
    script = 'ip link set lo up && exec "$0" "$@"'
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", script, sys.executable] + sys.argv, env)


def main():
    enter_own_network_namespace()
    test_file = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="iothub-node-")
    data_dir = os.path.join(tmp, "data")
    try:
        emu = Emulator(data_dir=data_dir).start()
        emu.stop()
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=os.path.join(data_dir, "ca.pem"), IOTHUB_TEST_DATA_DIR=data_dir)
        here = os.path.dirname(os.path.abspath(__file__))
        rc = subprocess.call(["node", "--test", "--test-reporter=spec"] + sys.argv[2:] + [os.path.join(here, test_file)],
                             env=env, cwd=here)
        return rc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
