// service_wire.test.js -- iothub-service on the wire, against a scripted fake hub (node:http on a free port,
// reached with --url): the exact requests the official SDKs send (path encoding, headers, body, a SAS token
// that verifies), retries (429/503 and refused connections retried, a broken method call not), every exit
// status, the job commands (the Node JobClient's PUT/GET/cancel/query, get --wait's polling), and that no key
// or token leaks to the output. Needs no emulator and no npm packages:
// IOTHUB_SERVICE_BIN=.../iothub-service node --test service_wire.test.js
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const crypto = require('node:crypto');
const { runProgram } = require('./lib/run');

const BIN = process.env.IOTHUB_SERVICE_BIN || 'iothub-service';
const OWNER_KEY = 'vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js=';
const DEVICE_KEY = 'Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM=';
const CS = `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY}`;
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// Runs iothub-service; resolves {code, stdout, stderr}. Async: the fake hub lives in this process.
const run = (args, env = {}) => runProgram(BIN, args, env);

// A fake hub: answers each request with the next scripted reply ({status, body, headers} or 'reset').
async function fakeHub(replies) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const r = replies.length > 1 ? replies.shift() : replies[0];
      if (r === 'reset') {
        req.socket.destroy();
        return;
      }
      const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
      res.writeHead(r.status, { 'content-type': 'application/json; charset=utf-8', ...(r.headers || {}) });
      res.end(r.status === 204 ? undefined : text);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { requests, url, close: () => new Promise((resolve) => server.close(resolve)) };
}

async function withHub(replies, fn) {
  const hub = await fakeHub(replies);
  try {
    return await fn(hub);
  } finally {
    await hub.close();
  }
}

function svc(hub, ...args) {
  return run([...args, '--url', hub.url, '--connection-string', CS]);
}

