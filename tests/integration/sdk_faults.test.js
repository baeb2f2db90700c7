// sdk_faults.test.js -- fault injection as the official, unmodified Node SDKs see it (README "Testing failures"):
// the SDKs' own protocol (a telemetry message with AzIoTHub_FaultOperation* properties, as the Node SDK's e2e
// tests send it: KillTcp and ShutDownMqtt drop the connection after the delay and the SDK's retry policy
// reconnects, a direct method is answered again; InvokeThrottling and InvokeAuthError over MQTT), every
// /emulator/faults control fault (drop, refuseConnect, methodReplies delay and blackhole, rest 429/500/503 with
// Retry-After, expireToken, list and clear), and --throttle s1 refusing the identity-registry call over the
// limit and accepting it after Retry-After. Run through run_node_test.py (fixed ports 443/8883).
'use strict';

const nodeTest = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Client: DeviceClient, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { NoRetry } = require('azure-iot-common');
const { Registry } = require('azure-iothub');
const { withEmulator } = require('./lib/emulator');
const { invoke } = require('./lib/sdk');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Every test gets a deadline, so a client that never reports what is awaited fails instead of hanging.
const test = (name, fn) => nodeTest(name, { timeout: 90000 }, fn);

// The control API on the plain HTTP port (no authorization, like every /emulator route).
function control(emu, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: emu.httpPort, path, method,
      headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

async function addFault(emu, body) {
  const res = await control(emu, 'POST', '/emulator/faults', body);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

// The fault message exactly as the Node SDK's e2e tests build it (method_disconnect.js, throttle_disconnect.js).
function faultMessage(type, reason, delay, duration) {
  const m = new Message('');
  m.properties.add('AzIoTHub_FaultOperationType', type);
  m.properties.add('AzIoTHub_FaultOperationCloseReason', reason);
  m.properties.add('AzIoTHub_FaultOperationDelayInSecs', delay);
  if (duration !== undefined) m.properties.add('AzIoTHub_FaultOperationDurationInSecs', duration);
  return m;
}

// A device client that answers method "m" and counts its connects; resolves once open.
async function answeringDevice(emu, Transport = Mqtt) {
  const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
  const events = { connects: 0, disconnects: [], waiters: [] };
  device.on('connect', () => { events.connects++; events.waiters.forEach((w) => w()); });
  device.on('disconnect', (err) => events.disconnects.push(err));
  device.on('error', () => {});
  device.onDeviceMethod('m', (request, response) => response.send(200, { answered: request.payload }, () => {}));
  await device.open();
  events.connects = Math.max(events.connects, 1);
  // Resolves when the client has connected n times in all.
  events.waitConnects = (n, timeoutMs = 30000) => new Promise((resolve, reject) => {
    const check = () => { if (events.connects >= n) { done(); resolve(); } };
    const timer = setTimeout(() => { done(); reject(new Error(`only ${events.connects} connects`)); }, timeoutMs);
    const done = () => { clearTimeout(timer); events.waiters = events.waiters.filter((w) => w !== check); };
    events.waiters.push(check);
    check();
  });
  return { device, events };
}

async function callM(emu, payload, extra = {}) {
  const { result } = await invoke(emu, 'device1', { methodName: 'm', payload, responseTimeoutInSeconds: 10,
    connectTimeoutInSeconds: 20, ...extra });
  return result;
}

// ---- the SDK protocol ----

for (const [name, Transport] of [['MQTT', Mqtt], ['MQTT over WebSocket', MqttWs]]) {
  test(`${name}: KillTcp drops the connection after the delay; the SDK reconnects and answers methods again`,
    async () => {
      await withEmulator({}, async (emu) => {
        const { device, events } = await answeringDevice(emu, Transport);
        try {
          assert.deepEqual(await callM(emu, { n: 1 }), { status: 200, payload: { answered: { n: 1 } } });
          const sent = Date.now();
          // Not acknowledged before the drop; the SDK re-sends it after reconnecting, and that re-send is
          // acknowledged (not carried out again), so the send completes.
          const send = device.sendEvent(faultMessage('KillTcp', ' severs the TCP connection ', 1));
          await events.waitConnects(2);
          assert.ok(Date.now() - sent >= 900, `reconnected ${Date.now() - sent} ms after the fault message`);
          await send;
          assert.match(emu.log, /device1: dropping the connection without a goodbye now \(fault injection: KillTcp\)/);
          assert.deepEqual(await callM(emu, { n: 2 }), { status: 200, payload: { answered: { n: 2 } } });
        } finally {
          await device.close();
        }
      });
    });
}

test('MQTT: ShutDownMqtt closes cleanly after the delay; connects are refused for the duration, then the SDK is back',
  async () => {
    await withEmulator({}, async (emu) => {
      const { device, events } = await answeringDevice(emu);
      try {
        const sent = Date.now();
        const send = device.sendEvent(faultMessage('ShutDownMqtt', ' cleanly shutdowns MQTT connection ', 1, 2));
        await events.waitConnects(2);
        assert.ok(Date.now() - sent >= 2900, `back after ${Date.now() - sent} ms: delay 1 s + duration 2 s`);
        await send;
        assert.match(emu.log, /device1: closing the connection now \(fault injection: ShutDownMqtt\)/);
        assert.match(emu.log, /refused \(CONNACK 3\): connects refused/);
        assert.deepEqual(await callM(emu, 'again'), { status: 200, payload: { answered: 'again' } });
      } finally {
        await device.close();
      }
    });
  });

// As Node's throttle_disconnect.js does it (delay 0, duration 5 there; shorter here), with NoRetry so the
// transport's own view shows: over MQTT the hub closes the connection instead of acknowledging the send.
for (const [type, reason] of [['InvokeThrottling', ' throttle connection '], ['InvokeAuthError', ' authentication failure ']]) {
  test(`MQTT: ${type} -- the send during the duration fails with the connection closed; after it, all is normal`,
    async () => {
      await withEmulator({}, async (emu) => {
        const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
        device.setRetryPolicy(new NoRetry());
        device.on('error', () => {});
        const disconnects = [];
        device.on('disconnect', (err) => disconnects.push(err));
        await device.open();
        try {
          await device.sendEvent(new Message('before'));
          await device.sendEvent(faultMessage(type, reason, 0, 2)); // the fault message itself is accepted
          const t = Date.now();
          await assert.rejects(device.sendEvent(new Message('during')), (err) => err.constructor.name === 'NotConnectedError');
          assert.equal(disconnects.length, 1);
          if (type === 'InvokeAuthError') {
            // Reconnecting during the duration: CONNACK 5, which the SDK reports as not authorized.
            await assert.rejects(device.open(), (err) => /Not authorized/.test(err.message));
          }
          await sleep(Math.max(0, 2300 - (Date.now() - t)));
          await device.open();
          await device.sendEvent(new Message('after'));
        } finally {
          await device.close();
        }
      });
    });
}

test('MQTT: with the default retry policy, a send during InvokeThrottling completes only after the duration',
  async () => {
    await withEmulator({}, async (emu) => {
      const { device, events } = await answeringDevice(emu);
      try {
        await device.sendEvent(faultMessage('InvokeThrottling', ' throttle connection ', 0, 3));
        const t = Date.now();
        await device.sendEvent(new Message('retried until the throttle ends'));
        assert.ok(Date.now() - t >= 2500, `completed after ${Date.now() - t} ms`);
        assert.ok(events.connects >= 2, 'the SDK reconnected after the hub closed the throttled connection');
      } finally {
        await device.close();
      }
    });
  });

// ---- the control API ----

// What the Node SDK 1.18 does differs by how the connection goes: after a clean close it reconnects by itself
// (its error filter retries NotConnectedError); after a TCP RST on an idle connection it only emits 'disconnect'
// with the raw ECONNRESET, which that filter does not retry -- the application has to open() again. (With a send
// in flight, as in the KillTcp tests above, the send's own retry reconnects.)
test('control API: drop -- abrupt (RST): the SDK reports the disconnect, open() again works; clean: it reconnects',
  async () => {
    await withEmulator({}, async (emu) => {
      const { device, events } = await answeringDevice(emu);
      try {
        const gone = new Promise((resolve) => device.once('disconnect', resolve));
        const first = events.connects;
        assert.equal((await addFault(emu, { fault: 'drop', deviceId: 'device1' })).dropped, true);
        // Usually the RST surfaces as ECONNRESET and the SDK gives up; should it see a plain close instead
        // (a race in its socket layer), it reconnects by itself. Either way it must be usable again.
        const outcome = await Promise.race([gone, events.waitConnects(first + 1, 60000).then(() => 'reconnected')]);
        if (outcome !== 'reconnected') {
          assert.equal(outcome.constructor.name, 'Disconnected');
          assert.equal(outcome.transportObj && outcome.transportObj.code, 'ECONNRESET');
          await device.open();
        }
        assert.match(emu.log, /dropping the connection without a goodbye/);
        assert.deepEqual(await callM(emu, 1), { status: 200, payload: { answered: 1 } });
        const before = events.connects;
        assert.equal((await addFault(emu, { fault: 'drop', deviceId: 'device1', abrupt: false })).dropped, true);
        await events.waitConnects(before + 1);
        assert.deepEqual(await callM(emu, 2), { status: 200, payload: { answered: 2 } });
      } finally {
        await device.close();
      }
    });
  });

test('control API: refuseConnect 3 for N seconds -- the SDK keeps retrying and gets in after them', async () => {
  await withEmulator({}, async (emu) => {
    const { device, events } = await answeringDevice(emu);
    try {
      await addFault(emu, { fault: 'refuseConnect', deviceId: 'device1', seconds: 3, connack: 3 });
      const t = Date.now();
      await addFault(emu, { fault: 'drop', deviceId: 'device1', abrupt: false });
      await events.waitConnects(2);
      assert.ok(Date.now() - t >= 2900, `reconnected after ${Date.now() - t} ms`);
      assert.match(emu.log, /refused \(CONNACK 3\)/);
      assert.deepEqual(await callM(emu, 3), { status: 200, payload: { answered: 3 } });
    } finally {
      await device.close();
    }
  });
});

test('control API: refuseConnect 5 -- open() fails as not authorized; clearing the fault lets it in', async () => {
  await withEmulator({}, async (emu) => {
    const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
    device.setRetryPolicy(new NoRetry());
    await addFault(emu, { fault: 'refuseConnect', deviceId: 'device1', seconds: 60, connack: 5 });
    const listed = await control(emu, 'GET', '/emulator/faults');
    assert.deepEqual(listed.body.faults.map((f) => [f.fault, f.connack]), [['refuseConnect', 5]]);
    await assert.rejects(device.open(), (err) => /Not authorized/.test(err.message));
    assert.deepEqual((await control(emu, 'DELETE', '/emulator/faults')).body, { cleared: 1 });
    assert.deepEqual((await control(emu, 'GET', '/emulator/faults')).body.faults, []);
    await device.open();
    await device.close();
  });
});

test('control API: methodReplies delayMs slows the answer; blackhole makes the service SDK time out (504)',
  async () => {
    await withEmulator({}, async (emu) => {
      const { device } = await answeringDevice(emu);
      try {
        await addFault(emu, { fault: 'methodReplies', deviceId: 'device1', seconds: 60, delayMs: 1500 });
        let t = Date.now();
        assert.deepEqual(await callM(emu, 'slow'), { status: 200, payload: { answered: 'slow' } });
        assert.ok(Date.now() - t >= 1400, `answered after ${Date.now() - t} ms`);
        await control(emu, 'DELETE', '/emulator/faults');
        await addFault(emu, { fault: 'methodReplies', deviceId: 'device1', seconds: 60, blackhole: true });
        t = Date.now();
        await assert.rejects(callM(emu, 'lost', { responseTimeoutInSeconds: 5 }), (err) => {
          assert.equal(err.constructor.name, 'GatewayTimeoutError');
          assert.equal(JSON.parse(JSON.parse(err.responseBody).Message).errorCode, 504101);
          return true;
        });
        assert.ok(Date.now() - t >= 4900);
      } finally {
        await device.close();
      }
    });
  });

test('control API: rest faults -- the service SDK gets 503/500/429 in the hub\'s envelopes with Retry-After',
  async () => {
    await withEmulator({}, async (emu) => {
      const registry = Registry.fromConnectionString(emu.serviceConnectionString());
      await addFault(emu, { fault: 'rest', route: '/devices/*', count: 2, status: 503, retryAfter: 4 });
      for (let i = 0; i < 2; i++) {
        await assert.rejects(registry.get('device1'), (err) => {
          assert.equal(err.constructor.name, 'ServiceUnavailableError');
          assert.equal(err.response.statusCode, 503);
          assert.equal(err.response.headers['retry-after'], '4');
          assert.match(JSON.parse(err.responseBody).Message, /^ErrorCode:ServiceUnavailable;/);
          return true;
        });
      }
      assert.equal((await registry.get('device1')).responseBody.deviceId, 'device1');
      await addFault(emu, { fault: 'rest', method: 'GET', count: 1, status: 500 });
      await assert.rejects(registry.get('device1'), (err) => err.constructor.name === 'InternalServerError' &&
        err.response.headers['retry-after'] === undefined);
      await addFault(emu, { fault: 'rest', count: 1, status: 429, retryAfter: 2 });
      await assert.rejects(registry.get('device1'), (err) => err.constructor.name === 'ThrottlingError' &&
        err.response.headers['retry-after'] === '2' && /ErrorCode:ThrottlingException;/.test(err.responseBody));
      assert.equal((await registry.get('device1')).responseBody.deviceId, 'device1');
    });
  });

test('control API: expireToken closes the connection; the SDK cannot come back with that token, a new one can',
  async () => {
    await withEmulator({}, async (emu) => {
      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
      device.setRetryPolicy(new NoRetry());
      device.on('error', () => {});
      const disconnected = new Promise((resolve) => device.on('disconnect', resolve));
      await device.open();
      await addFault(emu, { fault: 'expireToken', deviceId: 'device1' });
      await disconnected;
      assert.match(emu.log, /SAS token expired \(fault injection\)/);
      await assert.rejects(device.open(), (err) => /Not authorized/.test(err.message));
      await device.close();
      await sleep(1100); // a token made now expires later than the expired one (whole seconds)
      const fresh = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
      await fresh.open();
      await fresh.close();
    });
  });

// ---- throttling ----

test('--throttle s1: the 101st identity-registry call in a minute is 429 ThrottlingException; after Retry-After it works',
  async () => {
    await withEmulator({ extraArgs: ['--throttle', 's1'] }, async (emu) => {
      const registry = Registry.fromConnectionString(emu.serviceConnectionString());
      for (let i = 0; i < 100; i++) await registry.get('device1');
      let retryAfter = 0;
      await assert.rejects(registry.get('device1'), (err) => {
        assert.equal(err.constructor.name, 'ThrottlingError');
        assert.equal(err.response.statusCode, 429);
        assert.match(JSON.parse(err.responseBody).Message, /^ErrorCode:ThrottlingException;/);
        retryAfter = Number(err.response.headers['retry-after']);
        return true;
      });
      assert.ok(retryAfter >= 1);
      await sleep(retryAfter * 1000);
      assert.equal((await registry.get('device1')).responseBody.deviceId, 'device1');
    });
  });
