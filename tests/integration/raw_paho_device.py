"""raw_paho_device.py -- a device written directly on MQTT (Debian's python3-paho-mqtt), no Azure SDK: it
connects to the emulator with a SAS token made here, subscribes to methods and answers DeviceMethod as the
tutorial's device does. Prints "connected" once subscribed; runs until SIGTERM. Used by the SDK matrix.
usage: raw_paho_device.py HOST PORT CA_FILE DEVICE_ID KEY"""

import base64
import hashlib
import hmac
import json
import signal
import ssl
import sys
import time
import urllib.parse

import paho.mqtt.client as mqtt


def token(uri, key):
    sr = urllib.parse.quote(uri, safe="")
    se = int(time.time()) + 3600
    sig = base64.b64encode(hmac.new(base64.b64decode(key), ("%s\n%d" % (sr, se)).encode(), hashlib.sha256).digest())
    return "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, urllib.parse.quote(sig.decode(), safe=""), se)


def main():
    host, port, ca, device_id, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    client = mqtt.Client(client_id=device_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLSv1_2)
    client.username_pw_set("%s/%s/?api-version=2021-04-12" % (host, device_id),
                           token("%s/devices/%s" % (host, device_id), key))

    def on_message(c, userdata, msg):
        name = msg.topic.split("/")[3]
        rid = msg.topic.split("?$rid=")[1]
        if name == "DeviceMethod":
            body, status = {"Response": "This is the response from the device"}, 200
        else:
            body, status = {"message": "method not found"}, 404
        c.publish("$iothub/methods/res/%d/?$rid=%s" % (status, rid), json.dumps(body), qos=0)

    client.on_connect = lambda c, u, f, rc: c.subscribe("$iothub/methods/POST/#", 0)
    client.on_subscribe = lambda c, u, mid, granted: print("connected", flush=True)
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *a: (client.disconnect(), sys.exit(0)))
    client.connect(host, port, 60)
    client.loop_forever()


if __name__ == "__main__":
    main()
