// sdk_amqp_faults.test.js -- the SDKs' fault-injection protocol (issue 18) over AMQP, as the official, unmodified
// Node device SDK (azure-iot-device-amqp) sees it, the way its own e2e suite drives it (method_disconnect.js:
// KillAmqpConnection / KillAmqpSession / ShutDownAmqp with the default retry policy -> the connection goes after
// the delay, the SDK reconnects and a direct method is answered again; throttle_disconnect.js: InvokeThrottling,
// InvokeMaxMessageQuota and InvokeAuthError with NoRetry -> the next send fails with ThrottlingError,
// IotHubQuotaExceededError, UnauthorizedError, no disconnect, and sends work again after the duration); and a
// module's input messages over AMQP (ModuleClient 'inputMessage', the input name from the `inputName` property).
// Run through run_node_test.py (fixed ports 443/5671 in its own network namespace).
'use strict';

const nodeTest = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Client: DeviceClient, ModuleClient, Message } = require('azure-iot-device');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const { NoRetry, SharedAccessSignature } = require('azure-iot-common');
const { Registry } = require('azure-iothub');
const { withEmulator, randomId, HOST, OWNER_KEY } = require('./lib/emulator');
const { invoke } = require('./lib/sdk');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Every test gets a deadline, so a client that never reports what is awaited fails instead of hanging.
const test = (name, fn) => nodeTest(name, { timeout: 120000 }, fn);

function post(emu, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: emu.httpPort, path, method: 'POST',
      headers: { 'content-type': 'application/json', authorization: SharedAccessSignature.create(HOST, 'iothubowner',
        OWNER_KEY, Math.floor(Date.now() / 1000) + 3600).toString() } }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

// The fault message exactly as the Node SDK's e2e tests build it.
function faultMessage(type, reason, delay, duration) {
  const m = new Message('');
  m.properties.add('AzIoTHub_FaultOperationType', type);
  m.properties.add('AzIoTHub_FaultOperationCloseReason', reason);
  m.properties.add('AzIoTHub_FaultOperationDelayInSecs', delay);
  if (duration !== undefined) m.properties.add('AzIoTHub_FaultOperationDurationInSecs', duration);
  return m;
}

async function callM(emu, payload) {
  const { result } = await invoke(emu, 'device1', { methodName: 'm', payload, responseTimeoutInSeconds: 10,
    connectTimeoutInSeconds: 20 });
  return result;
}

// A device client over Transport answering method "m", counting its 'connect' events.
async function answeringDevice(emu, Transport) {
  const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
  const events = { connects: 0, disconnects: 0, waiters: [] };
  device.on('connect', () => { events.connects++; events.waiters.forEach((w) => w()); });
  device.on('disconnect', () => { events.disconnects++; });
  device.on('error', () => {});
  device.onDeviceMethod('m', (request, response) => response.send(200, { answered: request.payload }, () => {}));
  await device.open();
  events.connects = Math.max(events.connects, 1);
  events.waitConnects = (n, timeoutMs = 60000) => new Promise((resolve, reject) => {
    const check = () => { if (events.connects >= n) { done(); resolve(); } };
    const timer = setTimeout(() => { done(); reject(new Error(`only ${events.connects} connects`)); }, timeoutMs);
    const done = () => { clearTimeout(timer); events.waiters = events.waiters.filter((w) => w !== check); };
    events.waiters.push(check);
    check();
  });
  return { device, events };
}

// method_disconnect.js's cases for AMQP that close the connection or the session (delays shortened).
for (const [name, Transport, type, reason, pattern] of [
  ['Amqp', Amqp, 'KillAmqpConnection', ' severs the AMQP connection ', /closing: fault injection: KillAmqpConnection/],
  ['AmqpWs', AmqpWs, 'KillAmqpConnection', ' severs the AMQP connection ', /closing: fault injection: KillAmqpConnection/],
  ['Amqp', Amqp, 'ShutDownAmqp', ' cleanly shutdowns AMQP connection ', /closing: fault injection: ShutDownAmqp/],
]) {
  test(`${name}: ${type} after the delay; the SDK's retry policy reconnects and a method is answered again`,
    async () => {
      await withEmulator({}, async (emu) => {
        const { device, events } = await answeringDevice(emu, Transport);
        try {
          assert.deepEqual(await callM(emu, { n: 1 }), { status: 200, payload: { answered: { n: 1 } } });
          const sent = Date.now();
          // Not acknowledged before the connection goes; the SDK sends it again after reconnecting, and that
          // second copy is acknowledged (not carried out again), so the send completes.
          const send = device.sendEvent(faultMessage(type, reason, 1));
          await events.waitConnects(2);
          await send;
          assert.ok(Date.now() - sent >= 900, `reconnected ${Date.now() - sent} ms after the fault message`);
          assert.match(emu.log, pattern);
          assert.ok(events.disconnects === 0, "the retry policy hid the drop: no 'disconnect' for the app");
          // The method links are attached again after the reconnect (the SDK re-enables methods itself).
          let result;
          for (let i = 0; i < 20 && !result; i++) {
            result = await callM(emu, { n: 2 }).catch(() => sleep(250).then(() => undefined));
          }
          assert.deepEqual(result, { status: 200, payload: { answered: { n: 2 } } });
          assert.match(emu.log, /device1 connected over AMQP[^\n]*\n[\s\S]*device1 connected over AMQP/);
        } finally {
          await device.close();
        }
      });
    });
}

