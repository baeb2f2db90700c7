// eventhub.test.js -- the built-in Event Hub-compatible endpoint read by the official @azure/event-hubs
// EventHubConsumerClient, unmodified: hub and partition properties, subscribe from earliest and latest,
// resuming from a sequence number and an offset, two consumer groups, epoch receivers, retention, and the
// events (body, properties, systemProperties) sent by the official Node device SDK over MQTT and MQTT/WS and
// by our iothub-device. Also Microsoft's IoT Hub -> Event Hubs redirect sample flow (rhea-promise). Run
// through run_node_test.py (fixed ports 443/8883/5671/5672 inside its own network namespace).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { EventHubConsumerClient, earliestEventPosition, latestEventPosition } = require('@azure/event-hubs');
const { Client: DeviceClient, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const rhea = require('rhea-promise');
const { withEmulator, OWNER_KEY, HOST } = require('./lib/emulator');
const { runProgram } = require('./lib/run');

const HUB = 'iothub'; // the default --hub-name when --hostname is localhost
const EH_TLS = `Endpoint=sb://${HOST}/;SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY};EntityPath=${HUB}`;
const EH_DEV = `Endpoint=sb://${HOST}:5672/;SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY};` +
  `EntityPath=${HUB};UseDevelopmentEmulator=true`;

function consumer(group = '$Default', cs = EH_TLS) {
  return new EventHubConsumerClient(group, cs);
}

// Collects events from subscribe() until `until(events)` holds; resolves with them (rejects after 20 s).
function collect(client, options, until, partitionId) {
  return new Promise((resolve, reject) => {
    const events = [];
    const errors = [];
    let sub;
    const timer = setTimeout(() => {
      sub.close();
      reject(new Error(`timed out with ${events.length} events; errors: ${errors.map((e) => e.message).join('; ')}`));
    }, 20000);
    const handlers = {
      processEvents: async (batch, ctx) => {
        for (const e of batch) events.push({ ...e, partitionId: ctx.partitionId });
        if (ctx.lastEnqueuedEventProperties) events.lastEnqueued = ctx.lastEnqueuedEventProperties;
        if (until(events)) {
          clearTimeout(timer);
          await sub.close();
          resolve(events);
        }
      },
      processError: async (err) => { errors.push(err); },
    };
    const opts = { maxWaitTimeInSeconds: 1, ...options };
    sub = partitionId === undefined ? client.subscribe(handlers, opts) : client.subscribe(partitionId, handlers, opts);
  });
}

async function sendWithSdk(emu, Transport, messages) {
  const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Transport);
  await device.open();
  try {
    for (const m of messages) await device.sendEvent(m);
  } finally {
    await device.close();
  }
}

function rest(emu, method, path) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: emu.httpPort, method, path }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: body ? JSON.parse(body) : null }));
    });
    req.on('error', reject);
    req.end();
  });
}

function tagged(text, props = {}) {
  const m = new Message(JSON.stringify({ text }));
  m.messageId = `mid-${text}`;
  m.correlationId = `cid-${text}`;
  m.contentType = 'application/json';
  m.contentEncoding = 'utf-8';
  for (const [k, v] of Object.entries(props)) m.properties.add(k, v);
  return m;
}

test('hub and partition properties', async () => {
  await withEmulator({}, async () => {
    const client = consumer();
    try {
      const props = await client.getEventHubProperties();
      assert.equal(props.name, HUB);
      assert.deepEqual(props.partitionIds, ['0', '1', '2', '3']);
      assert.ok(props.createdOn instanceof Date && Math.abs(props.createdOn - Date.now()) < 60000);
      assert.deepEqual(await client.getPartitionIds(), ['0', '1', '2', '3']);
      const p0 = await client.getPartitionProperties('0');
      assert.equal(p0.partitionId, '0');
      assert.equal(p0.isEmpty, true);
      assert.equal(p0.lastEnqueuedSequenceNumber, -1);
      assert.equal(p0.beginningSequenceNumber, 0);
      await assert.rejects(client.getPartitionProperties('9'), /partition/i);
    } finally {
      await client.close();
    }
  });
});

