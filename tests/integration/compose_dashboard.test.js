// compose_dashboard.test.js -- the dashboard of `docker compose up`'s emulator from the host, as a user meets
// it: Debian's chromium (headless, playwright-core) opens the URL the container printed; the emulator listens
// on 0.0.0.0 there, so the page asks for the service connection string, which is pasted as printed; then the
// compose file's example device shows online and DeviceMethod invoked from the page returns its answer.
// test_docker.py runs it with IOTHUB_DASHBOARD_URL (the banner's Dashboard: URL), IOTHUB_PRINTED_SERVICE_CS and
// IOTHUB_SCREENSHOT_DIR set; without /usr/bin/chromium the test is skipped and says why.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const CHROMIUM = process.env.IOTHUB_CHROMIUM || '/usr/bin/chromium';
const URL_ = process.env.IOTHUB_DASHBOARD_URL;
const SERVICE_CS = process.env.IOTHUB_PRINTED_SERVICE_CS;
const SHOTS = process.env.IOTHUB_SCREENSHOT_DIR;

test('the printed dashboard URL asks for the printed service string, then shows and calls the example device',
  { timeout: 120000, skip: fs.existsSync(CHROMIUM) ? false : `no ${CHROMIUM} (apt-get install chromium)` }, async () => {
    assert.ok(URL_ && SERVICE_CS, 'IOTHUB_DASHBOARD_URL and IOTHUB_PRINTED_SERVICE_CS must be set');
    const { chromium } = require('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    try {
      const page = await (await browser.newContext({ viewport: { width: 1366, height: 860 } })).newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.setDefaultTimeout(20000);
      await page.goto(URL_);
      await page.locator('#key-dialog[open]').waitFor();
      assert.match(await page.textContent('#key-why'), /--bind/);
      await page.fill('#key-input', SERVICE_CS);
      await page.keyboard.press('Enter');
      await page.locator('tr[data-device="device1"] [data-state="Connected"]').waitFor();
      await page.locator('#live.on').waitFor();
      if (SHOTS) {
        fs.mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: path.join(SHOTS, 'compose-devices.png'), fullPage: true });
      }
      await page.click('tr[data-device="device1"] a');
      await page.fill('#method-payload', '{"method_number":"42"}');
      await page.click('#method-invoke');
      await page.locator('#method-result', { hasText: 'status 200' }).waitFor({ timeout: 60000 });
      assert.match(await page.textContent('#method-result'), /This is the response from the device/);
      // The live stream saw the call.
      await page.locator('li[data-type="method"]', { hasText: 'DeviceMethod' }).first().waitFor();
      assert.ok(!(await page.content()).includes(SERVICE_CS.split('SharedAccessKey=')[1]), 'the key is not shown');
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
