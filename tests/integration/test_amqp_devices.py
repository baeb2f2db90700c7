"""test_amqp_devices.py -- the device side of the AMQP front (issue 22) driven by an independent AMQP client
(Debian's python3-qpid-proton) with malformed and unauthorised input: device put-tokens answered 200/401/404,
links to another identity's or an unknown address refused (amqp:unauthorized-access, amqp:not-found), garbage
telemetry bodies, method responses and twin requests rejected with a clear AMQP error while the same connection
and the others go on working, batched telemetry split into its messages; and the AMQP fault-injection kinds
(each KillAmqp*Link, KillAmqpSession, KillAmqpConnection, ShutDownAmqp, InvokeThrottling as
com.microsoft:device-container-throttled); a message over 256 KiB rejected (amqp:link:message-size-exceeded) with
the link going on; a disabled or deleted identity kicked; an abrupt drop with a method in flight, a C2D message
unsettled and twin GETs unanswered (and a token expiring with a call in flight): the call fails at once, the C2D
message comes again, nothing leaks (the emulator's exit status and sanitizer output are checked at the end);
bounded queuing for a device that gives no credit; method and twin links paired by
com.microsoft:channel-correlation-id. Ports are picked at run time. Skips itself (exit 77 via the CMake
SKIP_RETURN_CODE) when proton is missing."""

import json
import struct
import sys
import threading
import time
import unittest
import uuid

