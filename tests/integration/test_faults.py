"""test_faults.py -- fault injection and throttling on the wire (README "Testing failures"): the SDKs'
AzIoTHub_FaultOperation* properties on MQTT telemetry (KillTcp is a TCP RST with no PUBACK, after the delay;
ShutDownMqtt a clean close; InvokeThrottling / InvokeAuthError refuse D2C and connects for the duration; the
SDK's re-send after a reconnect is acknowledged, not repeated; --no-fault-injection ignores them), every
/emulator/faults control fault (drop, refuseConnect, methodReplies delay and blackhole, rest, expireToken,
list and clear) and --throttle s1 (the 101st registry call in a minute is 429 429001 with Retry-After, and
accepted again after it). Raw MQTT 3.1.1 over the plain port, REST over the plain HTTP port; free ports."""

import json
import os
import socket
import subprocess
import struct
import threading
import time
import unittest
import urllib.parse

from harness import Emulator, RawMqtt, mqtt_packet as packet, mqtt_string

WAIT = 15


def fault_topic(kind, delay=1, duration=None, reason=" severs the TCP connection "):
    props = [("AzIoTHub_FaultOperationType", kind), ("AzIoTHub_FaultOperationCloseReason", reason),
             ("AzIoTHub_FaultOperationDelayInSecs", str(delay))]
    if duration is not None:
        props.append(("AzIoTHub_FaultOperationDurationInSecs", str(duration)))
    return "devices/device1/messages/events/" + urllib.parse.urlencode(props, quote_via=urllib.parse.quote)


class Device(RawMqtt):
    """A byte-level MQTT device on the plain port."""

    def __init__(self, emu, token=None):
        super().__init__()
        self.emu = emu
        self.token = token or emu.device_token()

    def connect(self):
        """Returns the CONNACK return code (the socket stays open after 0)."""
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.emu.mqtt_port), timeout=WAIT)
        self.buf = b""
        body = mqtt_string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60)
        body += mqtt_string("device1") + mqtt_string("localhost/device1/?api-version=2021-04-12")
        body += mqtt_string(self.token)
        self.sock.sendall(packet(0x10, body))
        kind, payload = self.read_packet()
        assert kind == 0x20, kind
        return payload[1]

    def publish(self, topic, body=b"{}", packet_id=7):
        self.sock.sendall(packet(0x32, mqtt_string(topic) + struct.pack("!H", packet_id) + body))

    def expect_puback(self, packet_id=7):
        kind, payload = self.read_packet()
        self.emu_assert(kind == 0x40 and struct.unpack("!H", payload)[0] == packet_id, (kind, payload))

    def emu_assert(self, cond, what):
        if not cond:
            raise AssertionError(what)

    def subscribe_methods(self):
        self.sock.sendall(packet(0x82, struct.pack("!H", 1) + mqtt_string("$iothub/methods/POST/#") + b"\x00"))
        kind, _ = self.read_packet()
        assert kind == 0x90

    def ending(self):
        """Reads until the connection ends: 'rst' (ECONNRESET) or 'eof' (FIN); the packets seen before."""
        seen = []
        try:
            while True:
                seen.append(self.read_packet()[0])
        except ConnectionResetError:
            return "rst", seen
        except EOFError:
            return "eof", seen

    def answer_method(self, status=200, body=b'{"ok":1}'):
        rid = self.read_publish_topic().split("$rid=")[1]
        self.sock.sendall(packet(0x30, mqtt_string("$iothub/methods/res/%d/?$rid=%s" % (status, rid)) + body))

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


class Call(threading.Thread):
    def __init__(self, emu, timeout=5):
        super().__init__()
        self.emu, self.timeout, self.result, self.elapsed = emu, timeout, None, None
        self.start()

    def run(self):
        t = time.monotonic()
        self.result = self.emu.invoke("device1", method="m", payload={}, response_timeout=self.timeout)
        self.elapsed = time.monotonic() - t


