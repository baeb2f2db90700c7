// device_methods.test.js -- iothub-device (our C device on libmosquitto) against the emulator, with the official,
// unmodified Node service SDK (azure-iothub Client.invokeDeviceMethod) as the caller: the tutorial call, concurrent
// calls, a null payload, a module identity, reconnection after the emulator restarts, SAS-token renewal with a short
// lifetime, and refusal of servers whose certificate does not verify (wrong CA, wrong host name); plus the program's
// one-line failures and exit statuses. Run through run_node_test.py (fixed ports 443/8883, NODE_EXTRA_CA_CERTS).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Registry } = require('azure-iothub');
const { withEmulator, freePort, DEVICE1_KEY, HOST } = require('./lib/emulator');
const { invoke } = require('./lib/sdk');

const DEVICE_BIN = process.env.IOTHUB_DEVICE_BIN;
const TUTORIAL_RESPONSE = { Response: 'This is the response from the device' };
const EXIT = { ok: 0, usage: 2, unreachable: 3, tls: 4, auth: 5 };

// One iothub-device process; collects its output line by line.
class Device {
  constructor(args) {
    this.args = args;
    this.out = [];
    this.err = '';
    this.waiters = [];
    this.proc = spawn(DEVICE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    this.proc.stdout.on('data', (d) => {
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop();
      this.out.push(...lines);
      this.waiters.forEach((w) => w());
    });
    this.proc.stderr.on('data', (d) => { this.err += d.toString(); });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  count(re) {
    return this.out.filter((l) => re.test(l)).length;
  }

  // Resolves when `n` stdout lines match re; rejects after timeoutMs or if the process exits first.
  waitFor(re, n = 1, timeoutMs = 20000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.count(re) >= n) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`timed out waiting for ${re} x${n}\n${this.dump()}`)); },
        timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      this.waiters.push(check);
      this.exited.then(() => { if (this.count(re) < n) { done(); reject(new Error(`device exited\n${this.dump()}`)); } });
      check();
    });
  }

  async stop(signal = 'SIGINT') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exited;
  }

  dump() {
    return `--- device stdout ---\n${this.out.join('\n')}\n--- device stderr ---\n${this.err}--- end ---`;
  }
}

function caFile(emu) {
  return path.join(emu.dataDir, 'ca.pem');
}

async function startDevice(emu, extra = [], cs = emu.deviceConnectionString()) {
  const dev = new Device(['--connection-string', cs, '--ca-file', caFile(emu), ...extra]);
  await dev.waitFor(/^connected$/);
  return dev;
}

// Runs the device to completion (it must exit by itself) and returns { code, err }.
async function runToExit(args, timeoutMs = 30000) {
  const dev = new Device(args);
  const timer = setTimeout(() => dev.proc.kill('SIGKILL'), timeoutMs);
  const { code } = await dev.exited;
  clearTimeout(timer);
  return { code, err: dev.err, out: dev.out };
}

function call(emu, payload, extra = {}) {
  return invoke(emu, 'device1', { methodName: 'DeviceMethod', payload, responseTimeoutInSeconds: 10, ...extra });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Exactly one non-empty stderr line (the program's failure message), no debug noise.
function oneLine(err) {
  const lines = err.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${err}`);
  return lines[0];
}

// A throw-away CA, and a server certificate it signed for `san` (openssl CLI, independent of our code).
function makeCerts(dir, san) {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=device test CA');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=server');
  fs.writeFileSync(path.join(dir, 'ext'), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\n`);
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out',
    'server.pem', '-days', '2', '-extfile', 'ext');
  return { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

function tmpDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-device-test-'));
}

test('the tutorial call: DeviceMethod answered 200 with the tutorial response; the device prints it', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu);
    try {
      const { result } = await call(emu, { method_number: '42' });
      assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
      await dev.waitFor(/^Method call number: 1$/);
      assert.ok(dev.out.includes('Method name: DeviceMethod'), dev.dump());
      assert.ok(dev.out.includes('Payload: {"method_number":"42"}'), dev.dump());
      const second = await call(emu, { method_number: '43' });
      assert.equal(second.result.status, 200);
      await dev.waitFor(/^Method call number: 2$/);
    } finally {
      const { code } = await dev.stop('SIGINT');
      assert.equal(code, EXIT.ok, dev.dump());
    }
  });
});

