"""test_amqp_devices.py -- the device side of the AMQP front (issue 22) driven by an independent AMQP client
(Debian's python3-qpid-proton) with malformed and unauthorised input: device put-tokens answered 200/401/404,
links to another identity's or an unknown address refused (amqp:unauthorized-access, amqp:not-found), garbage
telemetry bodies, method responses and twin requests rejected with a clear AMQP error while the same connection
and the others go on working, batched telemetry split into its messages; and the AMQP fault-injection kinds
(each KillAmqp*Link, KillAmqpSession, KillAmqpConnection, ShutDownAmqp, InvokeThrottling as
com.microsoft:device-container-throttled). Ports are picked at run time. Skips itself (exit 77 via the CMake
SKIP_RETURN_CODE) when proton is missing."""

import json
import struct
import sys
import unittest
import uuid

try:
    from proton import Delivery, Endpoint, LinkException, Message, symbol
    from proton.utils import BlockingConnection
except ImportError:  # pragma: no cover
    print("SKIPPED: python3-qpid-proton is not installed (apt-get install python3-qpid-proton)")
    sys.exit(77)

from harness import DEVICE1_KEY, Emulator, sas_token
from test_amqp import put_token as amqp_put_token

TIMEOUT = 20
D1 = "/devices/device1"


def put_token(conn, token, audience):
    """test_amqp's put-token; returns (status-code, status-description)."""
    status, rep = amqp_put_token(conn, token, audience=audience)
    return status, rep.properties["status-description"]


def outcome(conn, sender, msg):
    """Sends msg on a BlockingSender and waits for the peer's outcome: (state, condition name, description)."""
    d = sender.link.send(msg)
    terminal = (Delivery.ACCEPTED, Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED)
    conn.wait(lambda: d.remote_state in terminal, timeout=TIMEOUT, msg="an outcome")
    cond = d.remote.condition
    d.settle()
    return d.remote_state, cond.name if cond else None, cond.description if cond else None


class AmqpDevicesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator().start()
        cls.url = "amqp://127.0.0.1:%d" % cls.emu.amqp_port

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def device_conn(self):
        conn = BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=True, allowed_mechs="ANONYMOUS")
        status, why = put_token(conn, sas_token("localhost/devices/device1", DEVICE1_KEY), "localhost/devices/device1")
        self.assertEqual(status, 200, why)
        return conn

    def telemetry(self, device="device1"):
        _, _, body = self.emu.rest("GET", "/emulator/telemetry/%s" % device)
        return body

    def test_device_put_tokens(self):
        conn = BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=True, allowed_mechs="ANONYMOUS")
        try:
            aud = "localhost/devices/device1"
            status, _ = put_token(conn, sas_token(aud, "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk="), aud)
            self.assertEqual(status, 401)  # signed with another key
            status, _ = put_token(conn, sas_token(aud, DEVICE1_KEY, ttl=-60), aud)
            self.assertEqual(status, 401)  # expired
            status, why = put_token(conn, sas_token("localhost/devices/nobody", DEVICE1_KEY), "localhost/devices/nobody")
            self.assertEqual(status, 404, why)
            status, _ = put_token(conn, sas_token(aud, DEVICE1_KEY), "localhost%2Fdevices%2Fdevice1")  # encoded
            self.assertEqual(status, 200)
            status, _ = put_token(conn, sas_token(aud, DEVICE1_KEY), aud)  # a renewal
            self.assertEqual(status, 200)
        finally:
            conn.close()

    def test_unauthorised_and_unknown_attaches(self):
        conn = self.device_conn()
        try:
            with self.assertRaises(LinkException) as cm:
                conn.create_sender("/devices/device2/messages/events")
            self.assertIn("unauthorized-access", str(cm.exception))
            with self.assertRaises(LinkException) as cm:
                conn.create_sender(D1 + "/no/such/node")
            self.assertIn("not-found", str(cm.exception))
            with self.assertRaises(LinkException) as cm:
                conn.create_receiver(D1 + "/messages/events")  # a device's events are not a source
            self.assertIn("not-found", str(cm.exception))
            # The connection is still fine for its own identity.
            snd = conn.create_sender(D1 + "/messages/events")
            snd.send(Message(body=b"after the refusals", id="ok-1"))
        finally:
            conn.close()
        self.assertTrue(any(m.get("body") == "after the refusals" for m in self.telemetry()), self.telemetry())

    def test_no_token_no_device_links(self):
        conn = BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=True, allowed_mechs="ANONYMOUS")
        try:
            with self.assertRaises(LinkException) as cm:
                conn.create_sender(D1 + "/messages/events")
            self.assertIn("put one on $cbs", str(cm.exception))
        finally:
            conn.close()

    def test_garbage_bodies_are_rejected_and_others_unaffected(self):
        bystander = BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=True, allowed_mechs="ANONYMOUS")
        status, _ = put_token(bystander, sas_token("localhost/devices/device2", self.device2_key()),
                              "localhost/devices/device2")
        self.assertEqual(status, 200)
        b_events = bystander.create_sender("/devices/device2/messages/events")
        conn = self.device_conn()
        try:
            events = conn.create_sender(D1 + "/messages/events")
            st, name, desc = outcome(conn, events, Message(body={"a": [1, 2]}, inferred=False))  # an amqp-value map
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:decode-error"), desc)
            self.assertIn("data section", desc)
            meth = conn.create_sender(D1 + "/methods/devicebound")
            st, name, _ = outcome(conn, meth, Message(body=b"{}", properties={"IoThub-status": 200}))
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:decode-error"))  # no correlation id
            st, name, _ = outcome(conn, meth, Message(body=b"{}", correlation_id="not-a-uuid",
                                                       properties={"IoThub-status": 200}))
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:decode-error"))
            st, name, desc = outcome(conn, meth, Message(body=b"{}", correlation_id=uuid.uuid4()))
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:invalid-field"))  # no IoThub-status
            self.assertIn("IoThub-status", desc)
            twin_in = conn.create_sender(D1 + "/twin")
            get = Message(body=b" ", correlation_id=str(uuid.uuid4()), annotations={symbol("operation"): "GET"})
            st, name, _ = outcome(conn, twin_in, get)  # no twin receiver link yet
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:not-allowed"))
            twin_out = conn.create_receiver(D1 + "/twin", credit=10)
            st, name, _ = outcome(conn, twin_in, Message(body=b" ", correlation_id=str(uuid.uuid4())))
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:invalid-field"))  # no operation
            cid = str(uuid.uuid4())
            twin_in.send(Message(body=b"{not json", correlation_id=cid,
                                 annotations={symbol("operation"): "PATCH", symbol("resource"): "/properties/reported"}))
            rep = twin_out.receive(timeout=TIMEOUT)
            self.assertEqual(rep.correlation_id, cid)
            self.assertEqual(rep.annotations["status"], 400)
            self.assertIn("errorCode", json.loads(rep.body))
            # The same connection still works: a GET is answered with the twin.
            cid = str(uuid.uuid4())
            twin_in.send(Message(body=b" ", correlation_id=cid, annotations={symbol("operation"): "GET"}))
            rep = twin_out.receive(timeout=TIMEOUT)
            self.assertEqual((rep.correlation_id, rep.annotations["status"]), (cid, 200))
            self.assertIn("reported", json.loads(rep.body))
            events.send(Message(body=b"device1 goes on"))
            # Another client's connection was never touched.
            b_events.send(Message(body=b"device2 unaffected"))
        finally:
            conn.close()
            bystander.close()
        self.assertTrue(any(m.get("body") == "device2 unaffected" for m in self.telemetry("device2")))

    def device2_key(self):
        status, _, body = self.emu.rest("PUT", "/devices/device2?api-version=2021-04-12", {"deviceId": "device2"})
        if status == 409:
            status, _, body = self.emu.rest("GET", "/devices/device2?api-version=2021-04-12")
        self.assertIn(status, (200, 201), body)
        return body["authentication"]["symmetricKey"]["primaryKey"]

    def test_batched_telemetry(self):
        """The C SDK's batches (message-format 0x80013700): one encoded message per data section."""
        def data(x):
            return b"\x00\x53\x75\xb0" + struct.pack(">I", len(x)) + x
        inner = [Message(body=b"batched %d" % i, id="b-%d" % i, properties={"n": i}).encode() for i in range(3)]
        conn = self.device_conn()
        try:
            snd = conn.create_sender(D1 + "/messages/events")
            dlv = snd.link.delivery("batch-1")
            snd.link.send(b"".join(data(x) for x in inner))
            snd.link.advance()
            conn.wait(lambda: dlv.remote_state == Delivery.ACCEPTED, timeout=TIMEOUT, msg="the batch accepted")
            dlv = snd.link.delivery("batch-2")
            snd.link.send(data(inner[0]) + data(b"\x00\x53\x77\xa1\xffxx"))  # truncated: not a message
            snd.link.advance()
            conn.wait(lambda: dlv.remote_state, timeout=TIMEOUT, msg="an outcome")
            self.assertEqual(dlv.remote_state, Delivery.REJECTED)
            self.assertEqual(dlv.remote.condition.name, "amqp:decode-error")
        finally:
            conn.close()
        got = [m for m in self.telemetry() if m.get("body", "").startswith("batched ")]
        self.assertEqual([m["body"] for m in got], ["batched 0", "batched 1", "batched 2"])
        self.assertEqual(got[1]["properties"].get("n"), "1")

    def fault(self, kind):
        return Message(body=b"fault", properties={"AzIoTHub_FaultOperationType": kind,
                                                  "AzIoTHub_FaultOperationCloseReason": "boom",
                                                  "AzIoTHub_FaultOperationDelayInSecs": 0})

    def test_fault_kill_method_and_twin_links(self):
        """KillAmqp{MethodReq,MethodResp,TwinReq,TwinResp,C2D}Link detach exactly that link of the identity."""
        cases = [("KillAmqpMethodReqLink", "methods/devicebound", False),
                 ("KillAmqpMethodRespLink", "methods/devicebound", True),
                 ("KillAmqpTwinLinkResp", "twin", False),
                 ("KillAmqpTwinLinkReq", "twin", True),
                 ("KillAmqpC2DLink", "messages/devicebound", False)]
        for kind, rest, sender in cases:
            with self.subTest(kind=kind):
                conn = self.device_conn()
                try:
                    link = (conn.create_sender if sender else conn.create_receiver)(D1 + "/" + rest)
                    other = conn.create_receiver(D1 + "/twin") if rest != "twin" else \
                        conn.create_receiver(D1 + "/methods/devicebound")
                    events = conn.create_sender(D1 + "/messages/events")
                    events.link.send(self.fault(kind))
                    with self.assertRaises(LinkException) as cm:
                        conn.wait(lambda: link.link.state & Endpoint.REMOTE_CLOSED, timeout=TIMEOUT, msg=kind)
                    self.assertIn("amqp:internal-error", str(cm.exception))
                    self.assertFalse(other.link.state & Endpoint.REMOTE_CLOSED)  # the others stay
                    self.assertFalse(events.link.state & Endpoint.REMOTE_CLOSED)
                finally:
                    conn.close()
                    self.emu.rest("DELETE", "/emulator/faults")

    def test_fault_session_and_connection(self):
        """KillAmqpSession ends the session of the telemetry link; KillAmqpConnection and ShutDownAmqp close."""
        for kind, cond in [("KillAmqpSession", "amqp:internal-error"), ("KillAmqpConnection", "amqp:internal-error"),
                           ("ShutDownAmqp", None)]:
            with self.subTest(kind=kind):
                conn = self.device_conn()
                try:
                    events = conn.create_sender(D1 + "/messages/events")
                    events.link.send(self.fault(kind))
                    target = events.link.session if kind == "KillAmqpSession" else conn.conn
                    try:
                        conn.wait(lambda: target.state & Endpoint.REMOTE_CLOSED, timeout=TIMEOUT, msg=kind)
                    except Exception as e:  # the blocking client raises on a remote close with a condition
                        self.assertIn(cond or "closed", str(e))
                    self.assertTrue(target.state & Endpoint.REMOTE_CLOSED)
                    if cond:
                        self.assertEqual(target.remote_condition.name, cond)
                    else:
                        self.assertIsNone(target.remote_condition)
                finally:
                    try:
                        conn.close()
                    except Exception:
                        pass
                    self.emu.rest("DELETE", "/emulator/faults")

    def test_fault_kill_d2c_link_and_throttling(self):
        conn = self.device_conn()
        try:
            events = conn.create_sender(D1 + "/messages/events")
            fault = Message(body=b"fault", properties={"AzIoTHub_FaultOperationType": "KillAmqpD2CLink",
                                                       "AzIoTHub_FaultOperationCloseReason": "boom",
                                                       "AzIoTHub_FaultOperationDelayInSecs": 0})
            d = events.link.send(fault)
            with self.assertRaises(LinkException) as cm:  # LinkDetached, with the hub's condition
                conn.wait(lambda: events.link.state & Endpoint.REMOTE_CLOSED, timeout=TIMEOUT, msg="the link killed")
            self.assertFalse(d.remote_state)  # never acknowledged: the hub kills the link first
            self.assertIn("amqp:internal-error", str(cm.exception))
            self.assertIn("fault injection", str(cm.exception))
            events = conn.create_sender(D1 + "/messages/events", name="d2c-again")  # a new link works
            events.send(Message(body=b"after the kill"))
            throttle = Message(body=b"throttle", properties={"AzIoTHub_FaultOperationType": "InvokeThrottling",
                                                             "AzIoTHub_FaultOperationDelayInSecs": 0,
                                                             "AzIoTHub_FaultOperationDurationInSecs": 30})
            outcome(conn, events, throttle)
            st, name, desc = outcome(conn, events, Message(body=b"throttled?"))
            self.assertEqual((st, name), (Delivery.REJECTED, "com.microsoft:device-container-throttled"), desc)
        finally:
            conn.close()
            self.emu.rest("DELETE", "/emulator/faults")


if __name__ == "__main__":
    unittest.main()
