"""device_async_answers.py -- the device library's asynchronous answer path against the emulator: overlapping
requests taken with DEVICE_CLIENT_ANSWER_LATER are answered from another thread with device_client_respond(), in
reverse order, and each caller still gets its own answer; device_client_stop() from that thread ends the run
cleanly. Uses the helper device_answer_later (built from device_answer_later.c) over the plain dev MQTT port, and
the emulator's REST API as the caller."""

import os
import subprocess
import threading
import unittest

from harness import Emulator

HELPER = os.environ.get("DEVICE_ANSWER_LATER_BIN", "device_answer_later")


class AsyncAnswers(unittest.TestCase):
    def test_overlapping_calls_answered_later_in_reverse_order(self):
        self.overlapping_calls(5)

    def test_zero_timeout_runs_service_the_connection(self):
        """device_client_run(c, 0) from the application's own loop connects, receives and publishes (it used
        to return before servicing the socket: the device never connected)."""
        self.overlapping_calls(2, "pump")

    def overlapping_calls(self, n, *mode):
        with Emulator() as emu:
            dev = subprocess.Popen([HELPER, emu.device_connection_string(), str(emu.mqtt_port), str(n), *mode],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                self.assertEqual(dev.stdout.readline().strip(), "connected")
                results = [None] * n

                def call(i):
                    results[i] = emu.invoke("device1", payload={"call": i}, response_timeout=20)

                threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                orders = set()
                for i, (status, _headers, body) in enumerate(results):
                    self.assertEqual(status, 200, body)
                    self.assertEqual(body["status"], 200)
                    self.assertEqual(body["payload"]["echo"], {"call": i})
                    orders.add(body["payload"]["order"])
                self.assertEqual(orders, set(range(n)))
                out, err = dev.communicate(timeout=20)
                self.assertEqual(dev.returncode, 0, err)
                self.assertEqual(out.count("pending "), n)
            finally:
                if dev.poll() is None:
                    dev.kill()
                    dev.wait()


if __name__ == "__main__":
    unittest.main()