test('concurrent calls overlap and each gets its own answer', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu, ['--echo']);
    try {
      const n = 25;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => call(emu, { call: i, pad: 'x'.repeat(i * 40) })));
      results.forEach(({ result }, i) => assert.deepEqual(result, { status: 200, payload: { call: i, pad: 'x'.repeat(i * 40) } }));
      await dev.waitFor(new RegExp(`^Method call number: ${n}$`));
    } finally {
      await dev.stop();
    }
  });
});

test('a null payload reaches the device as an empty body and is echoed as null', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu, ['--echo']);
    try {
      const { result } = await call(emu, null);
      assert.deepEqual(result, { status: 200, payload: null });
      await dev.waitFor(/^Payload: null$/);
    } finally {
      await dev.stop();
    }
    const plain = await startDevice(emu);
    try {
      const { result } = await call(emu, null);
      assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
    } finally {
      await plain.stop();
    }
  });
});

test('unknown methods get --unknown-status with a message; --method and --status choose the rest', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu, ['--method', 'Reboot', '--method', 'Ping', '--status', '202',
      '--response', '{"ok":true}', '--unknown-status', '501']);
    try {
      const reboot = await invoke(emu, 'device1', { methodName: 'Reboot', payload: 1, responseTimeoutInSeconds: 10 });
      assert.deepEqual(reboot.result, { status: 202, payload: { ok: true } });
      const ping = await invoke(emu, 'device1', { methodName: 'Ping', payload: 'x', responseTimeoutInSeconds: 10 });
      assert.deepEqual(ping.result, { status: 202, payload: { ok: true } });
      const other = await call(emu, {});
      assert.deepEqual(other.result, { status: 501, payload: { message: 'method not found' } });
      await dev.waitFor(/^Unknown method: DeviceMethod/);
    } finally {
      await dev.stop();
    }
  });
});

test('a module identity connects as deviceId/moduleId and answers module methods', async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const { responseBody: mod } = await registry.addModule({ deviceId: 'device1', moduleId: 'filter' });
    const cs = emu.deviceConnectionString('device1', mod.authentication.symmetricKey.primaryKey, 'filter');
    const dev = await startDevice(emu, ['--method', 'Reset', '--status', '201', '--echo'], cs);
    try {
      const { result } = await invoke(emu, 'device1', { methodName: 'Reset', payload: 7, responseTimeoutInSeconds: 10 },
        'filter');
      assert.deepEqual(result, { status: 201, payload: 7 });
      // The device itself is not connected: only its module is.
      await assert.rejects(call(emu, {}), (err) => /not found|404/i.test(`${err.message} ${err.responseBody}`));
    } finally {
      await dev.stop();
    }
  });
});

test('after the emulator restarts the device reconnects within the back-off bound and answers again', async () => {
  const retryMaxMs = 2000;
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu, ['--retry-max-ms', String(retryMaxMs)]);
    try {
      assert.equal((await call(emu, { before: true })).result.status, 200);
      await emu.stop();
      await sleep(3000); // several failed attempts: the back-off ceiling reaches its maximum
      await emu.start({ freshRegistry: false });
      const restarted = Date.now();
      await dev.waitFor(/^connected$/, 2, retryMaxMs + 5000);
      const reconnectMs = Date.now() - restarted;
      assert.ok(reconnectMs <= retryMaxMs + 1500, `reconnected after ${reconnectMs} ms`);
      const { result } = await call(emu, { after: true });
      assert.deepEqual(result, { status: 200, payload: TUTORIAL_RESPONSE });
      assert.match(dev.err, /retry/, dev.dump());
    } finally {
      await dev.stop();
    }
  });
});

