// service_emulator.test.js -- iothub-service end to end: the emulator as the hub and the official, unmodified
// Node device SDK (azure-iot-device + azure-iot-device-mqtt) as the device. The tutorial's call with the
// program's defaults, each error exit status (offline, timeout, unknown device, wrong key, untrusted TLS,
// nothing listening), module calls, a registry round trip whose connection strings the SDK connects with, and
// tokens from `sas` accepted by the emulator (MQTT connect, REST) and equal to the Node SDK's own. The program
// talks HTTPS on :443 with the emulator's CA (--ca-file), as a user would; one test uses the plain HTTP dev port.
// The SDK subscribes to methods after open() resolves, so calls pass --connect-timeout instead of sleeping.
// Run through run_node_test.py (fixed ports 443/8883, NODE_EXTRA_CA_CERTS, IOTHUB_EMULATOR_BIN,
// IOTHUB_SERVICE_BIN).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { Client: DeviceClient, ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { SharedAccessSignature } = require('azure-iot-common');
const { withEmulator, randomId, OWNER_KEY, DEVICE1_KEY, HOST } = require('./lib/emulator');
const { runProgram } = require('./lib/run');
const { answerMethods } = require('./lib/sdk');

const BIN = process.env.IOTHUB_SERVICE_BIN || 'iothub-service';
const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };

// Runs iothub-service; resolves {code, stdout, stderr}.
const run = (args, env = {}) => runProgram(BIN, args, env);

const caFile = (emu) => path.join(emu.dataDir, 'ca.pem');

// The program as a user runs it against the emulator: HTTPS on :443, trusting the dev CA.
function svc(emu, ...args) {
  return run([...args, '--connection-string', emu.serviceConnectionString(), '--ca-file', caFile(emu)]);
}

async function svcOk(emu, ...args) {
  const out = await svc(emu, ...args);
  assert.equal(out.code, 0, `iothub-service ${args.join(' ')}: ${out.stderr}`);
  return out;
}

// The Node device SDK subscribes to methods lazily, after open() resolves: the call asks the hub to wait for the
// device (--connect-timeout) instead of sleeping or retrying.
function invokeWhenListening(emu, ...args) {
  return svc(emu, 'invoke', ...args, '--connect-timeout', '30');
}

const startDevice = answerMethods;

const deviceFrom = (cs) => DeviceClient.fromConnectionString(cs, Mqtt);

test('the tutorial call with the defaults: invoke device1', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(deviceFrom(emu.deviceConnectionString()), 'DeviceMethod', () => [200, TUTORIAL_RESPONSE]);
    try {
      const expected = 'Invoking direct method for device: device1\nMethod name: DeviceMethod\n'
        + 'Method payload: {"method_number":"42"}\n'
        + 'Response status: 200, payload:\n\t{"Response":"This is the response from the device"}\n';
      // The first call waits for the lazy method subscription; once it is answered, the device listens, and the
      // second call uses nothing but the defaults.
      const first = await invokeWhenListening(emu, 'device1');
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stdout, expected);
      const out = await svc(emu, 'invoke', 'device1');
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout, expected);
      assert.equal(out.stderr, '');
      assert.equal(dev.calls.length, 2);
      for (const call of dev.calls) {
        assert.equal(call.methodName, 'DeviceMethod');
        assert.deepEqual(call.payload, { method_number: '42' });
      }
    } finally {
      await dev.client.close();
    }
  });
});

test('--json over the plain HTTP dev port; the device status is passed through with exit 0', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(deviceFrom(emu.deviceConnectionString()), 'Fail', (r) => [500, { got: r.payload }]);
    try {
      const out = await run(['invoke', 'device1', 'Fail', '--payload', '[1,"two",{"3":null}]', '--connect-timeout',
        '30', '--json', '--url', `http://127.0.0.1:${emu.httpPort}`],
      { IOTHUB_CONNECTION_STRING: emu.serviceConnectionString() });
      assert.equal(out.code, 0, out.stderr);
      assert.deepEqual(JSON.parse(out.stdout), { deviceId: 'device1', moduleId: null, methodName: 'Fail',
        status: 500, payload: { got: [1, 'two', { 3: null }] } });
    } finally {
      await dev.client.close();
    }
  });
});

test('offline device: exit 6 with the hub\'s 404103', async () => {
  await withEmulator({}, async (emu) => {
    const out = await svc(emu, 'invoke', 'device1');
    assert.equal(out.code, 6, out.stderr);
    assert.match(out.stderr, /^iothub-service: device not online: .*\(404103 DeviceNotOnline, HTTP 404\)\n$/);
  });
});

test('device that never answers: exit 7 after the response timeout', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(deviceFrom(emu.deviceConnectionString()), 'Slow', () => null);
    try {
      const t0 = Date.now();
      const out = await svc(emu, 'invoke', 'device1', 'Slow', '--timeout', '5', '--connect-timeout', '30');
      assert.equal(out.code, 7, out.stderr);
      assert.ok(Date.now() - t0 >= 4500);
      assert.match(out.stderr, /^iothub-service: timeout: .*504101 GatewayTimeout, HTTP 504\)\n$/);
      assert.equal(dev.calls.length, 1, 'a method call is never retried');
    } finally {
      await dev.client.close();
    }
  });
});

