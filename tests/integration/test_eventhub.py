"""test_eventhub.py -- the built-in Event Hub-compatible endpoint read by Debian's python3-azure
azure.eventhub.EventHubConsumerClient (5.11, pyamqp), unmodified, over TLS on 5671 with the dev CA as
connection_verify: hub and partition properties, and the events a device sent (our iothub-device, and a raw
MQTT publish with a property bag through python3-paho-mqtt) with body, application and system properties,
sequence numbers and offsets; receiving from a sequence number; the same over AMQP on WebSocket (:443); and telemetry a device POSTs over
HTTPS. Python's client always uses port 5671, so
this runs in its own network namespace when it can (as run_node_test.py does); it skips itself (exit 77)
when azure.eventhub is missing or 5671 cannot be had."""

import base64
import hashlib
import hmac
import os
import ssl
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

from run_node_test import enter_own_network_namespace
if __name__ == "__main__":
    enter_own_network_namespace()

try:
    from azure.eventhub import EventHubConsumerClient, TransportType
except ImportError:  # pragma: no cover
    print("SKIPPED: azure.eventhub is not installed (apt-get install python3-azure)")
    sys.exit(77)

from harness import Emulator, OWNER_KEY, DEVICE1_KEY

HUB = "iothub"
CS = ("Endpoint=sb://localhost/;SharedAccessKeyName=iothubowner;SharedAccessKey=%s;EntityPath=%s"
      % (OWNER_KEY, HUB))
DEVICE = os.environ.get("IOTHUB_DEVICE_BIN")


def receive(client, want, **kwargs):
    """Events from every partition until `want` arrived or 30 s passed."""
    got = []
    done = threading.Event()

    def on_event(ctx, event):
        if event is None:
            return
        got.append((ctx.partition_id, event))
        if len(got) >= want:
            done.set()

    t = threading.Thread(target=client.receive, kwargs=dict(on_event=on_event, max_wait_time=1, **kwargs),
                         daemon=True)
    t.start()
    done.wait(30)
    client.close()
    t.join(10)
    return got


def paho_publish(emu, topic_bag, body):
    import paho.mqtt.client as mqtt
    sr = urllib.parse.quote("localhost/devices/device1", safe="")
    se = int(time.time()) + 3600
    sig = base64.b64encode(hmac.new(base64.b64decode(DEVICE1_KEY), ("%s\n%d" % (sr, se)).encode(),
                                    hashlib.sha256).digest())
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, urllib.parse.quote(sig.decode(), safe=""), se)
    c = mqtt.Client(client_id="device1", protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=emu.ca_path, tls_version=ssl.PROTOCOL_TLSv1_2)
    c.username_pw_set("localhost/device1/?api-version=2021-04-12", token)
    c.connect("localhost", emu.mqtts_port)
    c.loop_start()
    info = c.publish("devices/device1/messages/events/" + topic_bag, body, qos=1)
    info.wait_for_publish()
    c.disconnect()
    c.loop_stop()


class EventHubPython(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(fixed_ports=True)
        try:
            cls.emu.start()
        except Exception as e:  # pragma: no cover
            print("SKIPPED: cannot start the emulator on the fixed ports (5671 in use?): %s" % e)
            sys.exit(77)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def client(self, group="$Default"):
        return EventHubConsumerClient.from_connection_string(CS, group, connection_verify=self.emu.ca_path)

    def test_1_properties(self):
        c = self.client()
        with c:
            props = c.get_eventhub_properties()
            self.assertEqual(props["eventhub_name"], HUB)
            self.assertEqual(props["partition_ids"], ["0", "1", "2", "3"])
            p = c.get_partition_properties("0")
            self.assertEqual(p["id"], "0")
            self.assertEqual(p["last_enqueued_sequence_number"], -1)
            self.assertTrue(p["is_empty"])

    def test_2_events_from_devices(self):
        r = subprocess.run([DEVICE, "--send-telemetry", "2", "--telemetry-interval", "0", "--connection-string",
                            self.emu.device_connection_string(), "--ca-file", self.emu.ca_path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        paho_publish(self.emu, "%24.mid=m-1&%24.ct=text%2Fplain&color=blue", b"raw paho")
        got = receive(self.client(), 3, starting_position="-1")
        self.assertEqual(len(got), 3)
        bodies = [e.body_as_str() for _, e in got]
        self.assertIn('"messageNumber":1', bodies[0])
        self.assertIn('"messageNumber":2', bodies[1])
        self.assertEqual(bodies[2], "raw paho")
        _, last = got[2]
        self.assertEqual(last.properties, {b"color": b"blue"})
        sp = last.system_properties
        self.assertEqual(sp[b"iothub-connection-device-id"], b"device1")
        self.assertEqual(sp[b"iothub-message-source"], b"Telemetry")
        self.assertEqual(last.message_id, "m-1")
        self.assertEqual(last.content_type, "text/plain")
        self.assertEqual(got[1][1].sequence_number, got[0][1].sequence_number + 1)
        self.assertGreater(int(got[1][1].offset), int(got[0][1].offset))
        self.assertLess(abs(last.enqueued_time.timestamp() - time.time()), 60)
        # From a sequence number, inclusive, on the device's partition.
        pid = got[0][0]
        again = receive(self.client(), 2, partition_id=pid, starting_position=got[1][1].sequence_number,
                        starting_position_inclusive=True)
        self.assertEqual([e.body_as_str() for _, e in again], bodies[1:])

    def test_3_amqp_over_websocket(self):
        """TransportType.AmqpOverWebsocket: wss://localhost:443/$servicebus/websocket, sub-protocol AMQPWSB10."""
        c = EventHubConsumerClient.from_connection_string(CS, "$Default", connection_verify=self.emu.ca_path,
                                                          transport_type=TransportType.AmqpOverWebsocket)
        with c:
            self.assertEqual(c.get_eventhub_properties()["partition_ids"], ["0", "1", "2", "3"])
        got = receive(EventHubConsumerClient.from_connection_string(
            CS, "$Default", connection_verify=self.emu.ca_path, transport_type=TransportType.AmqpOverWebsocket),
            3, starting_position="-1")
        self.assertEqual(len(got), 3)
        self.assertEqual(got[0][1].system_properties[b"iothub-connection-device-id"], b"device1")


    def test_4_https_device_telemetry(self):
        """A device's POST /devices/{id}/messages/events (the HTTPS transport) lands in the same log."""
        status, _, _ = self.emu.rest("POST", "/devices/device1/messages/events?api-version=2020-09-30",
                                     body=b"over https", token=self.emu.device_token(),
                                     headers={"iothub-app-color": "green", "iothub-messageid": "h-1"})
        self.assertEqual(status, 204)
        got = receive(self.client(), 4, starting_position="-1")
        self.assertEqual(len(got), 4)
        last = got[3][1]
        self.assertEqual(last.body_as_str(), "over https")
        # header names are case-insensitive (urllib sends "Iothub-app-color"); the name's case is the HTTP
        # front's business, the value must arrive
        self.assertEqual({k.lower(): v for k, v in last.properties.items()}, {b"color": b"green"})
        self.assertEqual(last.message_id, "h-1")
        self.assertEqual(last.system_properties[b"iothub-connection-device-id"], b"device1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