// Verifies a SAS token the way the hub does: HMAC-SHA256 over sr + "\n" + se with the base64 key.
function checkToken(token, { sr, key, skn }) {
  assert.match(token, /^SharedAccessSignature /);
  const fields = Object.fromEntries(token.slice('SharedAccessSignature '.length).split('&').map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
  assert.equal(decodeURIComponent(fields.sr), sr);
  assert.equal(fields.skn, skn);
  const se = Number(fields.se);
  const now = Date.now() / 1000;
  assert.ok(se > now + 3500 && se < now + 3700, `se ${se} is about an hour from now`);
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${fields.sr}\n${fields.se}`)
    .digest('base64');
  assert.equal(decodeURIComponent(fields.sig), sig);
}

function noSecrets(out) {
  for (const s of [OWNER_KEY, DEVICE_KEY, 'SharedAccessSignature', 'sig=']) {
    assert.ok(!out.stdout.includes(s) && !out.stderr.includes(s), `output leaks ${s}`);
  }
}

const envelopeB = (code, message) => ({
  Message: JSON.stringify({ errorCode: code, trackingId: 't', message, info: {}, timestampUtc: 'x' }),
  ExceptionMessage: '',
});

test('invoke sends the SDK request and prints the tutorial lines', async () => {
  await withHub([{ status: 200, body: '{"status":200,"payload":{"Response":"ok","n":0.10}}' }], async (hub) => {
    const out = await svc(hub, 'invoke', 'dev#1', '--module', 'm?1 x', '--payload', ' {"a": 1} ', '--timeout',
      '10', '--connect-timeout', '2');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(hub.requests.length, 1);
    const r = hub.requests[0];
    assert.equal(r.method, 'POST');
    assert.equal(r.url, '/twins/dev%231/modules/m%3F1%20x/methods?api-version=2021-04-12');
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(r.headers.accept, 'application/json');
    assert.equal(r.headers['user-agent'], 'iothub-emulator-c/0.1.0');
    assert.match(r.headers['request-id'], UUID4);
    assert.equal(r.headers.expect, undefined);
    checkToken(r.headers.authorization, { sr: 'localhost', key: OWNER_KEY, skn: 'iothubowner' });
    assert.equal(r.body,
      '{"methodName":"DeviceMethod","responseTimeoutInSeconds":10,"connectTimeoutInSeconds":2,"payload":{"a": 1}}');
    assert.equal(out.stdout, 'Invoking direct method for device: dev#1, module: m?1 x\nMethod name: DeviceMethod\n'
      + 'Method payload:  {"a": 1} \nResponse status: 200, payload:\n\t{"Response":"ok","n":0.10}\n');
    assert.equal(out.stderr, '');
    noSecrets(out);
  });
});

test('invoke defaults are the tutorial call; --json prints one object', async () => {
  await withHub([{ status: 200, body: { status: 404, payload: null } }], async (hub) => {
    const out = await svc(hub, 'invoke', 'device1', '--json');
    assert.equal(out.code, 0, 'a device status of 404 is still an answer');
    assert.equal(hub.requests[0].body,
      '{"methodName":"DeviceMethod","responseTimeoutInSeconds":60,"connectTimeoutInSeconds":0,'
      + '"payload":{"method_number":"42"}}');
    assert.deepEqual(JSON.parse(out.stdout),
      { deviceId: 'device1', moduleId: null, methodName: 'DeviceMethod', status: 404, payload: null });
  });
});

test('invoke --payload null sends "payload":null', async () => {
  await withHub([{ status: 200, body: { status: 200 } }], async (hub) => {
    const out = await svc(hub, 'invoke', 'd', 'M', '--payload', 'null');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(hub.requests[0].body).payload, null);
    assert.match(out.stdout, /Response status: 200, payload:\n\tnull\n$/);
  });
});

test('hub errors map to distinct exit statuses with one stderr line', async () => {
  const cases = [
    [404, envelopeB(404103, 'Device not online.'), { 'iothub-errorcode': 'DeviceNotOnline' }, 6, /device not online: Device not online\. \(404103 DeviceNotOnline, HTTP 404\)/],
    [504, envelopeB(504101, 'Timed out waiting for the response from device.'), {}, 7, /timeout: Timed out waiting .*504101 GatewayTimeout/],
    [401, { Message: 'ErrorCode:IotHubUnauthorizedAccess;Unauthorized', ExceptionMessage: 'Tracking ID:x' }, {}, 4, /unauthorized: Unauthorized \(401002 IotHubUnauthorizedAccess, HTTP 401\)/],
    [404, { Message: 'ErrorCode:DeviceNotFound;nope', ExceptionMessage: '' }, {}, 5, /not found: nope \(404001 DeviceNotFound/],
    [400, envelopeB(400004, 'responseTimeoutInSeconds must be within [5; 300].'), {}, 8, /hub error: responseTimeoutInSeconds must be within \[5; 300\]\./],
    [500, 'internal\nsecond line', {}, 8, /hub error: internal \(HTTP 500\)/],
  ];
  for (const [status, body, headers, code, re] of cases) {
    await withHub([{ status, body, headers }], async (hub) => {
      const out = await svc(hub, 'invoke', 'device1', '--timeout', '5');
      assert.equal(out.code, code, `HTTP ${status}: ${out.stderr}`);
      assert.match(out.stderr, re);
      assert.equal(out.stderr.split('\n').length, 2, 'exactly one line');
      assert.equal(hub.requests.length, 1, 'not retried');
      noSecrets(out);
    });
  }
});

test('--json on a hub error prints the error object too', async () => {
  await withHub([{ status: 404, body: envelopeB(404103, 'offline') }], async (hub) => {
    const out = await svc(hub, 'invoke', 'device1', '--json');
    assert.equal(out.code, 6);
    const o = JSON.parse(out.stdout);
    assert.deepEqual(o.error, { exitStatus: 6, httpStatus: 404, errorCode: 404103, errorName: 'DeviceNotOnline',
      message: 'offline' });
  });
});

test('429 and 503 are retried with back-off; a fresh token each time', async () => {
  const ok = { status: 200, body: { status: 200, payload: 1 } };
  await withHub([{ status: 503, body: '' }, { status: 429, body: '' }, ok], async (hub) => {
    const t0 = Date.now();
    const out = await svc(hub, 'invoke', 'device1');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(hub.requests.length, 3);
    assert.ok(Date.now() - t0 >= 1400, 'waited 0.5 s then 1 s');
    const ids = new Set(hub.requests.map((r) => r.headers['request-id']));
    assert.equal(ids.size, 1, 'one Request-Id for the logical call');
  });
  await withHub([{ status: 503, body: envelopeB(503001, 'busy') }], async (hub) => {
    const out = await svc(hub, 'invoke', 'device1');
    assert.equal(out.code, 8);
    assert.equal(hub.requests.length, 3, 'bounded: three tries');
    assert.match(out.stderr, /busy \(503001 ServiceUnavailable, HTTP 503\)/);
  });
});

test('a method call whose connection breaks is not retried; a registry read is', async () => {
  await withHub(['reset'], async (hub) => {
    const out = await svc(hub, 'invoke', 'device1');
    assert.equal(out.code, 3, out.stderr);
    assert.equal(hub.requests.length, 1);
    assert.match(out.stderr, /^iothub-service: the connection to the hub broke: /);
  });
  await withHub(['reset', { status: 200, body: { deviceId: 'd1', status: 'enabled' } }], async (hub) => {
    const out = await svc(hub, 'device', 'get', 'd1');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(hub.requests.length, 2);
  });
});

test('connection refused: retried, then exit 3', async () => {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const t0 = Date.now();
  const out = await run(['invoke', 'device1', '--url', `http://127.0.0.1:${port}`, '--connection-string', CS]);
  assert.equal(out.code, 3);
  assert.ok(Date.now() - t0 >= 1400, 'retried with back-off');
  assert.match(out.stderr, /^iothub-service: cannot connect to the hub: .*\n$/);
});