test('unknown device: exit 5; a timeout the hub rejects: exit 8', async () => {
  await withEmulator({}, async (emu) => {
    const out = await svc(emu, 'invoke', 'nobody-here');
    assert.equal(out.code, 5, out.stderr);
    assert.match(out.stderr, /^iothub-service: not found: /);
    const bad = await svc(emu, 'invoke', 'device1', '--timeout', '3');
    assert.equal(bad.code, 8, bad.stderr);
    assert.match(bad.stderr, /responseTimeoutInSeconds must be within \[5; 300\]\. \(400004 ArgumentInvalid/);
  });
});

test('wrong service key: exit 4; untrusted TLS: exit 3; nothing listening: exit 3', async () => {
  let freedPort;
  await withEmulator({}, async (emu) => {
    freedPort = emu.httpPort;
    const wrong = `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${DEVICE1_KEY}`;
    const out = await run(['invoke', 'device1', '--connection-string', wrong, '--ca-file', caFile(emu)]);
    assert.equal(out.code, 4, out.stderr);
    assert.match(out.stderr, /^iothub-service: unauthorized: .*HTTP 401\)\n$/);
    assert.ok(!out.stderr.includes(DEVICE1_KEY));

    const tls = await run(['device', 'list', '--connection-string', emu.serviceConnectionString()]);
    assert.equal(tls.code, 3, tls.stderr);
    assert.match(tls.stderr, /^iothub-service: TLS with the hub failed: .*--ca-file/);

    // The environment as the README sets it up; an empty --ca-file goes back to the system store.
    const fromEnv = { IOTHUB_CONNECTION_STRING: emu.serviceConnectionString(), IOTHUB_CA_FILE: caFile(emu) };
    assert.equal((await run(['device', 'list'], fromEnv)).code, 0);
    const systemStore = await run(['device', 'list', '--ca-file', ''], fromEnv);
    assert.equal(systemStore.code, 3, systemStore.stderr);
    assert.match(systemStore.stderr, /^iothub-service: TLS with the hub failed: /);
  });
  // The stopped emulator's dev port: nothing listens there now (unlike :443, which another test may hold).
  const down = await run(['device', 'list', '--connection-string',
    `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY}`, '--url',
    `http://127.0.0.1:${freedPort}`]);
  assert.equal(down.code, 3, down.stderr);
  assert.match(down.stderr, /^iothub-service: cannot connect to the hub: /);
});

test('module calls: create a module, connect it with its connection string, invoke it', async () => {
  await withEmulator({}, async (emu) => {
    await svcOk(emu, 'module', 'create', 'device1', 'filter');
    const cs = (await svcOk(emu, 'module', 'connection-string', 'device1', 'filter')).stdout.trim();
    assert.match(cs, /^HostName=localhost;DeviceId=device1;ModuleId=filter;SharedAccessKey=[A-Za-z0-9+/=]{44}$/);
    const before = await svc(emu, 'invoke', 'device1', 'Reset', '--module', 'filter');
    assert.equal(before.code, 6, `registered, not connected: ${before.stderr}`);
    assert.match(before.stderr, /\(404103 DeviceNotOnline, HTTP 404\)\n$/);
    const mod = await startDevice(ModuleClient.fromConnectionString(cs, Mqtt), 'Reset',
      (req) => [201, { echo: req.payload }], { module: true });
    try {
      const out = await svc(emu, 'invoke', 'device1', 'Reset', '--module', 'filter', '--payload', '7',
        '--connect-timeout', '30');
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /^Invoking direct method for device: device1, module: filter\n/);
      assert.match(out.stdout, /Response status: 201, payload:\n\t\{"echo":7\}\n$/);
      const list = await svcOk(emu, 'module', 'list', 'device1');
      // A real hub's module JSON has no `status` (printed as "-"); the emulator's has "enabled".
      assert.match(list.stdout, /^filter\t(-|enabled)\tConnected\n$/m);
      const unknown = await svc(emu, 'invoke', 'device1', 'Reset', '--module', 'other');
      assert.equal(unknown.code, 5, `no such module: ${unknown.stderr}`);
    } finally {
      await mod.client.close();
    }
    await svcOk(emu, 'module', 'delete', 'device1', 'filter');
    assert.equal((await svc(emu, 'module', 'get', 'device1', 'filter')).code, 5);
  });
});

