// sdk_amqp_devices.test.js -- devices and modules over AMQP (issue 22) with the official, unmodified Node device
// SDK (azure-iot-device-amqp: Amqp on 5671, AmqpWs on wss://host:443/$iothub/websocket; CBS put-token with the
// device's SAS token): the tutorial's direct method answered (azure-iothub Client.invokeDeviceMethod), telemetry
// read back through the Event Hub-compatible endpoint (@azure/event-hubs), C2D with complete / reject / abandon
// and the feedback each produces, twin GET / reported / desired push; then (Amqp) a module, token renewal over
// CBS without dropping the links, and takeover between an MQTT and an AMQP connection of the same identity.
// Run through run_node_test.py (fixed ports 443/5671/8883 in its own network namespace).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: DeviceClient, ModuleClient, Message, SharedAccessKeyAuthenticationProvider } =
  require('azure-iot-device');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient, Registry, Amqp: ServiceAmqp } = require('azure-iothub');
const { Message: ServiceMessage, NoRetry } = require('azure-iot-common');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const { withEmulator, randomId, OWNER_KEY, HOST } = require('./lib/emulator');

const HUB = 'iothub'; // the default --hub-name when --hostname is localhost
const EH_TLS = `Endpoint=sb://${HOST}/;SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY};EntityPath=${HUB}`;
const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };

function invoke(emu, deviceId, moduleId) {
  const service = ServiceClient.fromConnectionString(emu.serviceConnectionString());
  const params = { methodName: 'DeviceMethod', payload: { method_number: '42' }, responseTimeoutInSeconds: 30,
    connectTimeoutInSeconds: 20 };
  return moduleId ? service.invokeDeviceMethod(deviceId, moduleId, params) : service.invokeDeviceMethod(deviceId, params);
}

function answer(client, seen) {
  (client.onDeviceMethod ? client.onDeviceMethod : client.onMethod).call(client, 'DeviceMethod', (request, response) => {
    seen.push(request.payload);
    response.send(200, TUTORIAL_RESPONSE, () => {});
  });
}

async function createDevice(emu, deviceId) {
  const registry = Registry.fromConnectionString(emu.serviceConnectionString());
  await registry.create({ deviceId });
  const { responseBody } = await registry.get(deviceId);
  return `HostName=${HOST};DeviceId=${deviceId};SharedAccessKey=${responseBody.authentication.symmetricKey.primaryKey}`;
}

