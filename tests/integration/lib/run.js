// run.js -- runs one of our programs as a test would: runProgram inherits only PATH (no IOTHUB_* leaks in) and
// resolves with {code, stdout, stderr} when it exits; startProcess runs a long-lived device until stopped.
// Needs no npm package.
'use strict';

const { spawn } = require('node:child_process');

function runProgram(bin, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env: { PATH: process.env.PATH, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// Starts a long-running child (a device) that is ready once `marker` appears on its stdout: {ready, stop, output}.
function startProcess(cmd, args, marker) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d.toString();
      if (out.includes(marker)) resolve();
    });
    child.stderr.on('data', (d) => { out += d.toString(); });
    child.on('exit', (code) => reject(new Error(`${cmd} exited (${code}) before ready:\n${out}`)));
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return { ready, stop: async () => { if (child.exitCode === null) child.kill('SIGTERM'); await exited; }, output: () => out };
}

module.exports = { runProgram, startProcess };