const identity = (id, extra = {}) => ({
  deviceId: id, etag: 'MA==', connectionState: 'Disconnected', status: 'enabled',
  authentication: { symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: OWNER_KEY }, type: 'sas' }, ...extra,
});

test('registry: create, get, list, delete requests and keyless output', async () => {
  await withHub([{ status: 200, body: identity('d 1') }], async (hub) => {
    const out = await svc(hub, 'device', 'create', 'd 1', '--primary-key', DEVICE_KEY, '--secondary-key', OWNER_KEY,
      '--disabled');
    assert.equal(out.code, 0, out.stderr);
    const r = hub.requests[0];
    assert.equal(r.method, 'PUT');
    assert.equal(r.url, '/devices/d%201?api-version=2021-04-12');
    assert.equal(r.headers['if-match'], undefined);
    assert.deepEqual(JSON.parse(r.body), { deviceId: 'd 1', status: 'disabled', authentication: { type: 'sas',
      symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: OWNER_KEY } } });
    assert.equal(out.stdout, 'deviceId: d 1\nstatus: enabled\nconnectionState: Disconnected\netag: MA==\n');
    noSecrets(out);
  });
  await withHub([{ status: 200, body: identity('d1') }], async (hub) => {
    const out = await svc(hub, 'device', 'get', 'd1', '--json');
    assert.equal(out.code, 0);
    assert.equal(hub.requests[0].method, 'GET');
    assert.deepEqual(JSON.parse(out.stdout).authentication, { type: 'sas' });
    noSecrets(out);
  });
  await withHub([{ status: 200, body: [identity('a'), identity('b', { status: 'disabled' })] }], async (hub) => {
    const out = await svc(hub, 'device', 'list', '--top', '5');
    assert.equal(out.code, 0);
    assert.equal(hub.requests[0].url, '/devices/?top=5&api-version=2021-04-12');
    assert.equal(out.stdout, 'a\tenabled\tDisconnected\nb\tdisabled\tDisconnected\n');
  });
  await withHub([{ status: 200, body: [{ deviceId: 'd', moduleId: 'm', connectionState: 'Connected' }] }], async (hub) => {
    const out = await svc(hub, 'module', 'list', 'd');
    assert.equal(out.code, 0);
    assert.equal(hub.requests[0].url, '/devices/d/modules?api-version=2021-04-12');
    assert.equal(out.stdout, 'm\t-\tConnected\n');
  });
  await withHub([{ status: 204 }], async (hub) => {
    const out = await svc(hub, 'module', 'delete', 'd', 'm/1');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(hub.requests[0].method, 'DELETE');
    assert.equal(hub.requests[0].url, '/devices/d/modules/m%2F1?api-version=2021-04-12');
    assert.equal(hub.requests[0].headers['if-match'], '"*"');
    assert.equal(out.stdout, 'Deleted module m/1 of device d\n');
  });
  await withHub([{ status: 409, body: { Message: 'ErrorCode:DeviceAlreadyExists;exists', ExceptionMessage: '' } }],
    async (hub) => {
      const out = await svc(hub, 'device', 'create', 'd1');
      assert.equal(out.code, 8);
      assert.equal(hub.requests.length, 1, 'a create is not retried');
    });
});