for (const [name, Transport] of [['MQTT', Mqtt], ['MQTT over WebSocket', MqttWs]]) {
  test(`events sent by the Node device SDK over ${name} arrive with body, properties and system properties`, async () => {
    await withEmulator({}, async (emu) => {
      await sendWithSdk(emu, Transport, [tagged('a', { color: 'red', 'with space': 'x y' }), tagged('b')]);
      const client = consumer();
      try {
        const events = await collect(client, { startPosition: earliestEventPosition }, (ev) => ev.length >= 2);
        assert.equal(events.length, 2);
        const [a, b] = events;
        assert.deepEqual(a.body, { text: 'a' });
        assert.deepEqual(b.body, { text: 'b' });
        assert.deepEqual(a.properties, { color: 'red', 'with space': 'x y' });
        assert.equal(a.systemProperties['iothub-connection-device-id'], 'device1');
        assert.equal(a.systemProperties['iothub-message-source'], 'Telemetry');
        assert.match(a.systemProperties['iothub-connection-auth-method'], /"scope":"device"/);
        assert.equal(typeof a.systemProperties['iothub-enqueuedtime'], 'number');
        assert.equal(a.messageId, 'mid-a');
        assert.equal(a.correlationId, 'cid-a');
        assert.equal(a.contentType, 'application/json');
        assert.equal(a.systemProperties.contentEncoding, 'utf-8');
        assert.equal(b.sequenceNumber, a.sequenceNumber + 1);
        assert.ok(Number(b.offset) > Number(a.offset));
        assert.ok(a.enqueuedTimeUtc instanceof Date && Math.abs(a.enqueuedTimeUtc - Date.now()) < 60000);
        const part = await client.getPartitionProperties(a.partitionId);
        assert.equal(part.lastEnqueuedSequenceNumber, b.sequenceNumber);
        assert.equal(part.lastEnqueuedOffset, b.offset);
        assert.equal(part.isEmpty, false);
      } finally {
        await client.close();
      }
    });
  });
}

test('events sent by iothub-device --send-telemetry arrive (plain AMQP, UseDevelopmentEmulator)', async () => {
  await withEmulator({}, async (emu) => {
    const r = await runProgram(process.env.IOTHUB_DEVICE_BIN, ['--send-telemetry', '3', '--connection-string',
      emu.deviceConnectionString(), '--ca-file', `${process.env.IOTHUB_TEST_DATA_DIR}/ca.pem`, '--telemetry-interval', '0']);
    assert.equal(r.code, 0, r.stderr);
    const client = consumer('$Default', EH_DEV);
    try {
      const events = await collect(client, { startPosition: earliestEventPosition }, (ev) => ev.length >= 3);
      assert.equal(events.length, 3);
      for (const e of events) assert.equal(e.systemProperties['iothub-connection-device-id'], 'device1');
      assert.deepEqual(events.map((e) => e.body.messageNumber), [1, 2, 3]);
    } finally {
      await client.close();
    }
  });
});

test('a backlog of 2000 events streams completely and in order within credit', async () => {
  await withEmulator({}, async (emu) => {
    const r = await runProgram(process.env.IOTHUB_DEVICE_BIN, ['--send-telemetry', '2000', '--telemetry-interval', '0',
      '--connection-string', emu.deviceConnectionString(), '--ca-file', `${process.env.IOTHUB_TEST_DATA_DIR}/ca.pem`]);
    assert.equal(r.code, 0, r.stderr);
    const client = consumer('$Default', EH_DEV);
    try {
      const events = await collect(client, { startPosition: earliestEventPosition, maxBatchSize: 100,
        trackLastEnqueuedEventProperties: true }, (ev) => ev.length >= 2000);
      assert.equal(events.length, 2000);
      // runtime metrics: the partition's last enqueued event, as the receiver saw it
      assert.equal(events.lastEnqueued.sequenceNumber, events[1999].sequenceNumber);
      assert.equal(events.lastEnqueued.offset, events[1999].offset);
      assert.ok(events.lastEnqueued.retrievedOn instanceof Date);
      events.forEach((e, i) => {
        assert.equal(e.body.messageNumber, i + 1);
        assert.equal(e.sequenceNumber, events[0].sequenceNumber + i);
      });
    } finally {
      await client.close();
    }
  });
});

