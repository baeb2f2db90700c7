// sdk_twins.test.js -- device twins against the official, unmodified Node SDKs: azure-iothub (Registry.getTwin,
// Twin.update, Registry.updateTwin with etags, module twins, createQuery + nextAsTwin paging, statistics) as the
// back end and azure-iot-device + azure-iot-device-mqtt (getTwin, properties.desired events, reported updates)
// as the device, over MQTT and MQTT over WebSocket; twins surviving a restart and a kill -9. Run through
// run_node_test.py (fixed ports 443/8883).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Client: DeviceClient, ModuleClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Registry } = require('azure-iothub');
const { Emulator, withEmulator } = require('./lib/emulator');

function health(emu) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: emu.httpPort, path: '/health' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject);
  });
}

// Waits until the emulator counts `n` connections subscribed to desired patches (the SDK subscribes
// asynchronously after a 'properties.desired' listener is added, and tells nobody when it is done).
async function desiredListeners(emu, n) {
  for (let i = 0; i < 500; i++) {
    if ((await health(emu)).desiredListeners >= n) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never saw ${n} desired listener(s)`);
}

// Resolves with the next desired patch that satisfies pred.
function nextDesired(twin, pred) {
  return new Promise((resolve) => {
    const on = (patch) => {
      if (pred(patch)) {
        twin.removeListener('properties.desired', on);
        resolve(patch);
      }
    };
    twin.on('properties.desired', on);
  });
}

for (const [name, Transport] of [['MQTT', Mqtt], ['MQTT over WebSocket', MqttWs]]) {
  test(`${name}: a desired change from Registry/Twin.update reaches the device with its $version`, async () => {
    await withEmulator({}, async (emu) => {
      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
      await device.open();
      try {
        const dtwin = await device.getTwin();
        assert.equal(dtwin.properties.desired.$version, 1);
        const first = nextDesired(dtwin, () => true); // fired at once with the current desired properties
        await first;
        await desiredListeners(emu, 1);
        const registry = Registry.fromConnectionString(emu.serviceConnectionString());
        const { responseBody: stwin } = await registry.getTwin('device1');
        assert.equal(stwin.deviceId, 'device1');
        const pushed = nextDesired(dtwin, (p) => p.telemetryInterval !== undefined);
        await stwin.update({ tags: { site: 'lab' }, properties: { desired: { telemetryInterval: 30 } } });
        const patch = await pushed;
        assert.equal(patch.telemetryInterval, 30);
        assert.equal(patch.$version, stwin.properties.desired.$version);
        assert.equal(patch.$version, 2);
        assert.equal(stwin.tags.site, 'lab');
        // The device's own view (twin GET) has the same desired version; it reports back.
        await new Promise((resolve, reject) => dtwin.properties.reported.update({ telemetryInterval: 30 },
          (err) => (err ? reject(err) : resolve())));
        const { responseBody: after } = await registry.getTwin('device1');
        assert.equal(after.properties.reported.telemetryInterval, 30);
        assert.equal(after.properties.desired.telemetryInterval, 30);
        assert.ok(after.properties.desired.$metadata.telemetryInterval.$lastUpdated);
        assert.equal(after.properties.desired.$metadata.telemetryInterval.$lastUpdatedVersion, 2);
        // null deletes
        const deleted = nextDesired(dtwin, (p) => p.telemetryInterval === null);
        await registry.updateTwin('device1', { properties: { desired: { telemetryInterval: null } } }, '*');
        assert.equal((await deleted).$version, 3);
        const again = await device.getTwin();
        assert.equal(again.properties.desired.$version, 3);
      } finally {
        await device.close();
      }
    });
  });
}

test('Registry.updateTwin with the current etag succeeds and with a stale one is refused (412)', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const { responseBody: t0 } = await registry.getTwin('device1');
    const { responseBody: t1 } = await registry.updateTwin('device1', { tags: { a: 1 } }, t0.etag);
    assert.notEqual(t1.etag, t0.etag);
    assert.equal(t1.tags.a, 1);
    await assert.rejects(registry.updateTwin('device1', { tags: { a: 2 } }, t0.etag),
      (err) => err.constructor.name === 'InvalidEtagError' && err.response.statusCode === 412);
    const { responseBody: t2 } = await registry.getTwin('device1');
    assert.equal(t2.tags.a, 1);
    // Reported properties are the device's: a service update leaves them alone (a whole twin can be sent back).
    const { responseBody: t3 } = await registry.updateTwin('device1', { properties: { reported: { x: 1 } } }, '*');
    assert.equal(t3.properties.reported.x, undefined);
    // A key the hub refuses, and tags over 8 KiB.
    await assert.rejects(registry.updateTwin('device1', { tags: { 'a.b': 1 } }, '*'),
      (err) => err.response.statusCode === 400);
    await assert.rejects(registry.updateTwin('device1', { tags: { big: 'x'.repeat(4000), big2: 'y'.repeat(4000), big3: 'z'.repeat(1000) } }, '*'),
      (err) => err.response.statusCode === 403 && err.response.headers['iothub-errorcode'] === 'DeviceModelMaxPropertiesExceeded');
    await assert.rejects(registry.getTwin('ghost'), (err) => err.constructor.name === 'DeviceNotFoundError');
    const { responseBody: stats } = await registry.getRegistryStatistics();
    assert.deepEqual(stats, { totalDeviceCount: 1, enabledDeviceCount: 1, disabledDeviceCount: 0 });
  });
});

test('module twins: updateModuleTwin reaches the connected module, getModuleTwin reads it back', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const { responseBody: mod } = await registry.addModule({ deviceId: 'device1', moduleId: 'filter' });
    const cs = emu.deviceConnectionString('device1', mod.authentication.symmetricKey.primaryKey, 'filter');
    const client = ModuleClient.fromConnectionString(cs, Mqtt);
    await client.open();
    try {
      const mtwin = await client.getTwin();
      await nextDesired(mtwin, () => true);
      await desiredListeners(emu, 1);
      const pushed = nextDesired(mtwin, (p) => p.threshold !== undefined);
      const { responseBody: mt } = await registry.getModuleTwin('device1', 'filter');
      assert.equal(mt.moduleId, 'filter');
      await registry.updateModuleTwin('device1', 'filter', { properties: { desired: { threshold: 7 } } }, mt.etag);
      assert.equal((await pushed).threshold, 7);
      const { responseBody: back } = await registry.getModuleTwin('device1', 'filter');
      assert.equal(back.properties.desired.threshold, 7);
      const { responseBody: dt } = await registry.getTwin('device1');
      assert.equal(dt.properties.desired.threshold, undefined); // the device's twin is another twin
    } finally {
      await client.close();
    }
  });
});

test('createQuery(...).nextAsTwin pages over more devices than the page size, and the loop ends', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    for (let i = 0; i < 23; i++) {
      const id = `q${String(i).padStart(2, '0')}`;
      await registry.create({ deviceId: id });
      await registry.updateTwin(id, { tags: { fleet: 'paging', n: i } }, '*');
    }
    const query = registry.createQuery("SELECT * FROM devices WHERE tags.fleet = 'paging'", 10);
    const seen = [];
    let pages = 0;
    while (query.hasMoreResults) {
      const { result } = await query.nextAsTwin();
      pages++;
      assert.ok(pages <= 5, 'the query did not stop');
      for (const twin of result) seen.push(twin.deviceId);
    }
    assert.equal(pages, 3);
    assert.equal(seen.length, 23);
    assert.equal(new Set(seen).size, 23);
    const count = registry.createQuery('SELECT COUNT() AS n FROM devices WHERE tags.n >= 20');
    const { result } = await count.next();
    assert.deepEqual(result, [{ n: 3 }]);
    assert.equal(count.hasMoreResults, false);
    await assert.rejects(registry.createQuery('SELECT * FROM devices WHERE').next(),
      (err) => err.response.statusCode === 400 && /Line 1:/.test(err.responseBody));
  });
});

test('twins survive a restart and a kill -9', async () => {
  const emu = new Emulator();
  await emu.start();
  try {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    await registry.updateTwin('device1', { tags: { keep: true }, properties: { desired: { mode: 'eco' } } }, '*');
    const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
    await device.open();
    const dtwin = await device.getTwin();
    await new Promise((resolve, reject) => dtwin.properties.reported.update({ battery: 80 },
      (err) => (err ? reject(err) : resolve())));
    await device.close();
    const { responseBody: before } = await registry.getTwin('device1');
    await emu.stop('SIGTERM');
    await emu.start({ freshRegistry: false });
    const { responseBody: t1 } = await registry.getTwin('device1');
    assert.equal(t1.etag, before.etag);
    assert.equal(t1.tags.keep, true);
    assert.equal(t1.properties.desired.mode, 'eco');
    assert.equal(t1.properties.reported.battery, 80);
    await registry.updateTwin('device1', { properties: { desired: { mode: 'turbo' } } }, t1.etag);
    await emu.stop('SIGKILL');
    await emu.start({ freshRegistry: false });
    const { responseBody: t2 } = await registry.getTwin('device1');
    assert.equal(t2.properties.desired.mode, 'turbo');
    assert.equal(t2.properties.desired.$version, 3);
    const d2 = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
    await d2.open();
    const dt2 = await d2.getTwin();
    assert.equal(dt2.properties.desired.mode, 'turbo');
    assert.equal(dt2.properties.reported.battery, 80);
    await d2.close();
  } catch (err) {
    emu.dumpLog();
    throw err;
  } finally {
    await emu.stop();
  }
});