test('connection-string and sas --device print what they are for', async () => {
  await withHub([{ status: 200, body: identity('d1') }], async (hub) => {
    const out = await svc(hub, 'device', 'connection-string', 'd1');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, `HostName=localhost;DeviceId=d1;SharedAccessKey=${DEVICE_KEY}\n`);
  });
  await withHub([{ status: 200, body: { ...identity('d1'), moduleId: 'm1' } }], async (hub) => {
    const out = await svc(hub, 'module', 'connection-string', 'd1', 'm1', '--json');
    assert.deepEqual(JSON.parse(out.stdout),
      { connectionString: `HostName=localhost;DeviceId=d1;ModuleId=m1;SharedAccessKey=${DEVICE_KEY}` });
  });
  await withHub([{ status: 200, body: identity('d1') }], async (hub) => {
    const out = await svc(hub, 'sas', '--device', 'd1');
    assert.equal(out.code, 0, out.stderr);
    checkToken(out.stdout.trim(), { sr: 'localhost/devices/d1', key: DEVICE_KEY, skn: undefined });
  });
});

test('sas --resource needs no hub; bad arguments exit 2', async () => {
  const out = await run(['sas', '--resource', 'myhub.azure-devices.net', '--key', OWNER_KEY, '--key-name',
    'iothubowner']);
  assert.equal(out.code, 0, out.stderr);
  checkToken(out.stdout.trim(), { sr: 'myhub.azure-devices.net', key: OWNER_KEY, skn: 'iothubowner' });
  const bad = [
    [['invoke']],
    [['invoke', 'd']], // no connection string anywhere
    [['invoke', 'd', '--connection-string', `HostName=h;DeviceId=d;SharedAccessKey=${DEVICE_KEY}`]],
    [['invoke', 'd', '--connection-string', 'garbage']],
    [['invoke', 'd', '--payload', '{nope', '--connection-string', CS, '--url', 'http://127.0.0.1:1']],
    [['invoke', 'd', '--connection-string', CS, '--url', 'ftp://x']],
    [['invoke', 'd', '--connection-string', CS, '--ca-file', '/nonexistent/ca.pem']],
    [['sas', '--resource', 'r', '--key', 'not base64!']],
  ];
  for (const [args] of bad) {
    const r = await run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    assert.ok(!r.stderr.includes(OWNER_KEY) && !r.stderr.includes(DEVICE_KEY));
  }
  const env = await run(['invoke', 'd', '--url', 'http://127.0.0.1:1', '--payload', '{nope'],
    { IOTHUB_CONNECTION_STRING: CS });
  assert.equal(env.code, 2);
  assert.match(env.stderr, /payload is not valid JSON/);
});

