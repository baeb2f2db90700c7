// run.js -- runs one of our programs as a test would: only PATH is inherited (no IOTHUB_* leaks in), and the
// promise resolves with {code, stdout, stderr} when it exits. Needs no npm package.
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

module.exports = { runProgram };