try:
    from proton import Delivery, Endpoint, LinkException, Message, symbol
    from proton.reactor import LinkOption
    from proton.utils import BlockingConnection
    from proton import Timeout
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
        rc = cls.emu.stop()
        log = cls.emu.log_text()
        if rc != 0 or "Sanitizer" in log:  # a leak or memory error anywhere above (the test build runs ASan)
            cls.emu.dump_log()
            raise AssertionError("the emulator exited with %r%s" % (rc, " and a sanitizer report" if "Sanitizer" in log else ""))

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

    def test_an_empty_application_property_is_kept(self):
        """An application property whose value is "" reaches the event log, as over MQTT ("k=") and HTTPS."""
        conn = self.device_conn()
        try:
            snd = conn.create_sender(D1 + "/messages/events")
            snd.send(Message(body=b"empty prop", properties={"blank": "", "full": "x"}), timeout=TIMEOUT)
        finally:
            conn.close()
        got = [m for m in self.telemetry() if m.get("body") == "empty prop"]
        self.assertEqual(len(got), 1, self.telemetry())
        self.assertEqual(got[0]["properties"].get("full"), "x")
        self.assertEqual(got[0]["properties"].get("blank"), "", got[0])

    def new_device(self, device_id):
        """A fresh SAS device (deleted first if an earlier test left it); returns its primary key."""
        self.emu.rest("DELETE", "/devices/%s?api-version=2021-04-12" % device_id, headers={"If-Match": "*"})
        status, _, body = self.emu.rest("PUT", "/devices/%s?api-version=2021-04-12" % device_id, {"deviceId": device_id})
        self.assertIn(status, (200, 201), body)
        return body["authentication"]["symmetricKey"]["primaryKey"]

    def conn_for(self, device_id, key, ttl=3600):
        conn = BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=True, allowed_mechs="ANONYMOUS")
        aud = "localhost/devices/%s" % device_id
        status, why = put_token(conn, sas_token(aud, key, ttl=ttl), aud)
        self.assertEqual(status, 200, why)
        return conn

    def wait_closed(self, conn, endpoint, what):
        """Waits until endpoint (a link, session or the connection) is closed by the hub; returns its condition."""
        try:
            conn.wait(lambda: endpoint.state & Endpoint.REMOTE_CLOSED, timeout=TIMEOUT, msg=what)
        except Exception:  # the blocking client raises on a remote close with a condition
            pass
        self.assertTrue(endpoint.state & Endpoint.REMOTE_CLOSED, what)
        return endpoint.remote_condition

    def test_oversized_telemetry_is_rejected_and_the_link_goes_on(self):
        """Over the hub's 256 KiB D2C limit: that delivery is rejected with amqp:link:message-size-exceeded (the
        Node SDK's MessageTooLargeError); the link, the connection and the identity's other links stay up."""
        conn = self.device_conn()
        try:
            events = conn.create_sender(D1 + "/messages/events")
            twin = conn.create_receiver(D1 + "/twin")
            st, name, desc = outcome(conn, events, Message(body=b"x" * (300 * 1024), id="too-big"))
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:link:message-size-exceeded"), desc)
            self.assertIn("262144", desc)
            st, name, desc = outcome(conn, events, Message(body=b"small after the big one", id="after-big"))
            self.assertEqual(st, Delivery.ACCEPTED, (name, desc))
            self.assertFalse(twin.link.state & Endpoint.REMOTE_CLOSED)
        finally:
            conn.close()
        bodies = [m.get("body") for m in self.telemetry()]
        self.assertIn("small after the big one", bodies)
        self.assertFalse(any(m.get("properties", {}).get("$.mid") == "too-big" for m in self.telemetry()))

    def test_disabled_and_deleted_identities_are_kicked(self):
        """As over MQTT: disabling or deleting an identity closes its AMQP connection (amqp:connection:forced);
        its token is refused afterwards."""
        for action in ("disable", "delete"):
            with self.subTest(action=action):
                key = self.new_device("kickme")
                conn = self.conn_for("kickme", key)
                try:
                    conn.create_sender("/devices/kickme/messages/events")
                    if action == "disable":
                        status, _, body = self.emu.rest("PUT", "/devices/kickme?api-version=2021-04-12",
                                                        {"deviceId": "kickme", "status": "disabled"},
                                                        headers={"If-Match": "*"})
                    else:
                        status, _, body = self.emu.rest("DELETE", "/devices/kickme?api-version=2021-04-12",
                                                        headers={"If-Match": "*"})
                    self.assertIn(status, (200, 204), body)
                    cond = self.wait_closed(conn, conn.conn, "the connection closed")
                    self.assertEqual(cond.name, "amqp:connection:forced")
                finally:
                    try:
                        conn.close()
                    except Exception:
                        pass
                again = BlockingConnection(self.url, timeout=TIMEOUT, sasl_enabled=True, allowed_mechs="ANONYMOUS")
                try:
                    aud = "localhost/devices/kickme"
                    status, _ = put_token(again, sas_token(aud, key), aud)
                    self.assertEqual(status, 401 if action == "disable" else 404)
                finally:
                    again.close()

    def test_abrupt_drop_in_the_middle_of_each_operation(self):
        """A method in flight, a C2D message unsettled and a twin GET unanswered-for (no credit on the twin
        receiver) when the connection is dropped: the call fails at once (not at its timeout), the C2D message
        is delivered again to the next connection, and nothing leaks (the emulator runs under ASan here; its
        exit status is checked in tearDownClass)."""
        key = self.new_device("dropme")
        conn = self.conn_for("dropme", key)
        result = {}
        try:
            meth_in = conn.create_sender("/devices/dropme/methods/devicebound")
            meth_out = conn.create_receiver("/devices/dropme/methods/devicebound", credit=10)
            c2d_rcv = conn.create_receiver("/devices/dropme/messages/devicebound", credit=10)
            twin_out = conn.create_receiver("/devices/dropme/twin", credit=0)
            twin_in = conn.create_sender("/devices/dropme/twin")
            status, _, body = self.emu.rest("POST", "/emulator/devices/dropme/messages", {"body": "kept"})
            self.assertEqual(status, 201, body)
            c2d = c2d_rcv.receive(timeout=TIMEOUT)  # not settled
            self.assertEqual(c2d.body, b"kept")
            for _ in range(3):
                twin_in.send(Message(body=b" ", correlation_id=str(uuid.uuid4()),
                                     annotations={symbol("operation"): "GET"}))

            def call():
                t = time.time()
                result["status"], _, result["body"] = self.emu.rest(
                    "POST", "/twins/dropme/methods?api-version=2021-04-12",
                    {"methodName": "slow", "responseTimeoutInSeconds": 30, "payload": {}})
                result["took"] = time.time() - t
            caller = threading.Thread(target=call)
            caller.start()
            req = meth_out.receive(timeout=TIMEOUT)  # delivered, never answered
            self.assertEqual(req.properties["IoThub-methodname"], "slow")
            status, _, body = self.emu.rest("POST", "/emulator/faults", {"fault": "drop", "deviceId": "dropme"})
            self.assertEqual(status, 201, body)
            caller.join(TIMEOUT)
            self.assertFalse(caller.is_alive())
            self.assertLess(result["took"], 10, result)
            self.assertNotEqual(result["status"], 200, result)
            del meth_in
        finally:
            try:
                conn.close()
            except Exception:
                pass
        conn = self.conn_for("dropme", key)
        try:
            c2d_rcv = conn.create_receiver("/devices/dropme/messages/devicebound", credit=10)
            again = c2d_rcv.receive(timeout=TIMEOUT)
            self.assertEqual(again.body, b"kept")
            self.assertGreaterEqual(again.delivery_count, 1)
            c2d_rcv.accept()
        finally:
            conn.close()

    def test_token_expiry_with_a_method_in_flight(self):
        """A token that expires unrenewed while a call waits for the device's answer: the identity's links are
        closed with amqp:unauthorized-access and the call fails then, not at its 30-second timeout."""
        key = self.new_device("expiring")
        conn = self.conn_for("expiring", key, ttl=3)
        result = {}
        try:
            conn.create_sender("/devices/expiring/methods/devicebound")
            meth_out = conn.create_receiver("/devices/expiring/methods/devicebound", credit=10)

            def call():
                t = time.time()
                result["status"], _, result["body"] = self.emu.rest(
                    "POST", "/twins/expiring/methods?api-version=2021-04-12",
                    {"methodName": "m", "responseTimeoutInSeconds": 30, "payload": {}})
                result["took"] = time.time() - t
            caller = threading.Thread(target=call)
            caller.start()
            meth_out.receive(timeout=TIMEOUT)
            cond = self.wait_closed(conn, meth_out.link, "the method link closed at expiry")
            self.assertEqual(cond.name, "amqp:unauthorized-access")
            caller.join(TIMEOUT)
            self.assertFalse(caller.is_alive())
            self.assertLess(result["took"], 15, result)
            self.assertNotEqual(result["status"], 200, result)
        finally:
            try:
                conn.close()
            except Exception:
                pass

    def test_a_device_that_gives_no_credit_does_not_make_the_hub_queue(self):
        """Desired-property pushes to a twin receiver with no credit: the hub holds a bounded number for the
        link (Proton keeps them until credit comes) and logs the rest as not sent; the REST side stays
        responsive throughout."""
        key = self.new_device("nocredit")
        conn = self.conn_for("nocredit", key)
        try:
            twin_out = conn.create_receiver("/devices/nocredit/twin", credit=1)
            twin_in = conn.create_sender("/devices/nocredit/twin")
            cid = str(uuid.uuid4())
            twin_in.send(Message(body=b" ", correlation_id=cid, annotations={
                symbol("operation"): "PUT", symbol("resource"): "/notifications/twin/properties/desired"}))
            rep = twin_out.receive(timeout=TIMEOUT)  # the subscription's answer used the only credit
            self.assertEqual(rep.annotations["status"], 200)
            for i in range(100):
                status, _, body = self.emu.rest("PATCH", "/twins/nocredit?api-version=2021-04-12",
                                                {"properties": {"desired": {"n": i}}})
                self.assertEqual(status, 200, body)
            twin_out.flow(200)
            got = []
            try:
                while True:
                    got.append(twin_out.receive(timeout=2))
            except Exception:
                pass
            self.assertGreater(len(got), 0)
            # 64 waiting for credit at most (DL_MAX_QUEUED), and the one Proton had in hand.
            self.assertLessEqual(len(got), 65, "the hub queued %d pushes for a link without credit" % len(got))
            self.assertIn("could not be sent", self.emu.log_text())
        finally:
            conn.close()

    def test_link_pairs_by_channel_correlation_id(self):
        """Method and twin links pair by com.microsoft:channel-correlation-id, as on the hub: a request link and
        a response link of different pairs (a re-attach, or two clients of one identity on the connection) are
        not used together; the links of one pair are."""
        CID = symbol("com.microsoft:channel-correlation-id")

        class Props(LinkOption):
            def __init__(self, value):
                self.value = value

            def apply(self, link):
                link.properties = {CID: self.value}

        key = self.new_device("paired")
        conn = self.conn_for("paired", key)
        addr = "/devices/paired/methods/devicebound"
        try:
            answers = conn.create_sender(addr, options=Props("methods:A"))
            stray = conn.create_receiver(addr, credit=10, name="stray", options=Props("methods:B"))
            status, _, body = self.emu.rest("POST", "/twins/paired/methods?api-version=2021-04-12",
                                            {"methodName": "m", "responseTimeoutInSeconds": 5,
                                             "connectTimeoutInSeconds": 1, "payload": {}})
            self.assertEqual(status, 404, body)  # no complete pair: the device does not take calls
            with self.assertRaises(Timeout):
                stray.receive(timeout=0.5)
            stray.close()
            requests = conn.create_receiver(addr, credit=10, name="requests", options=Props("methods:A"))  # A's other half
            result = {}

            def call():
                result["status"], _, result["body"] = self.emu.rest(
                    "POST", "/twins/paired/methods?api-version=2021-04-12",
                    {"methodName": "m", "responseTimeoutInSeconds": 10, "payload": {"x": 1}})
            caller = threading.Thread(target=call)
            caller.start()
            req = requests.receive(timeout=TIMEOUT)
            answers.send(Message(body=b'{"ok":true}', correlation_id=req.correlation_id,
                                 properties={"IoThub-status": 200}))
            caller.join(TIMEOUT)
            self.assertEqual((result["status"], result["body"]["payload"]), (200, {"ok": True}), result)

            twin_out = conn.create_receiver("/devices/paired/twin", credit=10, options=Props("twin:X"))
            twin_in = conn.create_sender("/devices/paired/twin", options=Props("twin:Y"))
            get = Message(body=b" ", correlation_id=str(uuid.uuid4()), annotations={symbol("operation"): "GET"})
            st, name, desc = outcome(conn, twin_in, get)
            self.assertEqual((st, name), (Delivery.REJECTED, "amqp:not-allowed"), desc)
            self.assertIn("channel-correlation-id", desc)
            twin_in.close()
            twin_in = conn.create_sender("/devices/paired/twin", name="twin-x", options=Props("twin:X"))
            cid = str(uuid.uuid4())
            twin_in.send(Message(body=b" ", correlation_id=cid, annotations={symbol("operation"): "GET"}))
            rep = twin_out.receive(timeout=TIMEOUT)
            self.assertEqual((rep.correlation_id, rep.annotations["status"]), (cid, 200))
        finally:
            conn.close()

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