// throttle_disconnect.js (delay 0; duration shortened): with NoRetry the SDK's own error for the hub's
// rejected delivery shows, and the connection is not dropped.
for (const [type, reason, errorName] of [
  ['InvokeThrottling', ' throttle connection ', 'ThrottlingError'],
  ['InvokeMaxMessageQuota', ' exceed quota ', 'IotHubQuotaExceededError'],
  ['InvokeAuthError', ' authentication failure ', 'UnauthorizedError'],
]) {
  test(`Amqp: ${type} -- sends during the duration fail with ${errorName}, no disconnect; after it they work`,
    async () => {
      await withEmulator({}, async (emu) => {
        const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Amqp);
        device.setRetryPolicy(new NoRetry());
        const disconnects = [];
        device.on('disconnect', (err) => { disconnects.push(err); });
        device.on('error', () => {});
        await device.open();
        try {
          await device.sendEvent(new Message('before'));
          await device.sendEvent(faultMessage(type, reason, 0, 2)); // the fault message itself is accepted
          const t = Date.now();
          await assert.rejects(device.sendEvent(new Message('during')), (err) => {
            assert.equal(err.constructor.name, errorName);
            assert.ok(err.amqpError && err.amqpError.condition, 'the hub\'s AMQP condition is kept');
            return true;
          });
          await sleep(Math.max(0, 2300 - (Date.now() - t)));
          await device.sendEvent(new Message('after'));
          assert.deepEqual(disconnects, [], emu.log.slice(-3000));
        } finally {
          await device.close();
        }
      });
    });
}

// A module's input messages over AMQP: outside IoT Edge the hub's only way to a module is its C2D queue
// (here POST /emulator/devices/{id}/modules/{mid}/messages); the Node ModuleClient receives it on its
// /devices/{id}/modules/{mid}/messages/events receiver as 'inputMessage', the input name taken from the
// `x-opt-input-name` annotation, which the emulator fills from the message's `inputName` application property.
test('Amqp: a module receives messages sent to it as inputMessage, with the input name, and completes them',
  async () => {
    await withEmulator({}, async (emu) => {
      const registry = Registry.fromConnectionString(emu.serviceConnectionString());
      const moduleId = randomId('inputs');
      await registry.addModule({ deviceId: 'device1', moduleId });
      const { responseBody } = await registry.getModule('device1', moduleId);
      const cs = `HostName=${HOST};DeviceId=device1;ModuleId=${moduleId};` +
        `SharedAccessKey=${responseBody.authentication.symmetricKey.primaryKey}`;
      const mod = ModuleClient.fromConnectionString(cs, Amqp);
      const got = [];
      const arrived = new Promise((resolve) => {
        mod.on('inputMessage', (inputName, msg) => {
          got.push([inputName, msg.data.toString(), msg.properties.getValue('k')]);
          mod.complete(msg, () => {});
          if (got.length === 2) resolve();
        });
      });
      await mod.open();
      try {
        const path = `/emulator/devices/device1/modules/${moduleId}/messages`;
        let res = await post(emu, path, { body: 'to input1', properties: { inputName: 'input1', k: 'v1' } });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        res = await post(emu, path, { body: 'no input name', properties: { k: 'v2' } });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        await arrived;
        assert.deepEqual(got, [['input1', 'to input1', 'v1'], [undefined, 'no input name', 'v2']]);
        // Completed: nothing is left in the module's queue.
        const { responseBody: m } = await registry.getModule('device1', moduleId);
        assert.equal(Number(m.cloudToDeviceMessageCount || 0), 0);
      } finally {
        await mod.close();
      }
    });
  });