// Events from the Event Hub-compatible endpoint until until(events) holds (rejects after 20 s).
function collect(until) {
  const client = new EventHubConsumerClient('$Default', EH_TLS);
  return new Promise((resolve, reject) => {
    const events = [];
    let sub;
    const timer = setTimeout(() => {
      sub.close().then(() => client.close());
      reject(new Error(`timed out with ${events.length} events`));
    }, 20000);
    sub = client.subscribe({
      processEvents: async (batch) => {
        events.push(...batch);
        if (until(events)) {
          clearTimeout(timer);
          await sub.close();
          await client.close();
          resolve(events);
        }
      },
      processError: async () => {},
    }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  });
}

function waitFor(pred, what, ms = 20000) {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      if (pred()) return resolve();
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

for (const [name, Transport] of [['Amqp', Amqp], ['AmqpWs', AmqpWs]]) {
  test(`${name}: the tutorial call is answered and telemetry is read back from the Event Hub endpoint`, async () => {
    await withEmulator({}, async (emu) => {
      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
      const seen = [];
      answer(device, seen);
      await device.open();
      try {
        const { result } = await invoke(emu, 'device1');
        assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
        assert.deepEqual(seen, [{ method_number: '42' }]);

        const msg = new Message(JSON.stringify({ temperature: 21.5 }));
        msg.messageId = `t-${name}`;
        msg.properties.add('alert', 'high');
        msg.contentType = 'application/json';
        await device.sendEvent(msg);
        const events = await collect((evs) => evs.some((e) => e.messageId === `t-${name}`));
        const ev = events.find((e) => e.messageId === `t-${name}`);
        assert.deepEqual(ev.body, { temperature: 21.5 });
        assert.equal(ev.properties.alert, 'high');
        assert.equal(ev.systemProperties['iothub-connection-device-id'], 'device1');
      } finally {
        await device.close();
      }
    });
  });

  test(`${name}: C2D complete, reject and abandon, with the feedback each produces`, async () => {
    await withEmulator({}, async (emu) => {
      const deviceId = randomId('c2d');
      const cs = await createDevice(emu, deviceId);
      const service = ServiceClient.fromConnectionString(emu.serviceConnectionString(), ServiceAmqp);
      await service.open();
      const device = DeviceClient.fromConnectionString(cs, Transport);
      const got = [];
      device.on('message', (m) => {
        const body = m.data.toString();
        got.push(body);
        const settle = body === 'complete-me' ? device.complete
          : body === 'reject-me' ? device.reject
            : got.filter((b) => b === 'abandon-me').length === 1 ? device.abandon : device.complete;
        settle.call(device, m, () => {});
      });
      await device.open();
      try {
        const receiver = await new Promise((resolve, reject) =>
          service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r))));
        const records = [];
        receiver.on('message', (fb) => {
          records.push(...JSON.parse(fb.data.toString()));
          receiver.complete(fb, () => {});
        });
        for (const body of ['complete-me', 'reject-me', 'abandon-me']) {
          const m = new ServiceMessage(body);
          m.messageId = body;
          m.ack = 'full';
          m.properties.add('kind', body);
          await service.send(deviceId, m);
        }
        await waitFor(() => records.length >= 3, 'three feedback records');
        const status = Object.fromEntries(records.map((r) => [r.originalMessageId, r.statusCode]));
        assert.deepEqual(status, { 'complete-me': 'Success', 'reject-me': 'Rejected', 'abandon-me': 'Success' });
        // The abandoned message came back once and was completed the second time.
        assert.deepEqual(got, ['complete-me', 'reject-me', 'abandon-me', 'abandon-me']);
      } finally {
        await device.close();
        await service.close();
      }
    });
  });

  test(`${name}: twin GET, reported PATCH and a desired-properties push`, async () => {
    await withEmulator({}, async (emu) => {
      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
      await device.open();
      try {
        const twin = await device.getTwin();
        assert.equal(typeof twin.properties.reported.$version, 'number');
        const before = twin.properties.reported.$version;
        await new Promise((resolve, reject) =>
          twin.properties.reported.update({ firmware: '2.0', nested: { a: 1 } }, (e) => (e ? reject(e) : resolve())));
        const registry = Registry.fromConnectionString(emu.serviceConnectionString());
        const { responseBody: st } = await registry.getTwin('device1');
        assert.equal(st.properties.reported.firmware, '2.0');
        assert.ok(st.properties.reported.$version > before);

        const pushed = new Promise((resolve) => twin.on('properties.desired.color', (v) => resolve(v)));
        await registry.updateTwin('device1', { properties: { desired: { color: 'blue' } } }, '*');
        assert.equal(await pushed, 'blue');
        assert.equal(twin.properties.desired.color, 'blue');
      } finally {
        await device.close();
      }
    });
  });
}

