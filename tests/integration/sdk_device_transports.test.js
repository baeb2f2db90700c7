// sdk_device_transports.test.js -- the official Node device SDK (azure-iot-device with azure-iot-device-mqtt),
// unmodified, against the emulator over each transport it offers: MQTT over TLS (:8883) and MQTT over
// WebSocket (:443, the same port as the REST API). Each answers the tutorial's call from the official service
// SDK, reads its twin and reports properties (sdk_twins.test.js covers twins in full). Run through
// run_node_test.py (fixed ports).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');
const { withEmulator } = require('./lib/emulator');

const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };

for (const [name, Transport] of [['MQTT over TLS', Mqtt], ['MQTT over WebSocket', MqttWs]]) {
  test(`${name}: the tutorial call is answered`, async () => {
    await withEmulator({}, async (emu) => {
      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
      const seen = [];
      device.onDeviceMethod('DeviceMethod', (request, response) => {
        seen.push(request.payload);
        response.send(200, TUTORIAL_RESPONSE, () => {});
      });
      await device.open();
      try {
        const service = ServiceClient.fromConnectionString(emu.serviceConnectionString());
        const { result } = await service.invokeDeviceMethod('device1', {
          methodName: 'DeviceMethod', payload: { method_number: '42' }, responseTimeoutInSeconds: 60,
          connectTimeoutInSeconds: 30,
        });
        assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
        assert.deepEqual(seen, [{ method_number: '42' }]);
      } finally {
        await device.close();
      }
    });
  });

  test(`${name}: twin GET and reported-properties PATCH complete`, async () => {
    await withEmulator({}, async (emu) => {
      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
      await device.open();
      try {
        const twin = await device.getTwin();
        assert.equal(typeof twin.properties.reported.$version, 'number');
        const before = twin.properties.reported.$version;
        await new Promise((resolve, reject) =>
          twin.properties.reported.update({ firmware: '1.2.3', nested: { a: 1 } }, (err) => (err ? reject(err) : resolve())));
        const again = await device.getTwin();
        assert.equal(again.properties.reported.firmware, '1.2.3');
        assert.ok(again.properties.reported.$version > before);
      } finally {
        await device.close();
      }
    });
  });
}

test('a device that is offline is told apart from one that is online', async () => {
  await withEmulator({}, async (emu) => {
    const service = ServiceClient.fromConnectionString(emu.serviceConnectionString());
    await assert.rejects(service.invokeDeviceMethod('device1', { methodName: 'DeviceMethod', payload: {} }),
      (err) => err.response.statusCode === 404 && err.response.headers['iothub-errorcode'] === 'DeviceNotOnline');
  });
});
