// service_emulator.test.js -- iothub-service end to end: the emulator as the hub and the official, unmodified
// Node device SDK (azure-iot-device + azure-iot-device-mqtt) as the device. The tutorial's call with the
// program's defaults, each error exit status (offline, timeout, unknown device, wrong key, untrusted TLS),
// module calls, a registry round trip whose connection strings the SDK connects with, and tokens from `sas`
// accepted by the emulator and by the Node SDK's own token code. The program talks HTTPS on :443 with the
// emulator's CA (--ca-file), as a user would; one test uses the plain HTTP dev port (--url).
// Run through run_node_test.py (fixed ports 443/8883, NODE_EXTRA_CA_CERTS, IOTHUB_EMULATOR_BIN,
// IOTHUB_SERVICE_BIN).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Client: DeviceClient, ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { SharedAccessSignature } = require('azure-iot-common');
const { withEmulator, randomId, OWNER_KEY, DEVICE1_KEY, HOST } = require('./lib/emulator');

const BIN = process.env.IOTHUB_SERVICE_BIN || 'iothub-service';
const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };

// Runs iothub-service; resolves {code, stdout, stderr}. Only PATH is inherited: no IOTHUB_* leaks in.
function run(args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: { PATH: process.env.PATH, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Node subscribes to methods after open() resolves; retry while the hub says "not online" (exit 6).
async function invokeWhenListening(emu, ...args) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const out = await svc(emu, 'invoke', ...args);
    if (out.code !== 6 || Date.now() > deadline) return out;
    await sleep(200);
  }
}

// A device (or module) answering methodName with handler(request) -> [status, payload] (null: no answer).
async function startDevice(client, methodName, handler, { module = false } = {}) {
  const calls = [];
  const register = module ? client.onMethod.bind(client) : client.onDeviceMethod.bind(client);
  register(methodName, (request, response) => {
    calls.push(request);
    const answer = handler(request);
    if (answer) response.send(answer[0], answer[1], () => {});
  });
  await client.open();
  return { client, calls };
}

const deviceFrom = (cs) => DeviceClient.fromConnectionString(cs, Mqtt);

test('the tutorial call with the defaults: invoke device1', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(deviceFrom(emu.deviceConnectionString()), 'DeviceMethod', () => [200, TUTORIAL_RESPONSE]);
    try {
      const out = await invokeWhenListening(emu, 'device1');
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout, 'Invoking direct method for device: device1\nMethod name: DeviceMethod\n'
        + 'Method payload: {"method_number":"42"}\n'
        + 'Response status: 200, payload:\n\t{"Response":"This is the response from the device"}\n');
      assert.equal(out.stderr, '');
      const last = dev.calls[dev.calls.length - 1];
      assert.equal(last.methodName, 'DeviceMethod');
      assert.deepEqual(last.payload, { method_number: '42' });
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
  await withEmulator({}, async (emu) => {
    const wrong = `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${DEVICE1_KEY}`;
    const out = await run(['invoke', 'device1', '--connection-string', wrong, '--ca-file', caFile(emu)]);
    assert.equal(out.code, 4, out.stderr);
    assert.match(out.stderr, /^iothub-service: unauthorized: .*HTTP 401\)\n$/);
    assert.ok(!out.stderr.includes(DEVICE1_KEY));

    const tls = await run(['device', 'list', '--connection-string', emu.serviceConnectionString()]);
    assert.equal(tls.code, 3, tls.stderr);
    assert.match(tls.stderr, /^iothub-service: TLS with the hub failed: .*--ca-file/);
  });
  const down = await run(['device', 'list', '--connection-string',
    `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY}`]);
  assert.equal(down.code, 3, down.stderr);
  assert.match(down.stderr, /^iothub-service: cannot connect to the hub: /);
});

test('module calls: create a module, connect it with its connection string, invoke it', async () => {
  await withEmulator({}, async (emu) => {
    await svcOk(emu, 'module', 'create', 'device1', 'filter');
    const cs = (await svcOk(emu, 'module', 'connection-string', 'device1', 'filter')).stdout.trim();
    assert.match(cs, /^HostName=localhost;DeviceId=device1;ModuleId=filter;SharedAccessKey=[A-Za-z0-9+/=]{44}$/);
    const mod = await startDevice(ModuleClient.fromConnectionString(cs, Mqtt), 'Reset',
      (req) => [201, { echo: req.payload }], { module: true });
    try {
      const out = await svc(emu, 'invoke', 'device1', 'Reset', '--module', 'filter', '--payload', '7',
        '--connect-timeout', '30');
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /^Invoking direct method for device: device1, module: filter\n/);
      assert.match(out.stdout, /Response status: 201, payload:\n\t\{"echo":7\}\n$/);
      const list = await svcOk(emu, 'module', 'list', 'device1');
      assert.match(list.stdout, /^filter\t-\tConnected\n$/m);
      const offline = await svc(emu, 'invoke', 'device1', 'Reset', '--module', 'other');
      assert.equal(offline.code, 5, 'no such module');
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
    const dev = await startDevice(deviceFrom(cs), 'Ping', () => [200, 'pong']);
    try {
      const out = await svc(emu, 'invoke', id, 'Ping', '--payload', 'null', '--connect-timeout', '30');
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /Response status: 200, payload:\n\t"pong"\n$/);
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
    const token = (await svcOk(emu, 'sas', '--device', 'device1', '--ttl', '600')).stdout.trim();
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
    const node = SharedAccessSignature.create(parsed.sr, undefined, DEVICE1_KEY, parsed.se);
    assert.equal(parsed.sig, node.sig);
    assert.ok(Number(parsed.se) > Date.now() / 1000 + 3500);

    // A service token with a policy name works on the hub's REST API.
    const svcToken = (await run(['sas', '--resource', HOST, '--key', OWNER_KEY, '--key-name', 'iothubowner']))
      .stdout.trim();
    const parsedSvc = SharedAccessSignature.parse(svcToken, ['sr', 'sig', 'se', 'skn']);
    assert.equal(parsedSvc.sig, SharedAccessSignature.create(parsedSvc.sr, 'iothubowner', OWNER_KEY, parsedSvc.se).sig);
    const res = await fetch(`http://127.0.0.1:${emu.httpPort}/devices/device1?api-version=2021-04-12`,
      { headers: { Authorization: svcToken } });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).deviceId, 'device1');
  });
});
