// emulator.js -- starts and stops iothub-emulator for the Node SDK tests. The official service SDK only speaks
// https on :443, so these tests use the fixed ports 443 and 8883 (ctest runs them serially) and trust the dev CA
// through NODE_EXTRA_CA_CERTS, set by run_node_test.py before node starts (Node reads it only at start-up).
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const net = require('node:net');

const OWNER_KEY = 'vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js=';
const DEVICE1_KEY = 'Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM=';
const HOST = 'localhost';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

class Emulator {
  constructor(opts = {}) {
    this.dataDir = opts.dataDir || process.env.IOTHUB_TEST_DATA_DIR;
    if (!this.dataDir) throw new Error('IOTHUB_TEST_DATA_DIR is not set (run through run_node_test.py)');
    this.extraArgs = opts.extraArgs || [];
    // hostname: null starts the emulator without --hostname (its default, as users get it); see printedStrings().
    this.hostname = opts.hostname === undefined ? HOST : opts.hostname;
    this.banner = '';
    this.log = '';
    this.proc = null;
  }

  async start({ freshRegistry = true } = {}) {
    if (freshRegistry) {
      // The store (iothub.db with its WAL files), and a registry.json an older release may have left.
      for (const f of ['iothub.db', 'iothub.db-wal', 'iothub.db-shm', 'registry.json']) {
        fs.rmSync(path.join(this.dataDir, f), { force: true });
      }
    }
    this.mqttPort = this.mqttPort || (await freePort());
    this.httpPort = this.httpPort || (await freePort());
    const args = ['--bind', '127.0.0.1', ...(this.hostname ? ['--hostname', this.hostname] : []),
      '--mqtts-port', '8883', '--https-port', '443',
      '--mqtt-port', String(this.mqttPort), '--http-port', String(this.httpPort), '--data-dir', this.dataDir,
      '--log-level', 'debug', ...this.extraArgs];
    this.proc = spawn(process.env.IOTHUB_EMULATOR_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stderr.on('data', (d) => { this.log += d.toString(); });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    await new Promise((resolve, reject) => {
      let out = '';
      this.proc.stdout.on('data', (d) => {
        out += d.toString();
        this.banner = out;
        if (/^ready$/m.test(out)) resolve();
      });
      this.exited.then(({ code }) => reject(new Error(`emulator exited (${code}) before ready:\n${out}\n${this.log}`)));
    });
    return this;
  }

  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill(signal);
    return this.exited;
  }

  // The connection strings the emulator printed at start: {service, device}.
  printedStrings() {
    const find = (label) => {
      const m = this.banner.match(new RegExp(`^  ${label} connection string: +(\\S+)$`, 'm'));
      if (!m) throw new Error(`no ${label} connection string in the banner:\n${this.banner}`);
      return m[1];
    };
    return { service: find('Service'), device: find('Device') };
  }

  dumpLog() {
    process.stderr.write(`----- emulator log -----\n${this.log}----- end -----\n`);
  }

  serviceConnectionString() {
    return `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${OWNER_KEY}`;
  }

  deviceConnectionString(deviceId = 'device1', key = DEVICE1_KEY, moduleId) {
    return `HostName=${HOST};DeviceId=${deviceId};${moduleId ? `ModuleId=${moduleId};` : ''}SharedAccessKey=${key}`;
  }
}

function randomId(prefix) {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

// Runs fn with a started emulator and always stops it; prints the emulator's log when fn throws.
async function withEmulator(opts, fn) {
  const emu = new Emulator(opts);
  await emu.start(opts);
  try {
    return await fn(emu);
  } catch (err) {
    emu.dumpLog();
    throw err;
  } finally {
    await emu.stop();
  }
}

module.exports = { Emulator, withEmulator, freePort, randomId, OWNER_KEY, DEVICE1_KEY, HOST };
