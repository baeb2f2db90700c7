// clients_twins.test.js -- our own clients and twins end to end against the emulator: iothub-device (--report,
// printing each desired patch, --echo-desired) as the device and iothub-service (twin get|update|replace,
// --module, --etag, query with paging) as the back end, over TLS with the emulator's CA, as a user runs them.
// Run through run_node_test.py (fixed ports 443/8883, IOTHUB_EMULATOR_BIN, IOTHUB_DEVICE_BIN, IOTHUB_SERVICE_BIN).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { withEmulator } = require('./lib/emulator');
const { runProgram } = require('./lib/run');

const caFile = (emu) => path.join(emu.dataDir, 'ca.pem');

function svc(emu, ...args) {
  return runProgram(process.env.IOTHUB_SERVICE_BIN,
    [...args, '--connection-string', emu.serviceConnectionString(), '--ca-file', caFile(emu)]);
}

async function svcJson(emu, ...args) {
  const out = await svc(emu, ...args, '--json');
  assert.equal(out.code, 0, `iothub-service ${args.join(' ')}: ${out.stderr}`);
  return JSON.parse(out.stdout);
}

// iothub-device with its stdout collected line by line; waitFor resolves when n lines match.
function startDevice(emu, args, cs = emu.deviceConnectionString()) {
  const proc = spawn(process.env.IOTHUB_DEVICE_BIN, ['--connection-string', cs, '--ca-file', caFile(emu), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const dev = { proc, lines: [], err: '', waiters: new Set() };
  let partial = '';
  proc.stdout.on('data', (d) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop();
    dev.lines.push(...lines);
    dev.waiters.forEach((w) => w());
  });
  proc.stderr.on('data', (d) => { dev.err += d.toString(); });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  dev.count = (re) => dev.lines.filter((l) => re.test(l)).length;
  dev.waitFor = (re, n = 1) => new Promise((resolve, reject) => {
    const check = () => {
      if (dev.count(re) >= n) {
        dev.waiters.delete(check);
        resolve(dev.lines.filter((l) => re.test(l)));
      }
    };
    dev.waiters.add(check);
    exited.then(() => reject(new Error(`device exited:\n${dev.lines.join('\n')}\n${dev.err}`)));
    check();
  });
  dev.stop = () => { proc.kill('SIGINT'); return exited; };
  return dev;
}

test('iothub-device reports, receives a desired patch from iothub-service and echoes it back', async () => {
  await withEmulator({}, async (emu) => {
    const dev = startDevice(emu, ['--report', '{"firmware":"1.0"}', '--echo-desired']);
    try {
      await dev.waitFor(/^connected$/);
      await dev.waitFor(/^Reported properties accepted \(rid r1, \$version 2\)$/);
      const t0 = await svcJson(emu, 'twin', 'get', 'device1');
      assert.equal(t0.properties.reported.firmware, '1.0');
      const t1 = await svcJson(emu, 'twin', 'update', 'device1', '{"properties":{"desired":{"interval":30}}}');
      assert.equal(t1.properties.desired.interval, 30);
      assert.equal(t1.properties.desired.$version, 2);
      const [line] = await dev.waitFor(/^Desired properties patch \(\$version 2\): /);
      assert.deepEqual(JSON.parse(line.replace(/^[^:]*: /, '')), { interval: 30, $version: 2 });
      await dev.waitFor(/^Reported properties accepted \(rid r2, \$version 3\)$/);
      const t2 = await svcJson(emu, 'twin', 'get', 'device1');
      assert.equal(t2.properties.reported.interval, 30); // echoed back without $version
      // the indented default output is the same document
      const plain = await svc(emu, 'twin', 'get', 'device1');
      assert.equal(plain.code, 0);
      assert.match(plain.stdout, /^{\n {2}"deviceId": "device1",/);
      // a stale etag is refused with the hub's 412 (exit 8), the current one accepted
      const stale = await svc(emu, 'twin', 'update', 'device1', '{"tags":{"a":1}}', '--etag', t0.etag);
      assert.equal(stale.code, 8);
      assert.match(stale.stderr, /PreconditionFailed/);
      const ok = await svcJson(emu, 'twin', 'update', 'device1', '{"tags":{"a":1}}', '--etag', t2.etag);
      assert.equal(ok.tags.a, 1);
      // replace: tags and desired are replaced; the device is told about the removed key (null)
      const r = await svcJson(emu, 'twin', 'replace', 'device1', '{"tags":{"b":2},"properties":{"desired":{"mode":"eco"}}}');
      assert.deepEqual(r.tags, { b: 2 });
      assert.equal(r.properties.desired.interval, undefined);
      const [rline] = await dev.waitFor(/^Desired properties patch \(\$version 3\): /);
      assert.deepEqual(JSON.parse(rline.replace(/^[^:]*: /, '')), { mode: 'eco', interval: null, $version: 3 });
      const bad = await svc(emu, 'twin', 'update', 'device1', '[1]');
      assert.equal(bad.code, 2);
      const ghost = await svc(emu, 'twin', 'get', 'ghost');
      assert.equal(ghost.code, 5);
    } finally {
      await dev.stop();
    }
  });
});

test('module twins through --module, and a module iothub-device receiving its desired patch', async () => {
  await withEmulator({}, async (emu) => {
    await svcJson(emu, 'module', 'create', 'device1', 'm1');
    const cs = (await svcJson(emu, 'module', 'connection-string', 'device1', 'm1')).connectionString;
    const dev = startDevice(emu, [], cs);
    try {
      await dev.waitFor(/^connected$/);
      const t = await svcJson(emu, 'twin', 'update', 'device1', '{"properties":{"desired":{"level":3}}}', '--module', 'm1');
      assert.equal(t.moduleId, 'm1');
      await dev.waitFor(/^Desired properties patch \(\$version 2\): {"level":3,"\$version":2}$/);
      const back = await svcJson(emu, 'twin', 'get', 'device1', '--module', 'm1');
      assert.equal(back.properties.desired.level, 3);
    } finally {
      await dev.stop();
    }
  });
});

test('iothub-service query pages through every row and prints one array; a parse error exits 8', async () => {
  await withEmulator({}, async (emu) => {
    for (let i = 0; i < 5; i++) {
      await svcJson(emu, 'device', 'create', `c${i}`);
      await svcJson(emu, 'twin', 'update', `c${i}`, `{"tags":{"g":"x","i":${i}}}`);
    }
    const out = await svc(emu, 'query', "SELECT deviceId, tags.i FROM devices WHERE tags.g = 'x'", '--page-size', '2',
      '--json', '--verbose');
    assert.equal(out.code, 0, out.stderr);
    const rows = JSON.parse(out.stdout);
    assert.deepEqual(rows.map((r) => r.deviceId), ['c0', 'c1', 'c2', 'c3', 'c4']);
    assert.equal(rows[3].i, 3);
    assert.equal((out.stderr.match(/query page \d+/g) || []).length, 3); // 2 + 2 + 1
    const count = await svcJson(emu, 'query', 'SELECT COUNT() AS n FROM devices');
    assert.deepEqual(count, [{ n: 6 }]);
    const bad = await svc(emu, 'query', 'SELECT * FROM devices WHERE');
    assert.equal(bad.code, 8);
    assert.match(bad.stderr, /Line 1:/);
  });
});
