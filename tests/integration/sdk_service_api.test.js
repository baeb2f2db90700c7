// sdk_service_api.test.js -- the emulator's service side against the official, unmodified Node SDKs:
// azure-iothub (Client.invokeDeviceMethod, Registry) as the caller and azure-iot-device + azure-iot-device-mqtt
// as the device. The tutorial flow, modules, every error the hub returns, concurrency, large payloads, and a
// registry that survives a restart and a kill -9. Run through run_node_test.py (fixed ports 443/8883).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: DeviceClient, ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient, Registry } = require('azure-iothub');
const { answerMethods, invoke } = require('./lib/sdk');
const { Emulator, withEmulator, randomId } = require('./lib/emulator');

const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };

// A device (or module) that answers `methodName` with handler(request) -> [status, payload].
function startDevice(connectionString, methodName, handler, { module = false } = {}) {
  const Ctor = module ? ModuleClient : DeviceClient;
  return answerMethods(Ctor.fromConnectionString(connectionString, Mqtt), methodName, handler, { module });
}

async function invokeError(emu, deviceId, params) {
  try {
    await invoke(emu, deviceId, params);
  } catch (err) {
    return err;
  }
  assert.fail('the call succeeded but an error was expected');
}

function hubErrorCode(err) {
  const body = JSON.parse(err.responseBody);
  const inner = JSON.parse(body.Message);
  return inner.errorCode;
}

test('the tutorial call: DeviceMethod with {"method_number":"42"} answered 200', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu.deviceConnectionString(), 'DeviceMethod', () => [200, TUTORIAL_RESPONSE]);
    try {
      const { result } = await invoke(emu, 'device1', {
        methodName: 'DeviceMethod', payload: { method_number: '42' }, responseTimeoutInSeconds: 60,
        connectTimeoutInSeconds: 30, // waits for the lazy method subscription instead of sleeping
      });
      assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
      assert.equal(dev.calls.length, 1);
      assert.deepEqual(dev.calls[0].payload, { method_number: '42' });
      assert.equal(dev.calls[0].methodName, 'DeviceMethod');
    } finally {
      await dev.client.close();
    }
  });
});

test('module methods reach the module identity', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const { responseBody: mod } = await registry.addModule({ deviceId: 'device1', moduleId: 'filter' });
    const cs = emu.deviceConnectionString('device1', mod.authentication.symmetricKey.primaryKey, 'filter');
    const dev = await startDevice(cs, 'Reset', (req) => [201, { echo: req.payload }], { module: true });
    try {
      const { result } = await invoke(emu, 'device1',
        { methodName: 'Reset', payload: 7, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 30 }, 'filter');
      assert.deepEqual(result, { status: 201, payload: { echo: 7 } });
    } finally {
      await dev.client.close();
    }
  });
});

test('a null payload reaches the device as an empty body, which the Node SDK answers with 400 (as on a real hub)', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu.deviceConnectionString(), 'DeviceMethod', () => [200, TUTORIAL_RESPONSE]);
    try {
      const { result } = await invoke(emu, 'device1',
        { methodName: 'DeviceMethod', payload: null, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 30 });
      assert.equal(result.status, 400);
      assert.match(result.payload, /^Invalid request format/);
      assert.equal(dev.calls.length, 0); // the SDK answered before the application's handler ran
    } finally {
      await dev.client.close();
    }
  });
});

test('offline device: 404 DeviceNotOnline (404103)', async () => {
  await withEmulator({}, async (emu) => {
    const err = await invokeError(emu, 'device1', { methodName: 'DeviceMethod', payload: null });
    assert.equal(err.response.statusCode, 404);
    assert.equal(err.response.headers['iothub-errorcode'], 'DeviceNotOnline');
    assert.equal(hubErrorCode(err), 404103);
  });
});

test('connected but not subscribed to methods: 404103', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu.deviceConnectionString(), null);
    try {
      const err = await invokeError(emu, 'device1', { methodName: 'DeviceMethod' });
      assert.equal(hubErrorCode(err), 404103);
    } finally {
      await dev.client.close();
    }
  });
});

test('unknown device: 404 DeviceNotFound', async () => {
  await withEmulator({}, async (emu) => {
    const err = await invokeError(emu, 'nobody', { methodName: 'DeviceMethod' });
    assert.equal(err.response.statusCode, 404);
    assert.equal(err.constructor.name, 'DeviceNotFoundError');
  });
});

test('device that never answers: 504 GatewayTimeout (504101)', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu.deviceConnectionString(), 'Slow', () => null);
    try {
      const err = await invokeError(emu, 'device1',
        { methodName: 'Slow', payload: {}, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 30 });
      assert.equal(err.response.statusCode, 504);
      assert.equal(err.constructor.name, 'GatewayTimeoutError');
      assert.equal(hubErrorCode(err), 504101);
      assert.equal(dev.calls.length, 1);
    } finally {
      await dev.client.close();
    }
  });
});

