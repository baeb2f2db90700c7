// printed_strings.test.js -- the connection strings the emulator prints at start, with its default --hostname,
// work unmodified with every client: the device string with our C iothub-device, the official Node device SDK
// over MQTT/TLS and over MQTT/WebSocket, and a raw python3-paho-mqtt device (its fields, as paho takes no
// connection string); the service string with our C iothub-service and the official Node azure-iothub. Each pair
// makes the tutorial's call. The C SDK's own handling of HostName is checked with openssl s_client. The default must be a dotted name (the Azure IoT C SDK splits HostName at its first
// dot) that is in the server certificate: 127.0.0.1. Run through run_node_test.py (fixed ports).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');
const { withEmulator } = require('./lib/emulator');
const { startProcess } = require('./lib/run');

const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };
const TUTORIAL_PAYLOAD = { method_number: '42' };
const CA = process.env.NODE_EXTRA_CA_CERTS;

function fields(cs) {
  return Object.fromEntries(cs.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

async function nodeDevice(cs, Transport) {
  const client = DeviceClient.fromConnectionString(cs, Transport);
  client.onDeviceMethod('DeviceMethod', (request, response) => response.send(200, TUTORIAL_RESPONSE, () => {}));
  await client.open();
  return () => client.close();
}

async function started(p) {
  await p.ready;
  return p.stop;
}

const DEVICES = {
  'C iothub-device': (cs) => started(startProcess(process.env.IOTHUB_DEVICE_BIN,
    ['--connection-string', cs, '--ca-file', CA], 'connected')),
  'Node SDK (MQTT/TLS)': (cs) => nodeDevice(cs, Mqtt),
  'Node SDK (MQTT over WebSocket)': (cs) => nodeDevice(cs, MqttWs),
  'python3-paho-mqtt': (cs) => {
    const f = fields(cs);
    return started(startProcess('/usr/bin/python3', [path.join(__dirname, 'raw_paho_device.py'), f.HostName, '8883',
      CA, f.DeviceId, f.SharedAccessKey], 'connected'));
  },
};

const CALLERS = {
  'C iothub-service': (cs) => new Promise((resolve, reject) => {
    execFile(process.env.IOTHUB_SERVICE_BIN, ['invoke', 'device1', 'DeviceMethod', '--payload',
      JSON.stringify(TUTORIAL_PAYLOAD), '--connect-timeout', '30', '--json', '--connection-string', cs,
      '--ca-file', CA], (err, stdout, stderr) => {
      if (err) reject(new Error(`iothub-service failed (${err.code}): ${stdout}${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  }),
  'Node azure-iothub': async (cs) => {
    const { result } = await ServiceClient.fromConnectionString(cs).invokeDeviceMethod('device1', {
      methodName: 'DeviceMethod', payload: TUTORIAL_PAYLOAD, responseTimeoutInSeconds: 60, connectTimeoutInSeconds: 30 });
    return result;
  },
};

// Every device kind once and every caller at least twice, without running the whole matrix again.
const PAIRS = [
  ['C iothub-device', 'Node azure-iothub'],
  ['Node SDK (MQTT/TLS)', 'C iothub-service'],
  ['Node SDK (MQTT over WebSocket)', 'Node azure-iothub'],
  ['python3-paho-mqtt', 'C iothub-service'],
];

test('the printed connection strings use HostName=127.0.0.1 and work with every client', { timeout: 240000 }, async (t) => {
  await withEmulator({ hostname: null }, async (emu) => {
    const printed = emu.printedStrings();
    assert.match(printed.service, /^HostName=127\.0\.0\.1;SharedAccessKeyName=iothubowner;SharedAccessKey=\S{44}$/);
    assert.match(printed.device, /^HostName=127\.0\.0\.1;DeviceId=device1;SharedAccessKey=\S{44}$/);
    // The Azure IoT C SDK (not packaged by Debian, so not run here) splits HostName at its first dot into hub
    // name and suffix, joins them back to connect, and its OpenSSL adapter sends HostName as SNI and verifies
    // the chain against TrustedCerts: the same handshake with openssl s_client.
    await t.test('the C SDK\'s view of HostName: dotted, and a TLS handshake with it as SNI verifies', async () => {
      const host = fields(printed.device).HostName;
      const dot = host.indexOf('.');
      assert.ok(dot > 0 && dot < host.length - 1, `HostName ${host} has no hub name and suffix`);
      assert.equal(`${host.slice(0, dot)}.${host.slice(dot + 1)}`, host);
      const out = await new Promise((resolve) => {
        const child = execFile('openssl', ['s_client', '-connect', `${host}:8883`, '-servername', host, '-CAfile', CA,
          '-verify_return_error', '-brief'], (err, stdout, stderr) => resolve({ code: err ? err.code : 0, text: stdout + stderr }));
        child.stdin.end();
      });
      assert.equal(out.code, 0, out.text);
      assert.match(out.text, /Verification: OK/);
    });
    for (const [device, caller] of PAIRS) {
      await t.test(`${device} answers ${caller}`, async () => {
        const stop = await DEVICES[device](printed.device);
        try {
          const result = await CALLERS[caller](printed.service);
          assert.deepEqual({ status: result.status, payload: result.payload }, { status: 200, payload: TUTORIAL_RESPONSE });
        } finally {
          await stop();
        }
      });
    }
  });
});