test('a 2xx answer that is not a method result exits 8', async () => {
  await withHub([{ status: 200, body: '<html>proxy</html>' }], async (hub) => {
    const out = await svc(hub, 'invoke', 'device1');
    assert.equal(out.code, 8);
    assert.match(out.stderr, /unexpected answer from the hub/);
  });
});

test('query follows a long continuation token whole, logs each page\'s row count, stops at an empty token', async () => {
  // A real hub's token is base64 JSON of any length; 3000 characters must go back exactly, not cut to a buffer.
  const token = 'eyJ0b2tlbiI6' + 'A'.repeat(3000) + '==';
  const page1 = { status: 200, body: [{ deviceId: 'a' }, { deviceId: 'b' }], headers: { 'x-ms-continuation': token } };
  const page2 = { status: 200, body: [{ deviceId: 'c' }] };
  await withHub([page1, page2], async (hub) => {
    const out = await svc(hub, 'query', 'SELECT * FROM devices', '--page-size', '2', '--json', '--verbose');
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout).map((r) => r.deviceId), ['a', 'b', 'c']);
    assert.equal(hub.requests.length, 2);
    assert.equal(hub.requests[0].headers['x-ms-continuation'], undefined);
    assert.equal(hub.requests[1].headers['x-ms-continuation'], token);
    assert.equal(hub.requests[1].headers['x-ms-max-item-count'], '2');
    assert.match(out.stderr, /query page 1: 2 rows, more follow/);
    assert.match(out.stderr, /query page 2: 1 rows, last page/);
  });
  // An empty token is no next page: asking again without one would fetch the first page forever.
  await withHub([{ status: 200, body: [{ deviceId: 'a' }], headers: { 'x-ms-continuation': '' } },
    { status: 200, body: [{ deviceId: 'again' }] }], async (hub) => {
    const out = await svc(hub, 'query', 'SELECT * FROM devices', '--json');
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), [{ deviceId: 'a' }]);
    assert.equal(hub.requests.length, 1);
  });
});

// ---- jobs (iothub-service job ...): the Node JobClient's requests ----

const jobAnswer = (status, stats = {}) => ({
  status: 200,
  body: { jobId: 'j 1', type: 'scheduleDeviceMethod', status,
    deviceJobStatistics: { deviceCount: 2, failedCount: 0, succeededCount: 0, runningCount: 0, pendingCount: 2, ...stats } },
});

test('job schedule-method and schedule-twin send the JobClient\'s PUT; a broken PUT is not retried', async () => {
  await withHub([jobAnswer('queued')], async (hub) => {
    const out = await svc(hub, 'job', 'schedule-method', 'j 1/#', '--query', "tags.role = 'sensor'", '--method',
      'reboot', '--payload', '{"delay": 1}', '--start', '2030-01-01T00:00:00Z', '--max-time', '600', '--timeout', '10');
    assert.equal(out.code, 0, out.stderr);
    const r = hub.requests[0];
    assert.equal(r.method, 'PUT');
    assert.equal(r.url, '/jobs/v2/j%201%2F%23?api-version=2021-04-12');
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    checkToken(r.headers.authorization, { sr: 'localhost', key: OWNER_KEY, skn: 'iothubowner' });
    assert.deepEqual(JSON.parse(r.body), { jobId: 'j 1/#', type: 'scheduleDeviceMethod',
      queryCondition: "tags.role = 'sensor'", startTime: '2030-01-01T00:00:00Z', maxExecutionTimeInSeconds: 600,
      cloudToDeviceMethod: { methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 10 } });
    assert.equal(JSON.parse(out.stdout).status, 'queued');
    assert.match(out.stdout, /\n {2}"jobId"/); // indented without --json
    noSecrets(out);
  });
  await withHub([jobAnswer('queued')], async (hub) => {
    const out = await svc(hub, 'job', 'schedule-twin', 'j2', '--query', 'deviceId = \'d\'', '--desired',
      '{"interval":30}', '--json');
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(hub.requests[0].body), { jobId: 'j2', type: 'scheduleUpdateTwin',
      queryCondition: "deviceId = 'd'", startTime: null, maxExecutionTimeInSeconds: 3600,
      updateTwin: { properties: { desired: { interval: 30 } } } });
    assert.equal(out.stdout.trim().split('\n').length, 1); // --json: compact
  });
  await withHub(['reset', jobAnswer('queued')], async (hub) => {
    const out = await svc(hub, 'job', 'schedule-twin', 'j3', '--query', 'x', '--tags', '{}');
    assert.equal(out.code, 3, out.stderr);
    assert.equal(hub.requests.length, 1);
  });
});