test('responseTimeoutInSeconds out of range: 400 with the hub message', async () => {
  await withEmulator({}, async (emu) => {
    const err = await invokeError(emu, 'device1', { methodName: 'DeviceMethod', responseTimeoutInSeconds: 3 });
    assert.equal(err.response.statusCode, 400);
    assert.equal(err.constructor.name, 'ArgumentError');
    const inner = JSON.parse(JSON.parse(err.responseBody).Message);
    assert.equal(inner.errorCode, 400004);
    assert.equal(inner.message, 'responseTimeoutInSeconds must be within [5; 300].');
  });
});

test('wrong service key: 401 Unauthorized', async () => {
  await withEmulator({}, async (emu) => {
    const cs = 'HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
    const service = ServiceClient.fromConnectionString(cs);
    await assert.rejects(service.invokeDeviceMethod('device1', { methodName: 'DeviceMethod' }),
      (err) => err.response.statusCode === 401 && err.constructor.name === 'UnauthorizedError');
  });
});

test('connectTimeoutInSeconds waits for a device that connects late', async () => {
  await withEmulator({}, async (emu) => {
    const pending = invoke(emu, 'device1',
      { methodName: 'DeviceMethod', payload: { late: true }, responseTimeoutInSeconds: 30, connectTimeoutInSeconds: 60 });
    const dev = await startDevice(emu.deviceConnectionString(), 'DeviceMethod', () => [200, TUTORIAL_RESPONSE]);
    try {
      const { result } = await pending;
      assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
    } finally {
      await dev.client.close();
    }
  });
});

test('50 concurrent calls to one device all get their own answer', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu.deviceConnectionString(), 'Echo', (req) => [200, { n: req.payload.n }]);
    try {
      const calls = [];
      for (let n = 0; n < 50; n++) {
        calls.push(invoke(emu, 'device1',
          { methodName: 'Echo', payload: { n }, responseTimeoutInSeconds: 30, connectTimeoutInSeconds: 30 }));
      }
      const results = await Promise.all(calls);
      results.forEach(({ result }, n) => assert.deepEqual(result, { status: 200, payload: { n } }));
      assert.equal(dev.calls.length, 50);
    } finally {
      await dev.client.close();
    }
  });
});

test('100 KiB payloads both ways', async () => {
  await withEmulator({}, async (emu) => {
    const big = 'x'.repeat(100 * 1024);
    const dev = await startDevice(emu.deviceConnectionString(), 'Big', (req) => [200, { back: req.payload.data }]);
    try {
      const { result } = await invoke(emu, 'device1',
        { methodName: 'Big', payload: { data: big }, responseTimeoutInSeconds: 30, connectTimeoutInSeconds: 30 });
      assert.equal(result.status, 200);
      assert.equal(result.payload.back, big);
    } finally {
      await dev.client.close();
    }
  });
});

test('registry: create, get, list, update with etag, delete', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const id = randomId('reg');
    const { responseBody: created } = await registry.create({ deviceId: id });
    assert.equal(created.deviceId, id);
    assert.equal(Buffer.from(created.authentication.symmetricKey.primaryKey, 'base64').length, 32);
    assert.equal(created.connectionState, 'Disconnected');
    await assert.rejects(registry.create({ deviceId: id }), (err) => err.constructor.name === 'DeviceAlreadyExistsError');
    const { responseBody: got } = await registry.get(id);
    assert.equal(got.etag, created.etag);
    const { responseBody: list } = await registry.list();
    assert.deepEqual(list.map((d) => d.deviceId).sort(), ['device1', id].sort());
    const { responseBody: updated } = await registry.update({ deviceId: id, status: 'disabled', etag: got.etag });
    assert.equal(updated.status, 'disabled');
    assert.notEqual(updated.etag, got.etag);
    await registry.delete(id);
    await assert.rejects(registry.get(id), (err) => err.constructor.name === 'DeviceNotFoundError');
  });
});

test('registry survives a restart and a kill -9', async () => {
  const emu = new Emulator();
  await emu.start();
  try {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const { responseBody: a } = await registry.create({ deviceId: 'persist-a' });
    await emu.stop('SIGTERM');
    await emu.start({ freshRegistry: false });
    const { responseBody: a2 } = await registry.get('persist-a');
    assert.equal(a2.authentication.symmetricKey.primaryKey, a.authentication.symmetricKey.primaryKey);
    await registry.create({ deviceId: 'persist-b' });
    await emu.stop('SIGKILL');
    await emu.start({ freshRegistry: false });
    const { responseBody: list } = await registry.list();
    assert.deepEqual(list.map((d) => d.deviceId).sort(), ['device1', 'persist-a', 'persist-b']);
    // The restored device still authenticates with its key.
    const dev = await startDevice(emu.deviceConnectionString('persist-a', a.authentication.symmetricKey.primaryKey),
      'DeviceMethod', () => [200, TUTORIAL_RESPONSE]);
    const { result } = await invoke(emu, 'persist-a',
      { methodName: 'DeviceMethod', payload: {}, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 30 });
    assert.equal(result.status, 200);
    await dev.client.close();
  } catch (err) {
    emu.dumpLog();
    throw err;
  } finally {
    await emu.stop();
  }
});