test('subscribe from latest gets only new events; resuming from a sequence number and an offset', async () => {
  await withEmulator({}, async (emu) => {
    await sendWithSdk(emu, Mqtt, [tagged('old1'), tagged('old2'), tagged('old3')]);
    const client = consumer();
    try {
      const all = await collect(client, { startPosition: earliestEventPosition }, (ev) => ev.length >= 3);
      const pid = all[0].partitionId;
      const latest = collect(client, { startPosition: latestEventPosition }, (ev) => ev.length >= 1);
      await new Promise((r) => setTimeout(r, 1500)); // let the receivers attach at @latest before sending
      await sendWithSdk(emu, Mqtt, [tagged('new')]);
      const got = await latest;
      assert.deepEqual(got.map((e) => e.body.text), ['new']);

      const afterSeq = await collect(client, { startPosition: { sequenceNumber: all[0].sequenceNumber } },
        (ev) => ev.length >= 3, pid);
      assert.deepEqual(afterSeq.map((e) => e.body.text), ['old2', 'old3', 'new']);
      const fromOffset = await collect(client, { startPosition: { offset: all[1].offset, isInclusive: true } },
        (ev) => ev.length >= 3, pid);
      assert.deepEqual(fromOffset.map((e) => e.body.text), ['old2', 'old3', 'new']);
      const afterOffset = await collect(client, { startPosition: { offset: all[1].offset } },
        (ev) => ev.length >= 2, pid);
      assert.deepEqual(afterOffset.map((e) => e.body.text), ['old3', 'new']);
      // After an enqueued time: every event enqueued strictly later (several may share a millisecond).
      const t = all[1].enqueuedTimeUtc.getTime();
      const want = [...all, got[0]].filter((e) => e.enqueuedTimeUtc.getTime() > t).map((e) => e.body.text);
      assert.ok(want.includes('new'));
      const byTime = await collect(client, { startPosition: { enqueuedOn: t } }, (ev) => ev.length >= want.length, pid);
      assert.deepEqual(byTime.map((e) => e.body.text), want);
    } finally {
      await client.close();
    }
  });
});

