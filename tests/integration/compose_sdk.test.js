// compose_sdk.test.js -- the official Node SDKs against `docker compose up`'s emulator from the host: the device
// connects over MQTT/TLS (:8883) and over MQTT/WebSocket (:443) with the device connection string the container
// printed, and the service SDK makes the tutorial's call on :443 with the printed service string. test_docker.py
// runs it with IOTHUB_PRINTED_DEVICE_CS, IOTHUB_PRINTED_SERVICE_CS and NODE_EXTRA_CA_CERTS (the CA copied out of
// the compose volume) set.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');

const DEVICE_CS = process.env.IOTHUB_PRINTED_DEVICE_CS;
const SERVICE_CS = process.env.IOTHUB_PRINTED_SERVICE_CS;
const RESPONSE = { Response: 'This is the response from the device' };

for (const [name, Transport] of [['MQTT/TLS', Mqtt], ['MQTT over WebSocket', MqttWs]]) {
  test(`Node device SDK (${name}) answers the Node service SDK through the published ports`, { timeout: 60000 }, async () => {
    assert.ok(DEVICE_CS && SERVICE_CS, 'IOTHUB_PRINTED_DEVICE_CS and IOTHUB_PRINTED_SERVICE_CS must be set');
    const device = DeviceClient.fromConnectionString(DEVICE_CS, Transport);
    device.onDeviceMethod('DeviceMethod', (request, response) => response.send(200, RESPONSE, () => {}));
    await device.open();
    try {
      const { result } = await ServiceClient.fromConnectionString(SERVICE_CS).invokeDeviceMethod('device1', {
        methodName: 'DeviceMethod', payload: { method_number: '42' }, responseTimeoutInSeconds: 30 });
      assert.deepEqual(result, { status: 200, payload: RESPONSE });
    } finally {
      await device.close();
    }
  });
}
