"""test_amqp_pyamqp.py -- the pure-Python AMQP stack of Debian's azure-eventhub 5.11 (pyamqp), which cannot talk
to Proton 0.37 without our write-path frame normaliser (iothub-amqp.md §B.3.5: Open needs max-frame-size,
Begin a real handle-max, every performative its full field count): SASL ANONYMOUS over TLS, a $cbs put-token
(ulong message ids, no reply-to), a link to the full-URL target and a C2D message accepted. pyamqp connects to
port 5671 only, so this runs in its own network namespace (as root; SKIPPED, exit 77, where that is not
possible)."""

import collections
import os
import shutil
import subprocess
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def enter_own_network_namespace():
    if os.environ.get("IOTHUB_TEST_IN_NETNS"):
        return True
    if os.geteuid() != 0 or not shutil.which("unshare") or subprocess.run(["unshare", "-n", "true"]).returncode:
        return False
    env = dict(os.environ, IOTHUB_TEST_IN_NETNS="1")
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable] +
               sys.argv, env)
    return False  # not reached


try:
    from azure.eventhub._pyamqp import SendClient
    from azure.eventhub._pyamqp.authentication import JWTTokenAuth
    from azure.eventhub._pyamqp.message import Message, Properties
except ImportError:
    print("SKIPPED: python3-azure (azure-eventhub with pyamqp) is not installed")
    sys.exit(77)

from harness import Emulator, OWNER_KEY, sas_token


class PyamqpTest(unittest.TestCase):
    def test_cbs_and_c2d_over_pyamqp(self):
        with Emulator(fixed_ports=True) as emu:
            Token = collections.namedtuple("Token", "token expires_on")

            def get_token():
                return Token(sas_token("localhost", OWNER_KEY, key_name="iothubowner", encode=False),
                             int(time.time()) + 3600)

            auth = JWTTokenAuth("https://localhost", "https://localhost", get_token)
            client = SendClient("127.0.0.1", "amqps://localhost/messages/devicebound", auth=auth,
                                connection_verify=emu.ca_path)
            client.open()
            deadline = time.monotonic() + 20
            while not client.client_ready():  # pyamqp's own polling API: each call does network work
                self.assertLess(time.monotonic(), deadline, "pyamqp never became ready")
            client.send_message(Message(data=b"from pyamqp", application_properties={"k": "v"},
                                        properties=Properties(message_id=str(uuid.uuid4()),
                                                              to="/devices/device1/messages/devicebound")))
            client.close()
            status, _, dev = emu.rest("GET", "/devices/device1?api-version=2021-04-12")
            self.assertEqual(dev["cloudToDeviceMessageCount"], 1)
            self.assertIn("put-token https://localhost: 200", emu.log_text())


if __name__ == "__main__":
    if not enter_own_network_namespace():
        print("SKIPPED: port 5671 needs a network namespace of its own (run as root with unshare)")
        sys.exit(77)
    unittest.main()
