// sdk_matrix.test.js -- the compatibility matrix: every device kind against every caller, each pair running
// the tutorial's call (DeviceMethod, {"method_number":"42"}, answered 200 with the tutorial's response) and then,
// after the device has gone, the offline error (404103). Devices: our C iothub-device (MQTT/TLS), the official
// Node device SDK over MQTT/TLS, MQTT/WebSocket on :443, AMQP/TLS on :5671 and AMQP/WebSocket on :443, and a
// raw python3-paho-mqtt device. Callers: our C iothub-service and the official Node azure-iothub. Run through
// run_node_test.py (fixed ports).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const { Client: ServiceClient } = require('azure-iothub');
const { withEmulator, DEVICE1_KEY, HOST } = require('./lib/emulator');
const { startProcess } = require('./lib/run');

const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };
const TUTORIAL_PAYLOAD = { method_number: '42' };

const DEVICES = {
  'C iothub-device (MQTT/TLS)': async (emu) => {
    const p = startProcess(process.env.IOTHUB_DEVICE_BIN,
      ['--connection-string', emu.deviceConnectionString(), '--ca-file', process.env.NODE_EXTRA_CA_CERTS], 'connected');
    await p.ready;
    return p.stop;
  },
  'Node SDK (MQTT/TLS)': (emu) => nodeDevice(emu, Mqtt),
  'Node SDK (MQTT over WebSocket)': (emu) => nodeDevice(emu, MqttWs),
  'Node SDK (AMQP/TLS)': (emu) => nodeDevice(emu, Amqp),
  'Node SDK (AMQP over WebSocket)': (emu) => nodeDevice(emu, AmqpWs),
  'python3-paho-mqtt raw device': async () => {
    const p = startProcess('/usr/bin/python3', [path.join(__dirname, 'raw_paho_device.py'), HOST, '8883',
      process.env.NODE_EXTRA_CA_CERTS, 'device1', DEVICE1_KEY], 'connected');
    await p.ready;
    return p.stop;
  },
};

async function nodeDevice(emu, Transport) {
  const client = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
  client.onDeviceMethod('DeviceMethod', (request, response) => response.send(200, TUTORIAL_RESPONSE, () => {}));
  await client.open();
  return () => client.close();
}

// Each caller returns {status, payload} for an answered call, or {errorCode} for a hub error.
const CALLERS = {
  'C iothub-service': (emu) => new Promise((resolve) => {
    execFile(process.env.IOTHUB_SERVICE_BIN, ['invoke', 'device1', 'DeviceMethod', '--payload',
      JSON.stringify(TUTORIAL_PAYLOAD), '--connect-timeout', '30', '--json', '--connection-string',
      emu.serviceConnectionString(), '--ca-file', process.env.NODE_EXTRA_CA_CERTS], (err, stdout) => {
      const out = JSON.parse(stdout);
      resolve(out.error ? { errorCode: out.error.errorCode, exit: err && err.code } : { status: out.status, payload: out.payload });
    });
  }),
  'Node azure-iothub': async (emu) => {
    const service = ServiceClient.fromConnectionString(emu.serviceConnectionString());
    try {
      const { result } = await service.invokeDeviceMethod('device1', { methodName: 'DeviceMethod',
        payload: TUTORIAL_PAYLOAD, responseTimeoutInSeconds: 60, connectTimeoutInSeconds: 30 });
      return result;
    } catch (err) {
      return { errorCode: JSON.parse(JSON.parse(err.responseBody).Message).errorCode };
    }
  },
};

// Offline calls use no connect timeout, so the answer is immediate.
const OFFLINE = {
  'C iothub-service': (emu) => new Promise((resolve) => {
    execFile(process.env.IOTHUB_SERVICE_BIN, ['invoke', 'device1', '--json', '--connection-string',
      emu.serviceConnectionString(), '--ca-file', process.env.NODE_EXTRA_CA_CERTS], (err, stdout) => {
      resolve({ errorCode: JSON.parse(stdout).error.errorCode, exit: err && err.code });
    });
  }),
  'Node azure-iothub': async (emu) => {
    const service = ServiceClient.fromConnectionString(emu.serviceConnectionString());
    try {
      await service.invokeDeviceMethod('device1', { methodName: 'DeviceMethod', payload: TUTORIAL_PAYLOAD });
      return { answered: true };
    } catch (err) {
      return { errorCode: JSON.parse(JSON.parse(err.responseBody).Message).errorCode };
    }
  },
};

for (const [deviceName, startDevice] of Object.entries(DEVICES)) {
  for (const [callerName, call] of Object.entries(CALLERS)) {
    test(`${deviceName} answers ${callerName}; then offline gives 404103`, async () => {
      await withEmulator({}, async (emu) => {
        const stop = await startDevice(emu);
        let stopped = false;
        try {
          const result = await call(emu);
          assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
          await stop();
          stopped = true;
          const offline = await OFFLINE[callerName](emu);
          assert.equal(offline.errorCode, 404103);
          if (callerName === 'C iothub-service') assert.equal(offline.exit, 6);
        } finally {
          if (!stopped) await stop();
        }
      });
    });
  }
}