test('two consumer groups each receive every event', async () => {
  await withEmulator({ extraArgs: ['--consumer-group', 'flag-group'] }, async (emu) => {
    const put = await rest(emu, 'PUT', '/emulator/consumergroups/rest-group');
    assert.equal(put.status, 201);
    const list = await rest(emu, 'GET', '/emulator/consumergroups');
    assert.deepEqual(list.body, ['$Default', 'flag-group', 'rest-group']);
    await sendWithSdk(emu, Mqtt, [tagged('x'), tagged('y')]);
    const a = consumer('flag-group');
    const b = consumer('rest-group');
    const unknown = consumer('nope');
    try {
      const [ea, eb] = await Promise.all([
        collect(a, { startPosition: earliestEventPosition }, (ev) => ev.length >= 2),
        collect(b, { startPosition: earliestEventPosition }, (ev) => ev.length >= 2),
      ]);
      assert.deepEqual(ea.map((e) => e.body.text), ['x', 'y']);
      assert.deepEqual(eb.map((e) => e.body.text), ['x', 'y']);
      // An unknown group: the receiver is refused with "could not be found" (processError sees it).
      const errors = [];
      const sub = unknown.subscribe('0', { processEvents: async () => {}, processError: async (e) => { errors.push(e); } },
        { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
      const deadline = Date.now() + 15000;
      while (!errors.some((e) => /could not be found/.test(e.message)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      await sub.close();
      assert.ok(errors.some((e) => /could not be found/.test(e.message)), errors.map((e) => e.message).join('; '));
      assert.equal((await rest(emu, 'DELETE', '/emulator/consumergroups/rest-group')).status, 204);
      assert.equal((await rest(emu, 'DELETE', '/emulator/consumergroups/$Default')).status, 400);
    } finally {
      await Promise.all([a.close(), b.close(), unknown.close()]);
    }
  });
});

test('a receiver with a higher owner level (epoch) takes the partition: amqp:link:stolen', async () => {
  await withEmulator({}, async () => {
    const first = consumer();
    const second = consumer();
    try {
      const errors = [];
      const sub1 = first.subscribe('0', { processEvents: async () => {}, processError: async (e) => { errors.push(e); } },
        { ownerLevel: 1, maxWaitTimeInSeconds: 1 });
      await new Promise((r) => setTimeout(r, 1500));
      const sub2 = second.subscribe('0', { processEvents: async () => {}, processError: async () => {} },
        { ownerLevel: 2, maxWaitTimeInSeconds: 1 });
      const deadline = Date.now() + 15000;
      while (!errors.some((e) => e.code === 'ReceiverDisconnectedError') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      assert.ok(errors.some((e) => e.code === 'ReceiverDisconnectedError'),
        `errors: ${errors.map((e) => `${e.code}: ${e.message}`).join('; ')}`);
      await sub1.close();
      await sub2.close();
    } finally {
      await first.close();
      await second.close();
    }
  });
});

test('retention drops the oldest events', async () => {
  await withEmulator({ extraArgs: ['--retention-events', '3', '--partitions', '1'] }, async (emu) => {
    await sendWithSdk(emu, Mqtt, ['1', '2', '3', '4', '5'].map((t) => tagged(t)));
    const client = consumer();
    try {
      const events = await collect(client, { startPosition: earliestEventPosition }, (ev) => ev.length >= 3);
      assert.deepEqual(events.map((e) => e.body.text), ['3', '4', '5']);
      const p = await client.getPartitionProperties('0');
      assert.equal(p.beginningSequenceNumber, 2);
      assert.equal(p.lastEnqueuedSequenceNumber, 4);
    } finally {
      await client.close();
    }
  });
});

// Microsoft's sample (sdk/eventhub/event-hubs/samples/.../iothubConnectionString): connect to the IoT Hub
// host with SASL PLAIN and an IoT Hub token for {host}/messages/events, attach to messages/events, and build
// the Event Hubs connection string from the amqp:link:redirect error.
async function convertIotHubToEventHubsConnectionString(connectionString) {
  const { HostName, SharedAccessKeyName, SharedAccessKey } = Object.fromEntries(
    connectionString.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  const [iotHubName] = HostName.split('.');
  const expiry = Math.ceil(Date.now() / 1000) + 300;
  const sr = encodeURIComponent(`${HostName}/messages/events`);
  const sig = crypto.createHmac('sha256', Buffer.from(SharedAccessKey, 'base64')).update(`${sr}\n${expiry}`).digest('base64');
  const token = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${expiry}&skn=${SharedAccessKeyName}`;
  const connection = new rhea.Connection({
    transport: 'tls', host: HostName, hostname: HostName, username: `${SharedAccessKeyName}@sas.root.${iotHubName}`,
    port: 5671, reconnect: false, password: token,
  });
  await connection.open();
  // As the sample: the attach succeeds, then the link is detached with the redirect.
  const receiver = await connection.createReceiver({ source: { address: `amqps://${HostName}/messages/events/$management` } });
  return new Promise((resolve, reject) => {
    receiver.on(rhea.ReceiverEvents.receiverError, (ctx) => {
      const error = ctx.receiver && ctx.receiver.error;
      if (error && error.condition === 'amqp:link:redirect' && error.info && error.info.hostname) {
        resolve({ cs: `Endpoint=sb://${error.info.hostname}/;EntityPath=${iotHubName};` +
          `SharedAccessKeyName=${SharedAccessKeyName};SharedAccessKey=${SharedAccessKey}`, info: error.info });
      } else {
        reject(error);
      }
      connection.close().catch(() => {});
    });
  });
}

test('the IoT Hub connection string -> Event Hubs redirect sample works unmodified', async () => {
  await withEmulator({}, async (emu) => {
    await sendWithSdk(emu, Mqtt, [tagged('via-redirect')]);
    const { cs, info } = await convertIotHubToEventHubsConnectionString(emu.serviceConnectionString());
    assert.match(cs, /^Endpoint=sb:\/\/localhost\/;EntityPath=localhost;/);
    assert.equal(info.address, `amqps://localhost:5671/${HUB}/$management`); // the Python sample's regex source
    assert.equal(info.port, 5671);
    const client = consumer('$Default', cs);
    try {
      const events = await collect(client, { startPosition: earliestEventPosition }, (ev) => ev.length >= 1);
      assert.equal(events[0].body.text, 'via-redirect');
    } finally {
      await client.close();
    }
  });
});