test('job get --wait polls until a final status, a progress line per change', async () => {
  await withHub([jobAnswer('running'), jobAnswer('running'),
    jobAnswer('running', { succeededCount: 1, runningCount: 1, pendingCount: 0 }),
    jobAnswer('completed', { succeededCount: 2, pendingCount: 0 })], async (hub) => {
    const out = await svc(hub, 'job', 'get', 'j 1', '--wait', '--json');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(hub.requests.length, 4);
    assert.ok(hub.requests.every((r) => r.method === 'GET' && r.url === '/jobs/v2/j%201?api-version=2021-04-12'));
    assert.equal(out.stderr, 'job j 1: running, 0 of 2 devices done (0 succeeded, 0 failed)\n'
      + 'job j 1: running, 1 of 2 devices done (1 succeeded, 0 failed)\n'
      + 'job j 1: completed, 2 of 2 devices done (2 succeeded, 0 failed)\n');
    assert.equal(JSON.parse(out.stdout).status, 'completed');
  });
  await withHub([jobAnswer('failed', { failedCount: 2, pendingCount: 0 })], async (hub) => {
    const out = await svc(hub, 'job', 'get', 'j 1', '--wait');
    assert.equal(out.code, 8, out.stderr);
    assert.equal(JSON.parse(out.stdout).status, 'failed');
  });
  await withHub([{ status: 404, body: { Message: 'ErrorCode:JobNotFound;Job j9 not found.' } }], async (hub) => {
    const out = await svc(hub, 'job', 'get', 'j9');
    assert.equal(out.code, 5);
    assert.equal(out.stdout, '');
    assert.equal(out.stderr, 'iothub-service: not found: Job j9 not found. (404002 JobNotFound, HTTP 404)\n');
  });
});

test('job cancel posts to /cancel; job list follows every page with its filters', async () => {
  await withHub([jobAnswer('cancelled')], async (hub) => {
    const out = await svc(hub, 'job', 'cancel', 'j1');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(hub.requests[0].method, 'POST');
    assert.equal(hub.requests[0].url, '/jobs/v2/j1/cancel?api-version=2021-04-12');
    assert.equal(JSON.parse(out.stdout).status, 'cancelled');
  });
  const page1 = { status: 200, body: [{ jobId: 'a' }], headers: { 'x-ms-continuation': 'next+1' } };
  await withHub([page1, { status: 200, body: [{ jobId: 'b' }] }], async (hub) => {
    const out = await svc(hub, 'job', 'list', '--type', 'scheduleUpdateTwin', '--status', 'completed', '--json',
      '--page-size', '1');
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), [{ jobId: 'a' }, { jobId: 'b' }]);
    assert.equal(hub.requests.length, 2);
    for (const r of hub.requests) {
      assert.equal(r.method, 'GET');
      assert.equal(r.url, '/jobs/v2/query?api-version=2021-04-12&jobType=scheduleUpdateTwin&jobStatus=completed');
    }
    assert.equal(hub.requests[0].headers['x-ms-continuation'], undefined);
    assert.equal(hub.requests[1].headers['x-ms-continuation'], 'next+1');
    assert.equal(hub.requests[1].headers['x-ms-max-item-count'], '1');
  });
});
