// testcontainers.test.js -- the README's Testcontainers example, as a user's Node test would be written: start
// the emulator image with the npm package `testcontainers` (random host ports, waiting for the image's
// HEALTHCHECK), take the dev CA from GET /emulator/ca.pem, connect the official Node device SDK over MQTT/TLS
// (GatewayHostName=host:port reaches the mapped 8883 port; HostName stays what the hub signs tokens for), and
// invoke the tutorial's method through the REST API on the mapped plain HTTP port. test_docker.py runs it
// (label docker) with DOCKER_HOST set and the image built; IOTHUB_IMAGE names the image.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { GenericContainer, Wait } = require('testcontainers');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { SharedAccessSignature } = require('azure-iothub');

const IMAGE = process.env.IOTHUB_IMAGE || 'iothub-emulator:local';
// The image's well-known development credentials (public; never use them for anything real).
const OWNER_KEY = 'vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js=';
const DEVICE1_KEY = 'Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM=';

test('a Testcontainers-started emulator takes a device and a method call', { timeout: 120000 }, async () => {
  const container = await new GenericContainer(IMAGE)
    .withExposedPorts(8883, 8080)
    .withWaitStrategy(Wait.forHealthCheck())
    .start();
  let device;
  try {
    const host = '127.0.0.1'; // container.getHost() may say "localhost"; the IP is a dotted name in the cert
    const http = `http://${host}:${container.getMappedPort(8080)}`;
    const ca = await (await fetch(`${http}/emulator/ca.pem`)).text();
    assert.match(ca, /BEGIN CERTIFICATE/);

    device = DeviceClient.fromConnectionString(`HostName=127.0.0.1;DeviceId=device1;SharedAccessKey=${DEVICE1_KEY};` +
      `GatewayHostName=${host}:${container.getMappedPort(8883)}`, Mqtt);
    device.setOptions({ ca });
    device.onDeviceMethod('DeviceMethod', (request, response) =>
      response.send(200, { Response: 'This is the response from the device', got: request.payload }, () => {}));
    await device.open();

    const token = SharedAccessSignature.create('127.0.0.1', 'iothubowner', OWNER_KEY,
      Math.floor(Date.now() / 1000) + 3600).toString();
    const res = await fetch(`${http}/twins/device1/methods?api-version=2021-04-12`, {
      method: 'POST',
      headers: { Authorization: token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ methodName: 'DeviceMethod', payload: { method_number: '42' }, responseTimeoutInSeconds: 30 }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 200,
      payload: { Response: 'This is the response from the device', got: { method_number: '42' } } });
  } finally {
    if (device) await device.close();
    await container.stop();
  }
});