class SdkProtocol(unittest.TestCase):
    def test_kill_tcp_resets_after_the_delay_without_puback(self):
        with Emulator() as emu:
            d = Device(emu)
            self.assertEqual(d.connect(), 0)
            t = time.monotonic()
            d.publish(fault_topic("KillTcp", delay=1))
            how, seen = d.ending()
            self.assertEqual(how, "rst")
            self.assertNotIn(0x40, seen, "the hub drops the connection before the PUBACK")
            self.assertGreaterEqual(time.monotonic() - t, 0.9)
            self.assertIn("dropping the connection without a goodbye now (fault injection: KillTcp)", emu.log_text())
            # The SDK's re-send on the next connection is acknowledged, not carried out again.
            self.assertEqual(d.connect(), 0)
            d.publish(fault_topic("KillTcp", delay=1))
            d.expect_puback()
            d.close()

    def test_shutdown_mqtt_closes_cleanly_and_duration_refuses_connects(self):
        with Emulator() as emu:
            d = Device(emu)
            self.assertEqual(d.connect(), 0)
            d.publish(fault_topic("ShutDownMqtt", delay=1, duration=2, reason=" cleanly shutdowns MQTT connection "))
            how, seen = d.ending()
            t = time.monotonic()
            self.assertEqual(how, "eof")
            self.assertNotIn(0x40, seen)
            self.assertEqual(d.connect(), 3, "during the duration connects get CONNACK 3 (server unavailable)")
            time.sleep(max(0, 2.2 - (time.monotonic() - t)))
            self.assertEqual(d.connect(), 0)
            d.close()

    def test_throttling_refuses_d2c_for_the_duration(self):
        with Emulator() as emu:
            d = Device(emu)
            d.connect()
            d.publish(fault_topic("InvokeThrottling", delay=0, duration=2, reason=" throttle connection "), packet_id=1)
            d.expect_puback(1)
            t = time.monotonic()
            d.publish("devices/device1/messages/events/", packet_id=2)
            how, seen = d.ending()
            self.assertNotIn(0x40, seen, "a throttled send is not acknowledged: the hub closes the connection")
            self.assertEqual(d.connect(), 0, "connects are not refused by throttling")
            time.sleep(max(0, 2.2 - (time.monotonic() - t)))
            d.publish("devices/device1/messages/events/", packet_id=3)
            d.expect_puback(3)
            d.close()

    def test_auth_error_refuses_d2c_and_connects(self):
        with Emulator() as emu:
            d = Device(emu)
            d.connect()
            d.publish(fault_topic("InvokeAuthError", delay=0, duration=2, reason=" authentication failure "), packet_id=1)
            d.expect_puback(1)
            t = time.monotonic()
            d.publish("devices/device1/messages/events/", packet_id=2)
            self.assertNotIn(0x40, d.ending()[1])
            self.assertEqual(d.connect(), 5)
            time.sleep(max(0, 2.2 - (time.monotonic() - t)))
            self.assertEqual(d.connect(), 0)
            d.close()

    def test_no_fault_injection_ignores_the_properties(self):
        with Emulator(extra_args=["--no-fault-injection"]) as emu:
            d = Device(emu)
            d.connect()
            d.publish(fault_topic("KillTcp", delay=0))
            d.expect_puback()
            d.sock.sendall(b"\xc0\x00")  # PINGREQ: still connected well after the would-be drop
            time.sleep(0.5)
            self.assertEqual(d.read_packet()[0], 0xD0)
            self.assertIn("ignored: --no-fault-injection", emu.log_text())
            d.close()


class HttpsD2c(unittest.TestCase):
    """The SDK protocol on POST /devices/{id}/messages/events: the properties arrive as iothub-app-* headers, in
    whatever case the client writes them (urllib capitalizes them: Iothub-app-aziothub_faultoperationtype)."""

    def send(self, emu, props=None):
        headers = {"iothub-app-" + k: v for k, v in (props or {}).items()}
        return emu.rest("POST", "/devices/device1/messages/events?api-version=2021-04-12", b"{}",
                        token=emu.device_token(), headers=headers)

    def fault(self, kind, delay=0, duration=None):
        props = {"AzIoTHub_FaultOperationType": kind, "AzIoTHub_FaultOperationCloseReason": "test",
                 "AzIoTHub_FaultOperationDelayInSecs": str(delay)}
        if duration is not None:
            props["AzIoTHub_FaultOperationDurationInSecs"] = str(duration)
        return props

    def until_accepted(self, emu):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.send(emu)[0] == 204:
                return
            time.sleep(0.1)
        self.fail("D2C still refused after the fault's duration")

    def refused_for_the_duration(self, kind, status, code):
        with Emulator() as emu:
            self.assertEqual(self.send(emu, self.fault(kind, duration=2))[0], 204)  # the asking message is kept
            got, headers, body = self.send(emu)
            self.assertEqual((got, headers.get("iothub-errorcode")), (status, code), body)
            self.assertTrue(body["Message"].startswith("ErrorCode:%s;" % code), body)
            self.assertIn("Tracking ID:", body["ExceptionMessage"])
            self.until_accepted(emu)
            return headers

    def test_throttling_is_429_with_retry_after(self):
        headers = self.refused_for_the_duration("InvokeThrottling", 429, "ThrottlingException")
        self.assertEqual(headers.get("Retry-After"), "1")

    def test_auth_error_is_401(self):
        self.refused_for_the_duration("InvokeAuthError", 401, "IotHubUnauthorizedAccess")

    def test_max_message_quota_is_403(self):
        self.refused_for_the_duration("InvokeMaxMessageQuota", 403, "IotHubQuotaExceeded")

    def test_kill_tcp_closes_the_request_unanswered_and_keeps_the_message(self):
        with Emulator() as emu:
            for kind in ("KillTcp", "ShutDownMqtt"):
                with self.assertRaises(Exception) as ctx:  # no HTTP answer: the connection closed under it
                    self.send(emu, self.fault(kind, delay=1))
                self.assertNotIsInstance(ctx.exception, AssertionError)
            status, _, kept = emu.rest("GET", "/emulator/telemetry/device1")
            self.assertEqual(status, 200)
            self.assertEqual(len(kept), 2, kept)
            self.assertEqual(self.send(emu)[0], 204)  # the next message is ordinary

    def test_no_fault_injection_ignores_them(self):
        with Emulator(extra_args=["--no-fault-injection"]) as emu:
            self.assertEqual(self.send(emu, self.fault("KillTcp"))[0], 204)
            self.assertEqual(self.send(emu, self.fault("InvokeThrottling", duration=30))[0], 204)
            self.assertEqual(self.send(emu)[0], 204)


