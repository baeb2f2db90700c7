// sdk_jobs.test.js -- jobs against the official, unmodified Node SDKs: azure-iothub JobClient (scheduleDeviceMethod,
// scheduleTwinUpdate, getJob, cancelJob, createQuery) and Registry.createQuery('SELECT * FROM devices.jobs') as the
// back end, azure-iot-device + azure-iot-device-mqtt as the devices. A query matching 3 of 5 tagged devices, a
// future start time, cancel, an offline target, a job over 1,000 devices. Run through run_node_test.py (443/8883).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { JobClient, Registry } = require('azure-iothub');
const { withEmulator, randomId } = require('./lib/emulator');

function health(emu) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: emu.httpPort, path: '/health' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject);
  });
}

// Polls a condition on the emulator's state (the SDK subscribes asynchronously and says nothing when done).
async function until(what, fn, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function jobDone(jobs, jobId, ms) {
  return until(`job ${jobId} to finish`, async () => {
    const { jobStatus: result } = await jobs.getJob(jobId);
    return ['completed', 'failed', 'cancelled'].includes(result.status) ? result : null;
  }, ms);
}

// Five devices: dev0..dev4; dev0, dev2, dev4 tagged role=sensor (the job's target), the others role=gateway.
async function fiveDevices(emu, registry, prefix) {
  const devices = [];
  for (let i = 0; i < 5; i++) {
    const id = `${prefix}${i}`;
    const { responseBody: d } = await registry.create({ deviceId: id });
    await registry.updateTwin(id, { tags: { role: i % 2 === 0 ? 'sensor' : 'gateway' } }, '*');
    devices.push({ id, cs: emu.deviceConnectionString(id, d.authentication.symmetricKey.primaryKey) });
  }
  return devices;
}

// The jobs below give their methods a payload: with none the hub (and the emulator, iothub-protocol.md §3) sends the
// device an empty body, on which the Node device SDK's JSON.parse('') throws and it answers 400 itself without
// calling the handler (internal_client.js _addMethodCallback); the job then counts a completed (400) device.
async function connectAll(devices, onCall) {
  const clients = [];
  for (const d of devices) {
    const c = DeviceClient.fromConnectionString(d.cs, Mqtt);
    await c.open();
    c.onDeviceMethod('reboot', (req, res) => {
      onCall(d.id, req.payload);
      res.send(200, { rebooted: d.id }, () => {});
    });
    clients.push(c);
  }
  return clients;
}

test('scheduleDeviceMethod reaches the 3 of 5 matching devices; statistics, getJob, devices.jobs, createQuery', { timeout: 120000 }, async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const jobs = JobClient.fromConnectionString(emu.serviceConnectionString());
    const devices = await fiveDevices(emu, registry, 'm');
    const called = [];
    const clients = await connectAll(devices, (id, payload) => called.push([id, payload.delay]));
    try {
      await until('5 method listeners', async () => (await health(emu)).methodListeners >= 5);
      const jobId = randomId('method');
      const { jobStatus } = await jobs.scheduleDeviceMethod(jobId, "tags.role = 'sensor'",
        { methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 30 });
      assert.equal(jobStatus.jobId, jobId);
      assert.ok(['queued', 'running', 'completed'].includes(jobStatus.status), jobStatus.status);
      const done = await jobDone(jobs, jobId);
      assert.equal(done.status, 'completed');
      assert.equal(done.type, 'scheduleDeviceMethod');
      assert.deepEqual(done.deviceJobStatistics,
        { deviceCount: 3, failedCount: 0, succeededCount: 3, runningCount: 0, pendingCount: 0 });
      assert.ok(done.endTime && done.createdTime && done.startTime);
      assert.deepEqual(called.map((c) => c[0]).sort(), ['m0', 'm2', 'm4']);
      assert.ok(called.every((c) => c[1] === 1));
      // The per-device records: each has the device's status and payload.
      const q = registry.createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`, 2);
      // The promise form of Query.next() must be given the token: next() with no argument sends none (query.js
      // takes its own continuationToken only in the callback form), so a bare `await q.next()` loop re-reads page 1
      // forever, against the real hub too.
      const rows = [];
      do {
        const { result } = await q.next(q.continuationToken);
        rows.push(...result);
      } while (q.hasMoreResults);
      assert.equal(rows.length, 3); // pages of 2: 2 + 1
      assert.deepEqual(rows.map((r) => r.deviceId).sort(), ['m0', 'm2', 'm4']);
      for (const r of rows) {
        assert.equal(r.status, 'completed');
        assert.equal(r.jobType, 'scheduleDeviceMethod');
        assert.deepEqual(r.outcome.deviceMethodResponse, { status: 200, payload: { rebooted: r.deviceId } });
      }
      // JobClient.createQuery: the job is listed, filtered by type and status.
      const listed = await jobs.createQuery('scheduleDeviceMethod', 'completed').next();
      assert.ok(listed.result.some((j) => j.jobId === jobId));
      const none = await jobs.createQuery('scheduleUpdateTwin').next();
      assert.ok(!none.result.some((j) => j.jobId === jobId));
      // A second job with the same id: the hub's 409.
      await assert.rejects(jobs.scheduleDeviceMethod(jobId, "tags.role = 'sensor'", { methodName: 'reboot', payload: {} }),
        (err) => err.response && err.response.statusCode === 409);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

test('a future startTime stays scheduled, then runs; cancelJob cancels a scheduled job', { timeout: 120000 }, async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const jobs = JobClient.fromConnectionString(emu.serviceConnectionString());
    const devices = await fiveDevices(emu, registry, 's');
    const called = [];
    const clients = await connectAll(devices, (id) => called.push(id));
    try {
      await until('5 method listeners', async () => (await health(emu)).methodListeners >= 5);
      const jobId = randomId('later');
      const start = new Date(Date.now() + 3000);
      const { jobStatus } = await jobs.scheduleDeviceMethod(jobId, "tags.role = 'sensor'", { methodName: 'reboot', payload: {} },
        start, 600);
      assert.equal(jobStatus.status, 'scheduled');
      assert.equal(new Date(jobStatus.startTime).getTime(), start.getTime());
      const { jobStatus: still } = await jobs.getJob(jobId);
      assert.equal(still.status, 'scheduled');
      assert.equal(called.length, 0);
      const done = await jobDone(jobs, jobId);
      assert.equal(done.status, 'completed');
      assert.ok(Date.now() >= start.getTime());
      assert.equal(done.deviceJobStatistics.succeededCount, 3);
      assert.equal(called.length, 3);
      // cancel
      const cancelId = randomId('cancel');
      await jobs.scheduleDeviceMethod(cancelId, "tags.role = 'sensor'", { methodName: 'reboot', payload: {} },
        new Date(Date.now() + 60000), 600);
      const { jobStatus: cancelled } = await jobs.cancelJob(cancelId);
      assert.equal(cancelled.status, 'cancelled');
      const { jobStatus: after } = await jobs.getJob(cancelId);
      assert.equal(after.status, 'cancelled');
      assert.equal(called.length, 3);
      await assert.rejects(jobs.getJob('no-such-job'), (err) => err.response && err.response.statusCode === 404);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

test('scheduleTwinUpdate: the matching connected devices receive the desired patch', { timeout: 120000 }, async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const jobs = JobClient.fromConnectionString(emu.serviceConnectionString());
    const devices = await fiveDevices(emu, registry, 't');
    const clients = [];
    const patches = {};
    try {
      for (const d of devices) {
        const c = DeviceClient.fromConnectionString(d.cs, Mqtt);
        await c.open();
        clients.push(c);
        const twin = await c.getTwin();
        twin.on('properties.desired', (p) => { if (p.firmware) patches[d.id] = p; });
      }
      await until('5 desired listeners', async () => (await health(emu)).desiredListeners >= 5);
      const jobId = randomId('twin');
      await jobs.scheduleTwinUpdate(jobId, "tags.role = 'sensor'",
        { etag: '*', properties: { desired: { firmware: '2.0' } } });
      const done = await jobDone(jobs, jobId);
      assert.equal(done.status, 'completed');
      assert.equal(done.deviceJobStatistics.succeededCount, 3);
      await until('3 desired patches', async () => Object.keys(patches).length >= 3);
      assert.deepEqual(Object.keys(patches).sort(), ['t0', 't2', 't4']);
      const { responseBody: tw } = await registry.getTwin('t1');
      assert.equal(tw.properties.desired.firmware, undefined);
      const { responseBody: t0 } = await registry.getTwin('t0');
      assert.equal(t0.properties.desired.firmware, '2.0');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

test('an offline target counts as failed (DeviceNotOnline)', { timeout: 120000 }, async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const jobs = JobClient.fromConnectionString(emu.serviceConnectionString());
    const devices = await fiveDevices(emu, registry, 'o');
    const called = [];
    // Only o0 and o2 are online; o4 matches the query and is offline.
    const clients = await connectAll([devices[0], devices[2]], (id) => called.push(id));
    try {
      await until('2 method listeners', async () => (await health(emu)).methodListeners >= 2);
      const jobId = randomId('offline');
      await jobs.scheduleDeviceMethod(jobId, "tags.role = 'sensor'", { methodName: 'reboot', payload: {} });
      const done = await jobDone(jobs, jobId);
      assert.deepEqual(done.deviceJobStatistics,
        { deviceCount: 3, failedCount: 1, succeededCount: 2, runningCount: 0, pendingCount: 0 });
      assert.deepEqual(called.sort(), ['o0', 'o2']);
      const q = registry.createQuery(`SELECT * FROM devices.jobs WHERE deviceId = 'o4'`);
      const { result } = await q.next();
      assert.equal(result.length, 1);
      assert.equal(result[0].status, 'failed');
      assert.equal(result[0].error.code, 'DeviceNotOnline');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

test('a job over 1,000 devices completes within its max execution time', { timeout: 120000 }, async () => {
  await withEmulator({}, async (emu) => {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const jobs = JobClient.fromConnectionString(emu.serviceConnectionString());
    for (let b = 0; b < 11; b++) {
      const batch = [];
      for (let i = 0; i < 100; i++) batch.push({ deviceId: `bulk${b * 100 + i}` });
      await registry.addDevices(batch);
    }
    const jobId = randomId('big');
    const started = Date.now();
    await jobs.scheduleTwinUpdate(jobId, "STARTSWITH(deviceId, 'bulk')",
      { properties: { desired: { wave: 1 } } }, new Date(), 120);
    const done = await jobDone(jobs, jobId, 120000);
    assert.equal(done.status, 'completed');
    assert.equal(done.deviceJobStatistics.deviceCount, 1100);
    assert.equal(done.deviceJobStatistics.succeededCount, 1100);
    assert.ok(Date.now() - started < 120000);
    // And a method job over them (all offline): every device fails, the job still completes.
    const mId = randomId('bigm');
    await jobs.scheduleDeviceMethod(mId, "STARTSWITH(deviceId, 'bulk')", { methodName: 'ping' }, new Date(), 120);
    const m = await jobDone(jobs, mId, 120000);
    assert.equal(m.status, 'completed');
    assert.equal(m.deviceJobStatistics.failedCount, 1100);
  });
});

test('a job running when the emulator stops is failed after the restart; finished jobs survive', { timeout: 120000 }, async () => {
  const { Emulator } = require('./lib/emulator');
  const emu = new Emulator({});
  await emu.start();
  try {
    const registry = Registry.fromConnectionString(emu.serviceConnectionString());
    const jobs = JobClient.fromConnectionString(emu.serviceConnectionString());
    await fiveDevices(emu, registry, 'r');
    // r0 is offline and the call waits up to 300 s for it to connect: the job stays running. (No device client: one
    // connected across the SIGKILL kept node alive for 4 minutes in the SDK's retry loop.) JobClient drops
    // connectTimeoutInSeconds, so this job goes through the client's own REST client with the whole body.
    const runningId = randomId('run');
    await new Promise((resolve, reject) => jobs._restApiClient.executeApiCall('PUT',
      `/jobs/v2/${runningId}?api-version=2021-04-12`, { 'Content-Type': 'application/json; charset=utf-8' },
      { jobId: runningId, type: 'scheduleDeviceMethod', queryCondition: "deviceId = 'r0'", startTime: null,
        maxExecutionTimeInSeconds: 600,
        cloudToDeviceMethod: { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 30, connectTimeoutInSeconds: 300 } },
      (err) => (err ? reject(err) : resolve())));
    await until('the job to run', async () => (await jobs.getJob(runningId)).jobStatus.deviceJobStatistics.runningCount === 1);
    const doneId = randomId('done');
    await jobs.scheduleTwinUpdate(doneId, "deviceId = 'r2'", { properties: { desired: { y: 2 } } });
    await jobDone(jobs, doneId);
    const laterId = randomId('sched');
    await jobs.scheduleTwinUpdate(laterId, "deviceId = 'r1'", { properties: { desired: { x: 1 } } },
      new Date(Date.now() + 3600000), 600);
    await emu.stop('SIGKILL'); // as a crash: the job is still running in the store
    await emu.start({ freshRegistry: false });
    const { jobStatus: failed } = await jobs.getJob(runningId);
    assert.equal(failed.status, 'failed');
    assert.deepEqual(failed.deviceJobStatistics,
      { deviceCount: 1, failedCount: 1, succeededCount: 0, runningCount: 0, pendingCount: 0 });
    const { jobStatus: done } = await jobs.getJob(doneId);
    assert.equal(done.status, 'completed');
    assert.equal(done.deviceJobStatistics.succeededCount, 1);
    const { jobStatus: sched } = await jobs.getJob(laterId);
    assert.equal(sched.status, 'scheduled');
  } catch (err) {
    emu.dumpLog();
    throw err;
  } finally {
    await emu.stop();
  }
});
