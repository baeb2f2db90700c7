// dashboard_browser.test.js -- the live dashboard in a real browser: Debian's chromium, headless, driven by
// playwright-core. An official Node SDK device (azure-iot-device-mqtt) connects and the page shows device1 go
// online; DeviceMethod is invoked from the page and the device's answer shown; a desired property edited on the
// page reaches the device; telemetry and a C2D message go both ways; a job's progress; the hub, query and
// events views; an emulator bound beyond loopback asks for the iothubowner key, and there the page creates,
// disables, copies the connection string of (only when asked) and deletes a device; device-supplied strings full
// of HTML and a device id full of URL characters are shown as text and run nothing; a DNS-rebound or cross-site
// page is refused the /emulator routes, the same-origin page is not. A screenshot of each page
// goes to IOTHUB_SCREENSHOT_DIR (ctest sets it under the build dir: CI keeps it as an artefact). Run through
// run_node_test.py (fixed port 8883); ctest reports it SKIPPED (77) when /usr/bin/chromium is missing.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { Client: DeviceClient, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { withEmulator, OWNER_KEY } = require('./lib/emulator');

const CHROMIUM = process.env.IOTHUB_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.IOTHUB_SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-shots-'));
fs.mkdirSync(SHOTS, { recursive: true });

async function withBrowser(fn, extraArgs = []) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', ...extraArgs] });
  try {
    const context = await browser.newContext({ viewport: { width: 1366, height: 860 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write']);
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // A Content-Security-Policy refusal is a console error, not a page error: it counts too.
    page.on('console', (m) => { if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text()); });
    page.setDefaultTimeout(15000);
    await fn(page, errors);
  } finally {
    await browser.close();
  }
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function once(emitter, event, pred = () => true) {
  return new Promise((resolve) => {
    const on = (...args) => {
      if (pred(...args)) {
        emitter.removeListener(event, on);
        resolve(args);
      }
    };
    emitter.on(event, on);
  });
}

test('the dashboard follows an SDK device and acts on it', { timeout: 120000 }, async () => {
  await withEmulator({}, async (emu) => {
    await withBrowser(async (page, errors) => {
      const base = `http://127.0.0.1:${emu.httpPort}`;
      await page.goto(`${base}/#/devices`);
      const row = page.locator('tr[data-device="device1"]');
      await row.locator('[data-state="Disconnected"]').waitFor();
      await page.locator('#live.on').waitFor(); // the event stream is up before the device connects

      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
      device.onDeviceMethod('DeviceMethod', (req, res) =>
        res.send(200, { Response: 'This is the response from the device', got: req.payload }, () => {}));
      await device.open();
      try {
        await row.locator('[data-state="Connected"]').waitFor(); // live, from the stream: no reload
        await shot(page, 'devices');

        const twin = await device.getTwin();
        await page.click('tr[data-device="device1"] a');
        await page.locator('#conn[data-state="Connected"]').waitFor();

        // Direct method from the page: the device's status and payload are shown.
        await page.fill('#method-payload', '{"method_number":"42"}');
        await page.click('#method-invoke');
        await page.locator('#method-result', { hasText: 'status 200' }).waitFor();
        const answer = await page.textContent('#method-result');
        assert.match(answer, /This is the response from the device/);
        assert.match(answer, /"method_number": "42"/);

        // A desired property edited on the page reaches the device.
        const desired = once(twin, 'properties.desired', (p) => p.color === 'red');
        await page.fill('#desired', '{"color":"red"}');
        await page.click('#desired-send');
        const [patch] = await desired;
        assert.equal(patch.color, 'red');
        await page.locator('#twin', { hasText: '"color": "red"' }).waitFor();

        // Telemetry from the device appears with its properties.
        const msg = new Message(JSON.stringify({ temperature: 21.5 }));
        msg.properties.add('alert', 'none');
        await device.sendEvent(msg);
        const telRow = page.locator('#telemetry tr[data-telemetry]', { hasText: 'temperature' });
        await telRow.waitFor();
        assert.match(await telRow.textContent(), /"alert":"none"/);

        // A C2D message sent from the page reaches the device.
        const c2d = once(device, 'message');
        await page.fill('#c2d-body', 'hello device');
        await page.fill('#c2d-props', '{"kind":"greeting"}');
        await page.click('#c2d-send');
        const [m] = await c2d;
        assert.equal(m.data.toString(), 'hello device');
        assert.equal(m.properties.getValue('kind'), 'greeting');
        device.complete(m, () => {});
        await page.locator('#c2d-result', { hasText: 'Queued as' }).waitFor();
        await shot(page, 'device');
        // The README's picture (docs/dashboard.png): the first screen of the device view.
        await page.screenshot({ path: path.join(SHOTS, 'readme.png'), clip: { x: 0, y: 0, width: 1366, height: 780 } });

        // The hub view counts the connection and the call.
        await page.click('nav a[data-view="hub"]');
        await page.locator('#c-connections', { hasText: '1' }).waitFor();
        assert.ok(Number(await page.textContent('#c-calls')) >= 1);
        await page.locator('#groups', { hasText: '$Default' }).waitFor();
        // A job on the matching devices shows its progress to the end.
        await page.fill('#job-query', "deviceId = 'device1'");
        await page.click('#job-run');
        await page.locator('#job-progress', { hasText: 'completed' }).waitFor({ timeout: 30000 });
        assert.match(await page.textContent('#job-progress'), /1 succeeded/);
        await shot(page, 'hub');

        // Query: rows, and the hub's error code and message for a bad query.
        await page.click('nav a[data-view="query"]');
        await page.fill('#query', "SELECT * FROM devices WHERE deviceId = 'device1'");
        await page.click('#query-run');
        await page.locator('#query-result', { hasText: '"deviceId": "device1"' }).waitFor();
        await shot(page, 'query');
        await page.fill('#query', 'SELECT FROM WHERE');
        await page.keyboard.press('Control+Enter'); // the keyboard runs it too
        await page.locator('main .error', { hasText: 'ArgumentInvalid' }).waitFor();

        await page.click('nav a[data-view="events"]');
        await page.locator('#event-list li[data-type="method"]', { hasText: 'DeviceMethod' }).first().waitFor();
        await page.locator('#event-list li[data-type="twin"]').first().waitFor();
        await page.locator('#event-list li[data-type="connection"]').first().waitFor();
        await shot(page, 'events');
      } finally {
        await device.close();
      }
      await page.click('nav a[data-view="devices"]');
      await page.locator('tr[data-device="device1"] [data-state="Disconnected"]').waitFor();
      assert.deepEqual(errors, []);
    });
  });
});

// Everything a device or a service user supplies reaches the page as text, never as markup: a hostile device id
// (every character the registry allows that means something in a URL or in HTML attributes), reported
// properties, telemetry body and properties, and a method answer full of HTML. Nothing runs, no element is made.
// README "Browsers and the /emulator routes", with the headers chromium really sends: evil.example is resolved to
// 127.0.0.1 (a DNS rebinding done), so a page at http://evil.example:port is same-origin with the emulator as
// far as the browser knows; and from there a cross-site write to http://127.0.0.1:port. All refused, nothing
// changed; the same calls from the page opened as 127.0.0.1 work.
test('a rebound or cross-site page cannot use the /emulator routes; the same-origin page can', { timeout: 60000 }, async () => {
  await withEmulator({}, async (emu) => {
    const headerless = (method, p) => new Promise((resolve, reject) => {
      const req = require('node:http').request({ host: '127.0.0.1', port: emu.httpPort, method, path: p }, (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
      });
      req.on('error', reject);
      req.end();
    });
    await withBrowser(async (page) => {
      const fault = JSON.stringify({ fault: 'refuseConnect', deviceId: 'device1', seconds: 60 });
      await page.goto(`http://evil.example:${emu.httpPort}/`);
      const rebound = await page.evaluate(async (body) => {
        const get = await fetch('/emulator/telemetry');
        const post = await fetch('/emulator/faults', { method: 'POST', body });
        const put = await fetch('/emulator/consumergroups/evilgroup', { method: 'PUT' });
        return { get: [get.status, await get.text()], post: post.status, put: put.status };
      }, fault);
      assert.equal(rebound.get[0], 403);
      assert.match(rebound.get[1], /ErrorCode:Forbidden;.*DNS rebinding/);
      assert.deepEqual([rebound.post, rebound.put], [403, 403]);
      // a cross-site form POST (text/plain: no preflight) from another site's page to the loopback address
      await page.route('http://attacker.example/', (route) => route.fulfill({ contentType: 'text/html', body:
        `<form method="POST" enctype="text/plain" action="http://127.0.0.1:${emu.httpPort}/emulator/faults">` +
        `<input name='{"fault":"refuseConnect","deviceId":"device1","seconds":60,"x":"' value='"}'></form>` }));
      await page.goto('http://attacker.example/');
      await Promise.all([page.waitForNavigation(), page.evaluate(() => document.forms[0].submit())]);
      assert.match(await page.textContent('body'), /ErrorCode:Forbidden;.*cross-site/);
      assert.match(emu.log, /refused, a browser's request and it is a cross-site request/);
      assert.deepEqual((await headerless('GET', '/emulator/faults')).body.faults, []);
      assert.ok(!(await headerless('GET', '/emulator/consumergroups')).body.includes('evilgroup'));

      await page.goto(`http://127.0.0.1:${emu.httpPort}/`);
      const same = await page.evaluate(async (body) => {
        const post = await fetch('/emulator/faults', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        const put = await fetch('/emulator/consumergroups/pagegroup', { method: 'PUT' });
        const get = await fetch('/emulator/telemetry');
        return [post.status, put.status, get.status];
      }, fault);
      assert.deepEqual(same, [201, 201, 200]);
      assert.equal((await headerless('GET', '/emulator/faults')).body.faults.length, 1);
    }, ['--host-resolver-rules=MAP evil.example 127.0.0.1']);
  });
});

test('device-supplied strings are shown as text, never run (XSS)', { timeout: 120000 }, async () => {
  await withEmulator({}, async (emu) => {
    await withBrowser(async (page, errors) => {
      const evil = '<img src=x onerror="window.__xss=1">';
      const evilKey = '<img/src=x/onerror=alert(1)>'; // a twin key: no space, '.' or '$'
      const hostileId = "x'#?%41(y)=!$@";
      await page.goto(`http://127.0.0.1:${emu.httpPort}/#/devices`);
      await page.locator('#live.on').waitFor();
      // A device id that needs encoding everywhere: created, listed, opened and sent a C2D message from the page.
      await page.fill('#new-device', hostileId);
      await page.keyboard.press('Enter');
      const hostileRow = page.locator('#devices tbody tr', { hasText: hostileId });
      await hostileRow.waitFor();
      await hostileRow.locator('a').click();
      await page.locator('#twin', { hasText: '"desired"' }).waitFor();
      assert.equal(await page.textContent('main h2'), `${hostileId} Disconnected`);
      await page.click('#c2d-send');
      await page.locator('#c2d-result', { hasText: 'Queued as' }).waitFor();

      const device = DeviceClient.fromConnectionString(emu.deviceConnectionString(), Mqtt);
      device.onDeviceMethod('DeviceMethod', (req, res) => res.send(200, { html: evil, [evilKey]: 1 }, () => {}));
      await device.open();
      try {
        const twin = await device.getTwin();
        await new Promise((res, rej) => twin.properties.reported.update({ [evilKey]: `${evil}<script>window.__xss=2</script>` },
          (e) => (e ? rej(e) : res())));
        const msg = new Message(`${evil}<svg onload="window.__xss=3">`);
        msg.properties.add('<b onmouseover="window.__xss=4">k</b>', evil);
        await page.goto(`http://127.0.0.1:${emu.httpPort}/#/device/device1`);
        await page.locator('#conn[data-state="Connected"]').waitFor();
        await device.sendEvent(msg);
        await page.locator('#telemetry tr[data-telemetry]', { hasText: '<svg onload' }).waitFor();
        await page.locator('#twin', { hasText: '<script>window.__xss=2</script>' }).waitFor();
        await page.click('#method-invoke');
        await page.locator('#method-result', { hasText: 'status 200' }).waitFor();
        assert.ok((await page.textContent('#method-result')).includes('<img src=x onerror='));
        await page.click('nav a[data-view="events"]');
        await page.locator('#all-telemetry tr', { hasText: '<b onmouseover' }).first().waitFor();
        await shot(page, 'xss-events');
        const dom = await page.evaluate(() => ({ xss: window.__xss, img: document.querySelectorAll('img, svg, script:not([src]), b').length }));
        assert.deepEqual(dom, { xss: undefined, img: 0 });
      } finally {
        await device.close();
      }
      assert.deepEqual(errors, []);
    });
  });
});

test('the page signs its own tokens (HMAC-SHA256 in JavaScript, RFC 4231 vectors); dark and light follow the system', { timeout: 60000 }, async () => {
  await withEmulator({}, async (emu) => {
    await withBrowser(async (page) => {
      await page.goto(`http://127.0.0.1:${emu.httpPort}/#/hub`);
      const got = await page.evaluate(async () => {
        const m = await import('/dashboard/sha256.js');
        const e = new TextEncoder();
        return [m.hex(m.sha256(e.encode('abc'))), m.hex(m.hmacSha256(new Uint8Array(20).fill(0x0b), e.encode('Hi There'))),
          m.hex(m.hmacSha256(e.encode('Jefe'), e.encode('what do ya want for nothing?'))),
          m.hex(m.sha256(e.encode('a'.repeat(1000))))];
      });
      assert.deepEqual(got, ['ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
        'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
        '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
        '41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3']);
      // Light and dark follow the system setting.
      const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      await page.emulateMedia({ colorScheme: 'light' });
      const light = await bg();
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.locator('#c-devices').waitFor();
      assert.notEqual(await bg(), light);
      await shot(page, 'hub-dark');
    });
  });
});

test('bound beyond loopback, the page asks for the iothubowner key once and keeps it in the tab', { timeout: 60000 }, async () => {
  await withEmulator({ extraArgs: ['--bind', '0.0.0.0'] }, async (emu) => {
    await withBrowser(async (page) => {
      await page.goto(`http://127.0.0.1:${emu.httpPort}/#/devices`);
      await page.locator('#key-dialog[open]').waitFor();
      await shot(page, 'key-prompt');
      await page.fill('#key-input', 'HostName=x;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA');
      await page.keyboard.press('Enter');
      // A wrong key: the hub refuses it and the page asks again.
      await page.locator('#key-dialog[open]').waitFor();
      await page.fill('#key-input', `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY}`);
      await page.keyboard.press('Enter');
      await page.locator('tr[data-device="device1"]').waitFor();
      await page.locator('#live.on').waitFor();
      // Kept for the tab: a reload does not ask again; the key is never shown on the page.
      await page.reload();
      await page.locator('tr[data-device="device1"]').waitFor();
      assert.equal(await page.locator('#key-dialog[open]').count(), 0);
      assert.ok(!(await page.content()).includes(OWNER_KEY));

      // Create, disable, copy the connection string of (only when asked), and delete a device.
      await page.fill('#new-device', 'dash-dev');
      await page.keyboard.press('Enter');
      const row = page.locator('tr[data-device="dash-dev"]');
      await row.waitFor();
      await row.getByRole('button', { name: 'Disable' }).click();
      await row.getByRole('button', { name: 'Enable' }).waitFor();
      assert.match(await row.textContent(), /disabled/);
      assert.ok(!(await page.content()).includes('SharedAccessKey='));
      await row.getByRole('button', { name: 'Copy connection string' }).click();
      await page.locator('#toast', { hasText: 'copied' }).waitFor();
      const cs = await page.evaluate(() => navigator.clipboard.readText());
      assert.match(cs, /^HostName=localhost;DeviceId=dash-dev;SharedAccessKey=[A-Za-z0-9+/]{43}=$/);
      // Its modules: create one, copy its connection string, delete it.
      await row.locator('a').click();
      await page.fill('#new-module', 'm1');
      await page.keyboard.press('Enter');
      const mrow = page.locator('tr[data-module="m1"]');
      await mrow.locator('[data-state="Disconnected"]').waitFor();
      await mrow.getByRole('button', { name: 'Copy connection string' }).click();
      await page.waitForFunction(async () => (await navigator.clipboard.readText()).includes('ModuleId=m1'));
      assert.match(await page.evaluate(() => navigator.clipboard.readText()),
        /^HostName=localhost;DeviceId=dash-dev;ModuleId=m1;SharedAccessKey=[A-Za-z0-9+/]{43}=$/);
      page.once('dialog', (d) => d.accept());
      await mrow.getByRole('button', { name: 'Delete' }).click();
      await mrow.waitFor({ state: 'detached' });
      await page.click('nav a[data-view="devices"]');
      page.once('dialog', (d) => d.accept());
      await row.getByRole('button', { name: 'Delete' }).click();
      await row.waitFor({ state: 'detached' });
    });
  });
});