test('registry round trip: create, get, list, connect with the printed connection string, delete', async () => {
  await withEmulator({}, async (emu) => {
    const id = randomId('rt#1');
    const created = await svcOk(emu, 'device', 'create', id);
    assert.equal(created.stdout.split('\n')[0], `deviceId: ${id}`);
    assert.match(created.stdout, /^status: enabled$/m);
    assert.ok(!/[A-Za-z0-9+/]{43}=/.test(created.stdout), 'no key printed');
    assert.equal((await svc(emu, 'device', 'create', id)).code, 8, 'already exists');

    const got = JSON.parse((await svcOk(emu, 'device', 'get', id, '--json')).stdout);
    assert.equal(got.deviceId, id);
    assert.equal(got.authentication.symmetricKey, undefined, '--json leaves the keys out');
    assert.ok((await svcOk(emu, 'device', 'list')).stdout.split('\n').some((l) => l.startsWith(`${id}\t`)));

    const cs = (await svcOk(emu, 'device', 'connection-string', id)).stdout.trim();
    const dev = await startDevice(deviceFrom(cs), 'Ping', (req) => [200, `${req.payload}-pong`]);
    try {
      // A payload, not `null`: the Node SDK answers an empty body with 400 before the handler runs.
      const out = await invokeWhenListening(emu, id, 'Ping', '--payload', '"ping"');
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /Response status: 200, payload:\n\t"ping-pong"\n$/);
      assert.equal(dev.calls.length, 1);
    } finally {
      await dev.client.close();
    }

    const keyed = randomId('keyed');
    const primary = Buffer.alloc(32, 1).toString('base64');
    const secondary = Buffer.alloc(32, 2).toString('base64');
    await svcOk(emu, 'device', 'create', keyed, '--primary-key', primary, '--secondary-key', secondary,
      '--disabled');
    assert.match((await svcOk(emu, 'device', 'get', keyed)).stdout, /^status: disabled$/m);
    assert.equal((await svcOk(emu, 'device', 'connection-string', keyed)).stdout,
      `HostName=localhost;DeviceId=${keyed};SharedAccessKey=${primary}\n`);

    await svcOk(emu, 'device', 'delete', id);
    const gone = await svc(emu, 'device', 'get', id);
    assert.equal(gone.code, 5, gone.stderr);
    assert.equal((await svc(emu, 'device', 'delete', id)).code, 5);
  });
});

test('sas: a device token the emulator accepts and the Node SDK computes identically', async () => {
  await withEmulator({}, async (emu) => {
    // `sas --device` fetches the key from the registry; the token is the one the Node SDK signs for the same sr,
    // key and expiry, and the emulator accepts it on an MQTT connect.
    const t0 = Math.floor(Date.now() / 1000);
    const token = (await svcOk(emu, 'sas', '--device', 'device1', '--ttl', '600')).stdout.trim();
    const fields = SharedAccessSignature.parse(token, ['sr', 'sig', 'se']);
    assert.equal(decodeURIComponent(fields.sr), `${HOST}/devices/device1`);
    assert.ok(Number(fields.se) >= t0 + 600 && Number(fields.se) <= Math.ceil(Date.now() / 1000) + 600);
    assert.equal(token, SharedAccessSignature.create(fields.sr, undefined, DEVICE1_KEY, fields.se).toString());
    const dev = await startDevice(DeviceClient.fromSharedAccessSignature(token, Mqtt), 'DeviceMethod',
      () => [200, { via: 'sas' }]);
    try {
      const out = await invokeWhenListening(emu, 'device1');
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /\{"via":"sas"\}/);
    } finally {
      await dev.client.close();
    }

    // `az iot hub generate-sas-token` style: resource + key; the Node SDK signs the same sr and se alike.
    const made = (await run(['sas', '--resource', `${HOST}/devices/device1`, '--key', DEVICE1_KEY])).stdout.trim();
    const parsed = SharedAccessSignature.parse(made, ['sr', 'sig', 'se']);
    assert.equal(decodeURIComponent(parsed.sr), `${HOST}/devices/device1`);
    assert.equal(made, SharedAccessSignature.create(parsed.sr, undefined, DEVICE1_KEY, parsed.se).toString());
    assert.ok(Number(parsed.se) > Date.now() / 1000 + 3500);

    // A service token with a policy name works on the hub's REST API.
    const svcToken = (await run(['sas', '--resource', HOST, '--key', OWNER_KEY, '--key-name', 'iothubowner']))
      .stdout.trim();
    const parsedSvc = SharedAccessSignature.parse(svcToken, ['sr', 'sig', 'se', 'skn']);
    // Same fields and signature; the order differs (Node: ...&skn=&se=, az and the C SDK: ...&se=&skn=).
    const nodeSvc = SharedAccessSignature.create(parsedSvc.sr, 'iothubowner', OWNER_KEY, parsedSvc.se);
    assert.deepEqual(SharedAccessSignature.parse(nodeSvc.toString(), ['sr', 'sig', 'se', 'skn']), parsedSvc);
    assert.match(svcToken, /^SharedAccessSignature sr=[^&]+&sig=[^&]+&se=\d+&skn=iothubowner$/);
    const res = await fetch(`http://127.0.0.1:${emu.httpPort}/devices/device1?api-version=2021-04-12`,
      { headers: { Authorization: svcToken } });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).deviceId, 'device1');
  });
});
