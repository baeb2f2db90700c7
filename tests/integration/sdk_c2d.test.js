// sdk_c2d.test.js -- cloud-to-device messages through the emulator's AMQP front with the official, unmodified
// Node service SDK (azure-iothub Client over Amqp on 5671 and AmqpWs on 443, no SASL, CBS put-token) sending,
// and the official device SDK (azure-iot-device-mqtt, Mqtt and MqttWs) receiving and completing. Also the
// hub's refusals as the SDK reports them: an unknown device (DeviceNotFoundError) and a 51st queued message
// (DeviceMaximumQueueDepthExceededError), and a message sent to an offline device reaching it after an
// emulator restart (SIGTERM and SIGKILL: the queues live in the store). Run through run_node_test.py (fixed
// ports 443/5671/8883).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: ServiceClient } = require('azure-iothub');
const { Message } = require('azure-iot-common');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iothub');
const { Emulator, withEmulator, randomId } = require('./lib/emulator');

const TRANSPORTS = [['Amqp', Amqp], ['AmqpWs', AmqpWs]];

async function createDevice(emu, deviceId) {
  const { Registry } = require('azure-iothub');
  const registry = Registry.fromConnectionString(emu.serviceConnectionString());
  await registry.create({ deviceId });
  const { responseBody } = await registry.get(deviceId);
  return `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${responseBody.authentication.symmetricKey.primaryKey}`;
}

async function sendError(client, deviceId, msg) {
  try {
    await client.send(deviceId, msg);
  } catch (err) {
    return err;
  }
  assert.fail('send succeeded but an error was expected');
}

for (const [name, Transport] of TRANSPORTS) {
  test(`azure-iothub Client over ${name}: open (CBS put-token), send, unknown device, the 51st message`, async () => {
    await withEmulator({}, async (emu) => {
      const deviceId = randomId('c2d');
      await createDevice(emu, deviceId);
      const client = ServiceClient.fromConnectionString(emu.serviceConnectionString(), Transport);
      await client.open();
      try {
        const msg = new Message('hello');
        msg.messageId = 'm-1';
        msg.ack = 'full';
        msg.properties.add('k1', 'v1');
        await client.send(deviceId, msg);
        const notFound = await sendError(client, randomId('nobody'), new Message('x'));
        assert.equal(notFound.constructor.name, 'DeviceNotFoundError', String(notFound));
        for (let i = 1; i < 50; i++) await client.send(deviceId, new Message(`m${i}`));
        const full = await sendError(client, deviceId, new Message('one too many'));
        assert.equal(full.constructor.name, 'DeviceMaximumQueueDepthExceededError', String(full));
      } finally {
        await client.close();
      }
    });
  });
}

test('feedback: ack "full" gives a Success record on the feedback receiver once the device completes', async () => {
  await withEmulator({}, async (emu) => {
    const deviceId = randomId('fb');
    const cs = await createDevice(emu, deviceId);
    const service = ServiceClient.fromConnectionString(emu.serviceConnectionString(), Amqp);
    await service.open();
    const device = DeviceClient.fromConnectionString(cs, Mqtt);
    device.on('message', (m) => device.complete(m, () => {}));
    await device.open();
    try {
      const receiver = await new Promise((resolve, reject) =>
        service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r))));
      const got = new Promise((resolve) => {
        receiver.on('message', (msg) => {
          receiver.complete(msg, () => {});
          resolve(msg);
        });
      });
      const msg = new Message('tracked');
      msg.messageId = 'fb-1';
      msg.ack = 'full';
      await service.send(deviceId, msg);
      const fb = await got;
      assert.equal(fb.contentType, 'application/vnd.microsoft.iothub.feedback.json');
      const records = JSON.parse(fb.data.toString());
      assert.equal(records.length, 1);
      assert.equal(records[0].originalMessageId, 'fb-1');
      assert.equal(records[0].statusCode, 'Success');
      assert.equal(records[0].deviceId, deviceId);
      assert.match(records[0].enqueuedTimeUtc, /^\d{4}-\d\d-\d\dT/);
      assert.ok(records[0].deviceGenerationId);
    } finally {
      await device.close();
      await service.close();
    }
  });
});

for (const [name, Transport] of [['Mqtt', Mqtt], ['MqttWs', MqttWs]]) {
  test(`a device on ${name} receives what azure-iothub sent, with its properties, and completes it`, async () => {
    await withEmulator({}, async (emu) => {
      const deviceId = randomId('c2d');
      const cs = await createDevice(emu, deviceId);
      const service = ServiceClient.fromConnectionString(emu.serviceConnectionString(), Amqp);
      await service.open();
      // queued while the device is offline: delivered on connect
      const first = new Message('while offline');
      first.messageId = 'offline-1';
      await service.send(deviceId, first);
      const device = DeviceClient.fromConnectionString(cs, Transport);
      const received = [];
      const gotTwo = new Promise((resolve) => {
        device.on('message', (m) => {
          received.push(m);
          device.complete(m, () => {});
          if (received.length === 2) resolve();
        });
      });
      await device.open();
      try {
        const second = new Message(JSON.stringify({ n: 2 }));
        second.messageId = 'online-2';
        second.correlationId = 'corr-2';
        second.contentType = 'application/json';
        second.contentEncoding = 'utf-8';
        second.properties.add('color', 'blue');
        await service.send(deviceId, second);
        await gotTwo;
        assert.equal(received[0].messageId, 'offline-1');
        assert.equal(received[0].data.toString(), 'while offline');
        const m = received[1];
        assert.equal(m.messageId, 'online-2');
        assert.equal(m.correlationId, 'corr-2');
        assert.equal(m.data.toString(), '{"n":2}');
        assert.equal(m.properties.getValue('color'), 'blue');
        assert.equal(m.contentType, 'application/json');
        // completed: the queue is empty, so 50 more fit
        for (let i = 0; i < 50; i++) await service.send(deviceId, new Message(`fill${i}`));
      } finally {
        await device.close();
        await service.close();
      }
    });
  });
}

for (const signal of ['SIGTERM', 'SIGKILL']) {
  test(`a message for an offline device survives an emulator restart (${signal})`, async () => {
    let emu = new Emulator();
    await emu.start();
    try {
      const deviceId = randomId('c2d-restart');
      const cs = await createDevice(emu, deviceId);
      const service = ServiceClient.fromConnectionString(emu.serviceConnectionString(), Amqp);
      await service.open();
      const msg = new Message('kept across the restart');
      msg.messageId = `restart-${signal}`;
      msg.properties.add('color', 'green');
      await service.send(deviceId, msg); // resolved on the hub's accepted disposition: stored by then
      await service.close();
      await emu.stop(signal);
      const again = new Emulator();
      again.mqttPort = emu.mqttPort;
      again.httpPort = emu.httpPort;
      emu = again;
      await emu.start({ freshRegistry: false });
      const device = DeviceClient.fromConnectionString(cs, Mqtt);
      const got = new Promise((resolve) => {
        device.on('message', (m) => device.complete(m, () => resolve(m)));
      });
      await device.open();
      try {
        const m = await got;
        assert.equal(m.messageId, `restart-${signal}`);
        assert.equal(m.data.toString(), 'kept across the restart');
        assert.equal(m.properties.getValue('color'), 'green');
      } finally {
        await device.close();
      }
    } catch (err) {
      emu.dumpLog();
      throw err;
    } finally {
      await emu.stop();
    }
  });
}
