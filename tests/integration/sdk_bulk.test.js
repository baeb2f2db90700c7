// sdk_bulk.test.js -- the bulk registry operation (POST /devices) through the official, unmodified Node
// azure-iothub Registry: addDevices, updateDevices (forced and with etags), removeDevices, 100 devices per
// request, per-item errors beside applied items (HTTP 400 with the BulkRegistryOperationResult), a bulk-created
// device connecting, a bulk-disabled device disconnected, and bulk changes surviving a kill -9.
// Run through run_node_test.py (fixed ports 443/8883).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Registry } = require('azure-iothub');
const { NoRetry } = require('azure-iot-common');
const { Emulator, withEmulator, randomId } = require('./lib/emulator');

function ids(prefix, n) {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`);
}

async function bulkError(promise) {
  try {
    await promise;
  } catch (err) {
    return { err, result: JSON.parse(err.responseBody) };
  }
  assert.fail('the bulk request succeeded but an error was expected');
}

test('addDevices, updateDevices, removeDevices: 100 per request, one answer each', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const names = ids(randomId('bulk'), 100);
    const { responseBody: added, httpResponse } = await registry.addDevices(names.map((deviceId) => ({ deviceId })));
    assert.equal(httpResponse.statusCode, 200);
    assert.deepEqual(added, { isSuccessful: true, errors: [], warnings: [] });
    const { responseBody: list } = await registry.list();
    assert.equal(list.length, 101); // with device1
    const { responseBody: one } = await registry.get(names[42]);
    assert.equal(one.authentication.symmetricKey.primaryKey.length, 44); // generated keys

    // Forced update: status for all; then with etags (each device's own, as registry.get returns it).
    const { responseBody: upd } = await registry.updateDevices(
      names.map((deviceId) => ({ deviceId, status: 'disabled', statusReason: 'maintenance' })), true);
    assert.equal(upd.isSuccessful, true);
    const { responseBody: got } = await registry.get(names[0]);
    assert.equal(got.status, 'disabled');
    assert.equal(got.statusReason, 'maintenance');
    assert.equal(got.etag, 'MQ==');
    const { responseBody: upd2 } = await registry.updateDevices([{ ...got, status: 'enabled' }], false);
    assert.equal(upd2.isSuccessful, true);
    assert.equal((await registry.get(names[0])).responseBody.status, 'enabled');

    const { responseBody: removed } = await registry.removeDevices(names.map((deviceId) => ({ deviceId })), true);
    assert.equal(removed.isSuccessful, true);
    assert.equal((await registry.list()).responseBody.length, 1);
  });
});

test('per-item errors: the others are applied, the answer is 400 with the errors', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const { responseBody: existing } = await registry.create({ deviceId: 'already' });
    const { result, err } = await bulkError(registry.addDevices([{ deviceId: 'already' }, { deviceId: 'new-one' }]));
    assert.equal(err.response.statusCode, 400);
    assert.equal(result.isSuccessful, false);
    assert.equal(result.errors.length, 1);
    assert.equal(result.errors[0].deviceId, 'already');
    assert.equal(result.errors[0].errorCode, 'DeviceAlreadyExists');
    assert.equal((await registry.get('new-one')).responseBody.status, 'enabled');
    assert.equal((await registry.get('already')).responseBody.generationId, existing.generationId);

    // A stale etag (updateDevices without force) and a missing device (removeDevices).
    const stale = { ...existing, status: 'disabled' };
    await registry.update({ deviceId: 'already', status: 'enabled', etag: existing.etag });
    const { result: r2 } = await bulkError(registry.updateDevices([stale], false));
    assert.equal(r2.errors[0].errorCode, 'PreconditionFailed');
    assert.equal((await registry.get('already')).responseBody.status, 'enabled');
    const { result: r3 } = await bulkError(registry.removeDevices([{ deviceId: 'nobody' }, { deviceId: 'new-one' }], true));
    assert.deepEqual(r3.errors.map((e) => [e.deviceId, e.errorCode]), [['nobody', 'DeviceNotFound']]);
    await assert.rejects(registry.get('new-one'), (e) => e.constructor.name === 'DeviceNotFoundError');
  });
});

test('a request refused as a whole changes nothing', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    // The same id twice: the hub refuses the request (the SDK does not check this itself).
    const { err } = await bulkError(registry.addDevices([{ deviceId: 'twice' }, { deviceId: 'other' }, { deviceId: 'twice' }]));
    assert.equal(err.response.statusCode, 400);
    assert.match(JSON.parse(err.responseBody).Message, /ArgumentInvalid;.*more than once/);
    assert.equal((await registry.list()).responseBody.length, 1);
  });
});

test('bulk-created devices connect; a bulk-disabled device is disconnected; kill -9 keeps bulk changes', async () => {
  const emu = new Emulator();
  await emu.start();
  let dev;
  try {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    await registry.addDevices([{ deviceId: 'bulk-dev' }, { deviceId: 'bulk-other' }]);
    const { responseBody: d } = await registry.get('bulk-dev');
    dev = DeviceClient.fromConnectionString(
      emu.deviceConnectionString('bulk-dev', d.authentication.symmetricKey.primaryKey), Mqtt);
    dev.setRetryPolicy(new NoRetry()); // so the hub's disconnect surfaces as 'disconnect'
    await dev.open();
    const disconnected = new Promise((resolve) => dev.on('disconnect', resolve));
    await registry.updateDevices([{ deviceId: 'bulk-dev', status: 'disabled' }], true);
    await disconnected;
    await registry.removeDevices([{ deviceId: 'bulk-other' }], true);
    await emu.stop('SIGKILL');
    await emu.start({ freshRegistry: false });
    const { responseBody: list } = await registry.list();
    assert.deepEqual(list.map((x) => [x.deviceId, x.status]).sort(), [['bulk-dev', 'disabled'], ['device1', 'enabled']]);
  } catch (err) {
    emu.dumpLog();
    throw err;
  } finally {
    if (dev) await dev.close().catch(() => {});
    await emu.stop();
  }
});