class DeviceProgram(unittest.TestCase):
    def test_iothub_device_fault_kill_tcp(self):
        """iothub-device --fault KillTcp --fault-delay 1: the connection drops, it reconnects, answers again."""
        with Emulator() as emu:
            proc = subprocess.Popen([os.environ["IOTHUB_DEVICE_BIN"], "--connection-string",
                                     emu.device_connection_string(), "--plain-port", str(emu.mqtt_port),
                                     "--fault", "KillTcp", "--fault-delay", "1", "--retry-max-ms", "500"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lines = []
            try:
                deadline = time.monotonic() + WAIT
                while lines.count("connected") < 2 and time.monotonic() < deadline:
                    line = proc.stdout.readline()
                    if not line:
                        break
                    lines.append(line.strip())
                self.assertIn("Fault injection: asked for KillTcp in 1 s", lines)
                self.assertEqual(lines.count("connected"), 2, lines)
                self.assertIn("dropping the connection without a goodbye now (fault injection: KillTcp)", emu.log_text())
                status, _, body = emu.invoke("device1", payload={}, response_timeout=10, connect_timeout=10)
                self.assertEqual((status, body["status"]), (200, 200))
            finally:
                proc.terminate()
                proc.wait(10)


class ControlApi(unittest.TestCase):
    def post(self, emu, body):
        return emu.rest("POST", "/emulator/faults", body, token="")

    def test_drop_now_abrupt_and_clean(self):
        with Emulator() as emu:
            d = Device(emu)
            d.connect()
            status, _, body = self.post(emu, {"fault": "drop", "deviceId": "device1"})
            self.assertEqual((status, body["dropped"], body["abrupt"]), (201, True, True))
            self.assertEqual(d.ending()[0], "rst")
            d.connect()
            status, _, body = self.post(emu, {"fault": "drop", "deviceId": "device1", "abrupt": False})
            self.assertEqual(d.ending()[0], "eof")
            status, _, body = self.post(emu, {"fault": "drop", "deviceId": "device1"})
            self.assertEqual((status, body["dropped"]), (201, False))

    def test_refuse_connect_with_code_then_accept(self):
        with Emulator() as emu:
            status, _, body = self.post(emu, {"fault": "refuseConnect", "deviceId": "device1", "seconds": 1,
                                              "connack": 5})
            self.assertEqual(status, 201, body)
            d = Device(emu)
            self.assertEqual(d.connect(), 5)
            status, _, listing = emu.rest("GET", "/emulator/faults", token="")
            self.assertEqual([f["fault"] for f in listing["faults"]], ["refuseConnect"])
            time.sleep(1.2)
            self.assertEqual(d.connect(), 0)
            self.assertEqual(emu.rest("GET", "/emulator/faults", token="")[2]["faults"], [])

    def test_method_replies_delayed_then_blackholed(self):
        with Emulator() as emu:
            d = Device(emu)
            d.connect()
            d.subscribe_methods()
            self.post(emu, {"fault": "methodReplies", "deviceId": "device1", "seconds": 30, "delayMs": 1500})
            call = Call(emu)
            d.answer_method()
            call.join(WAIT)
            self.assertEqual(call.result[0], 200)
            self.assertGreaterEqual(call.elapsed, 1.4)
            emu.rest("DELETE", "/emulator/faults", token="")
            self.post(emu, {"fault": "methodReplies", "deviceId": "device1", "seconds": 30, "blackhole": True})
            call = Call(emu, timeout=5)
            d.answer_method()
            call.join(WAIT)
            self.assertEqual(call.result[0], 504, call.result)
            self.assertEqual(json.loads(call.result[2]["Message"])["errorCode"], 504101)

    def test_rest_faults_count_route_and_retry_after(self):
        with Emulator() as emu:
            status, _, body = self.post(emu, {"fault": "rest", "count": 2, "status": 503, "retryAfter": 7,
                                              "route": "/devices/*"})
            self.assertEqual(status, 201, body)
            for _ in range(2):
                status, headers, body = emu.rest("GET", "/devices/device1?api-version=2021-04-12")
                self.assertEqual((status, headers.get("Retry-After"), headers.get("iothub-errorcode")),
                                 (503, "7", "ServiceUnavailable"))
                self.assertTrue(body["Message"].startswith("ErrorCode:ServiceUnavailable;"), body)
            self.assertEqual(emu.rest("GET", "/devices/device1?api-version=2021-04-12")[0], 200)
            # A method call gets the methods' envelope (numeric errorCode), 429 the throttling code.
            self.post(emu, {"fault": "rest", "status": 429, "route": "/twins/*/methods"})
            status, headers, body = emu.invoke("device1", method="m")
            self.assertEqual((status, headers.get("Retry-After")), (429, "1"))
            self.assertEqual(json.loads(body["Message"])["errorCode"], 429001)
            status, _, body = self.post(emu, {"fault": "rest", "status": 404})
            self.assertEqual(status, 400)
            self.assertIn("status", body["Message"])

    def test_expire_token_closes_and_refuses_that_token(self):
        with Emulator() as emu:
            d = Device(emu)
            d.connect()
            status, _, body = self.post(emu, {"fault": "expireToken", "deviceId": "device1"})
            self.assertEqual(status, 201, body)
            self.assertEqual(d.ending()[0], "eof")
            self.assertEqual(d.connect(), 5, "the same token is expired now")
            fresh = Device(emu, token=emu.device_token(ttl=7200))
            self.assertEqual(fresh.connect(), 0, "a renewed token (later expiry) is accepted")
            fresh.close()

    def test_sdk_kind_through_the_api_list_and_clear(self):
        with Emulator() as emu:
            d = Device(emu)
            d.connect()
            status, _, body = self.post(emu, {"fault": "KillTcp", "deviceId": "device1", "delaySeconds": 60})
            self.assertEqual((status, body["fault"], body["abrupt"]), (201, "KillTcp", True))
            listing = emu.rest("GET", "/emulator/faults", token="")[2]
            self.assertEqual(len(listing["faults"]), 1)
            self.assertTrue(listing["sdkProtocol"])
            status, _, body = emu.rest("DELETE", "/emulator/faults/%d" % listing["faults"][0]["id"], token="")
            self.assertEqual((status, body["cleared"]), (200, 1))
            self.assertEqual(emu.rest("DELETE", "/emulator/faults/999", token="")[0], 404)
            self.assertEqual(self.post(emu, {"fault": "nonsense", "deviceId": "device1"})[0], 400)
            self.assertEqual(self.post(emu, {"fault": "KillTcp", "deviceId": "nobody"})[0], 400)
            d.sock.sendall(b"\xc0\x00")
            self.assertEqual(d.read_packet()[0], 0xD0, "the cleared KillTcp never fired")
            d.close()


class Throttle(unittest.TestCase):
    def test_s1_registry_limit_then_accepted_after_retry_after(self):
        with Emulator(extra_args=["--throttle", "s1"]) as emu:
            for i in range(100):
                status, _, _ = emu.rest("GET", "/devices/device1?api-version=2021-04-12")
                self.assertEqual(status, 200, "call %d" % i)
            status, headers, body = emu.rest("GET", "/devices/device1?api-version=2021-04-12")
            self.assertEqual((status, headers.get("iothub-errorcode")), (429, "ThrottlingException"))
            self.assertTrue(body["Message"].startswith("ErrorCode:ThrottlingException;"), body)
            wait = int(headers["Retry-After"])
            self.assertGreaterEqual(wait, 1)
            time.sleep(wait)
            self.assertEqual(emu.rest("GET", "/devices/device1?api-version=2021-04-12")[0], 200)
            limits = emu.rest("GET", "/emulator/faults", token="")[2]["throttle"]
            self.assertEqual(limits["tier"], "s1")

    def test_bad_tier_is_a_usage_error(self):
        emu = Emulator(extra_args=["--throttle", "s9"])
        try:
            with self.assertRaises(RuntimeError):
                emu.start()
        finally:
            emu.stop()


if __name__ == "__main__":
    unittest.main()