test('Amqp: a module answers its method call and sends telemetry', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const moduleId = randomId('mod');
    await registry.addModule({ deviceId: 'device1', moduleId });
    const { responseBody } = await registry.getModule('device1', moduleId);
    const cs = `HostName=${HOST};DeviceId=device1;ModuleId=${moduleId};` +
      `SharedAccessKey=${responseBody.authentication.symmetricKey.primaryKey}`;
    const mod = ModuleClient.fromConnectionString(cs, Amqp);
    const seen = [];
    answer(mod, seen);
    await mod.open();
    try {
      const { result } = await invoke(emu, 'device1', moduleId);
      assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
      const m = new Message('from the module');
      m.messageId = `mod-${moduleId}`;
      await mod.sendEvent(m);
      const events = await collect((evs) => evs.some((e) => e.messageId === `mod-${moduleId}`));
      const ev = events.find((e) => e.messageId === `mod-${moduleId}`);
      assert.equal(ev.systemProperties['iothub-connection-module-id'], moduleId);
      const twin = await mod.getTwin();
      assert.equal(typeof twin.properties.reported.$version, 'number');
    } finally {
      await mod.close();
    }
  });
});

test('Amqp: a 6-second token is renewed over CBS and the links stay up', async () => {
  await withEmulator({}, async (emu) => {
    const provider = SharedAccessKeyAuthenticationProvider.fromConnectionString(emu.deviceConnectionString(), 6, 3);
    const device = DeviceClient.fromAuthenticationProvider(provider, Amqp);
    let disconnects = 0;
    device.on('disconnect', () => { disconnects++; });
    const seen = [];
    answer(device, seen);
    await device.open();
    try {
      await invoke(emu, 'device1');
      // Past two token lifetimes: without renewal the emulator closes the identity's links at expiry.
      await waitFor(() => (emu.log.match(/device1: SAS token renewed over \$cbs/g) || []).length >= 3,
        'three renewals', 30000);
      const { result } = await invoke(emu, 'device1');
      assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
      assert.equal(disconnects, 0);
      assert.doesNotMatch(emu.log, /device1: SAS token expired/);
    } finally {
      await device.close();
    }
  });
});

test('takeover: an AMQP connection takes over from MQTT, and MQTT back from AMQP', async () => {
  await withEmulator({}, async (emu) => {
    // Registering a method handler connects the client (the SDK enables methods at once), so each client is
    // made when it is its turn; NoRetry so a takeover surfaces as 'disconnect' (no ping-pong of reconnects).
    const open = async (Transport, seen, down) => {
      const client = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
      client.setRetryPolicy(new NoRetry());
      client.on('disconnect', () => { down.n++; });
      answer(client, seen);
      await client.open();
      return client;
    };
    const seenMqtt = [], seenAmqp = [], seenMqtt2 = [];
    const mqttDown = { n: 0 }, amqpDown = { n: 0 }, mqtt2Down = { n: 0 };
    const mqtt = await open(Mqtt, seenMqtt, mqttDown);
    let amqp;
    let mqtt2;
    try {
      await invoke(emu, 'device1');
      assert.equal(seenMqtt.length, 1);
      amqp = await open(Amqp, seenAmqp, amqpDown);
      await waitFor(() => mqttDown.n > 0, 'the MQTT client to be disconnected');
      await invoke(emu, 'device1');
      assert.equal(seenAmqp.length, 1);
      assert.equal(seenMqtt.length, 1);
      mqtt2 = await open(Mqtt, seenMqtt2, mqtt2Down);
      // The emulator detaches every link, ends the sessions and closes the connection (amqp:connection:forced)
      // in one flush: the SDK would otherwise wait for detach replies that cannot come on a closed connection
      // until its own 45-second force timer (azure-iot-amqp-base amqp.js, rerunWithForceTimer).
      const kicked = Date.now();
      await waitFor(() => amqpDown.n > 0, 'the AMQP client to be disconnected');
      assert.ok(Date.now() - kicked < 10000, `'disconnect' took ${Date.now() - kicked} ms`);
      await invoke(emu, 'device1');
      assert.equal(seenMqtt2.length, 1);
      assert.equal(seenAmqp.length, 1);
      assert.equal(mqtt2Down.n, 0);
      assert.match(emu.log, /device1: closing its AMQP links: a new connection of the same identity took over/);
    } finally {
      for (const c of [mqtt2, amqp, mqtt]) if (c) await c.close().catch(() => {});
    }
  });
});