test('a short token lifetime is renewed by reconnecting before expiry, and calls keep working', async () => {
  await withEmulator({}, async (emu) => {
    const dev = await startDevice(emu, ['--token-lifetime', '6']);
    try {
      const deadline = Date.now() + 14000;
      let calls = 0;
      while (Date.now() < deadline) {
        // connectTimeoutInSeconds covers the few milliseconds in which the device is between connections.
        const { result } = await call(emu, { n: calls }, { connectTimeoutInSeconds: 5 });
        assert.equal(result.status, 200);
        calls++;
        await sleep(500);
      }
      assert.ok(dev.count(/^connected$/) >= 3, dev.dump());
      assert.ok((dev.err.match(/renew the SAS token/g) || []).length >= 2, dev.dump());
      assert.doesNotMatch(dev.err, /connection lost|retry \d/, dev.dump());
      assert.doesNotMatch(emu.log, /SAS token expired/);
    } finally {
      await dev.stop();
    }
  });
});

test('a certificate from another CA is refused: exit 4 with one line', async () => {
  const dir = tmpDir();
  try {
    const other = makeCerts(dir, 'DNS:localhost');
    await withEmulator({}, async (emu) => {
      const cs = emu.deviceConnectionString();
      let r = await runToExit(['--connection-string', cs, '--ca-file', other.ca]);
      assert.equal(r.code, EXIT.tls, r.err);
      assert.match(oneLine(r.err), /certificate did not verify: .*(self-signed|unable to get local issuer)/);
      // Without --ca-file the system store is used, which does not know the emulator's dev CA either.
      r = await runToExit(['--connection-string', cs]);
      assert.equal(r.code, EXIT.tls, r.err);
      oneLine(r.err);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a certificate for another host name is refused even from a trusted CA: exit 4 with one line', async () => {
  const dir = tmpDir();
  try {
    const wrong = makeCerts(dir, 'DNS:not-the-hub.example');
    await withEmulator({ extraArgs: ['--cert', wrong.cert, '--key', wrong.key] }, async (emu) => {
      const r = await runToExit(['--connection-string', emu.deviceConnectionString(), '--ca-file', wrong.ca]);
      assert.equal(r.code, EXIT.tls, r.err);
      assert.match(oneLine(r.err), /certificate did not verify: hostname mismatch/);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('rejected credentials, an unreachable host and a bad connection string: one line, distinct statuses', async () => {
  await withEmulator({}, async (emu) => {
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    let r = await runToExit(['--connection-string', emu.deviceConnectionString('device1', wrongKey), '--ca-file',
      caFile(emu)]);
    assert.equal(r.code, EXIT.auth, r.err);
    assert.match(oneLine(r.err), /authentication failed/);

    const expired = `HostName=${HOST};DeviceId=device1;SharedAccessSignature=SharedAccessSignature ` +
      'sr=localhost%2Fdevices%2Fdevice1&sig=AAAA&se=1000';
    r = await runToExit(['--connection-string', expired, '--ca-file', caFile(emu)]);
    assert.equal(r.code, EXIT.auth, r.err);
    assert.match(oneLine(r.err), /expired/);

    r = await runToExit(['--connection-string', emu.deviceConnectionString('nobody', DEVICE1_KEY), '--ca-file',
      caFile(emu)]);
    assert.equal(r.code, EXIT.auth, r.err);

    const closed = await freePort();
    r = await runToExit(['--connection-string', emu.deviceConnectionString(), '--ca-file', caFile(emu), '--port',
      String(closed), '--exit-on-connect-failure']);
    assert.equal(r.code, EXIT.unreachable, r.err);
    assert.match(oneLine(r.err), /cannot connect: unreachable/);

    r = await runToExit(['--connection-string', `HostName=${HOST};DeviceId=device1`]);
    assert.equal(r.code, EXIT.usage, r.err);
    assert.match(oneLine(r.err), /invalid connection string/);
  });
});

test('--count exits 0 after that many calls, and the plain dev port works when asked for', async () => {
  await withEmulator({}, async (emu) => {
    const dev = new Device(['--connection-string', emu.deviceConnectionString(), '--plain-port', String(emu.mqttPort),
      '--count', '2']);
    await dev.waitFor(/^connected$/);
    assert.equal((await call(emu, 1)).result.status, 200);
    assert.equal((await call(emu, 2)).result.status, 200);
    const { code } = await dev.exited;
    assert.equal(code, EXIT.ok, dev.dump());
  });
});
