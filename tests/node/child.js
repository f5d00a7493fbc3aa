'use strict';
// child_process: execFileSync, spawn with pipes, exit codes, spawnSync, exec through /bin/sh.
const cp = require('child_process');

if (process.argv[2] === 'ipc-child') {
  process.on('message', (m) => {
    if (m === 'bye') { process.disconnect(); return; }
    let f = [0, 1];
    for (let i = 2; i <= m.n; i++) f.push(f[i - 1] + f[i - 2]);
    process.send({ fib: f[m.n] });
  });
  return;
}

const out = cp.execFileSync('/bin/echo', ['hi']);
console.log('execFileSync', JSON.stringify(out.toString()));
// A child writing straight to our stdout (stdout is a pipe, and Node writes pipes synchronously).
cp.execFileSync('/bin/echo', ['inherited stdout'], { stdio: 'inherit' });
console.log('after inherit');

const r = cp.spawnSync('/bin/sh', ['-c', 'exit 3']);
console.log('spawnSync exit', r.status, 'signal', r.signal);

const r2 = cp.spawnSync('/bin/cat', { input: 'from input\n' });
console.log('spawnSync cat', JSON.stringify(r2.stdout.toString()), r2.status);

try {
  cp.execFileSync('/bin/sh', ['-c', 'echo to-stderr >&2; exit 4'], { stdio: ['ignore', 'pipe', 'pipe'] });
} catch (e) {
  console.log('execFileSync failure status', e.status, 'stderr', JSON.stringify(e.stderr.toString()));
}

try {
  cp.execFileSync('/nonexistent/program');
} catch (e) {
  console.log('missing program', e.code);
}

const env = cp.execFileSync('/bin/sh', ['-c', 'echo "$NV_TEST_VAR"'], { env: { NV_TEST_VAR: 'passed', PATH: '/usr/bin:/bin' } });
console.log('env passed', JSON.stringify(env.toString()));
const cwd = cp.execFileSync('/bin/pwd', { cwd: '/usr' });
console.log('cwd', JSON.stringify(cwd.toString()));

function spawnCat() {
  return new Promise((resolve, reject) => {
    const c = cp.spawn('/bin/cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const chunks = [];
    c.stdout.on('data', (d) => chunks.push(d));
    c.on('error', reject);
    c.on('close', (code, signal) => resolve({ out: Buffer.concat(chunks), code, signal }));
    // 256 KB in several writes: more than a pipe buffer, so both directions must flow.
    const block = Buffer.alloc(64 * 1024);
    for (let i = 0; i < block.length; i++) block[i] = 97 + (i % 26);
    for (let i = 0; i < 4; i++) c.stdin.write(block);
    c.stdin.end('END\n');
  });
}

function spawnExit(code) {
  return new Promise((resolve, reject) => {
    const c = cp.spawn('/bin/sh', ['-c', `exit ${code}`]);
    c.on('error', reject);
    c.on('exit', (status, signal) => resolve({ status, signal }));
  });
}

(async () => {
  const cat = await spawnCat();
  console.log('spawn cat', cat.out.length, JSON.stringify(cat.out.subarray(-4).toString()), 'exit', cat.code, cat.signal);
  console.log('spawn exit 3', JSON.stringify(await spawnExit(3)));
  const sh = await new Promise((resolve, reject) => {
    cp.exec('echo one; echo two | /usr/bin/tr a-z A-Z', (err, stdout, stderr) => (err ? reject(err) : resolve(stdout)));
  });
  console.log('exec pipeline', JSON.stringify(sh));
  // A child killed by a signal.
  const killed = await new Promise((resolve, reject) => {
    const c = cp.spawn('/bin/sleep', ['10']);
    c.on('error', reject);
    c.on('spawn', () => c.kill('SIGKILL'));
    c.on('exit', (status, signal) => resolve({ status, signal }));
  });
  console.log('killed child', JSON.stringify(killed));
  // Several children at once.
  const many = await Promise.all([1, 2, 3, 4].map((i) => new Promise((resolve, reject) => {
    cp.execFile('/bin/echo', [`child ${i}`], (err, stdout) => (err ? reject(err) : resolve(stdout.trim())));
  })));
  console.log('parallel', many.join(','));
  // A Node child with an IPC channel (child_process.fork of this script).
  const reply = await new Promise((resolve, reject) => {
    const c = cp.fork(__filename, ['ipc-child'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let got;
    c.on('message', (m) => { got = m; c.send('bye'); });
    c.on('error', reject);
    c.on('exit', (code) => resolve({ got, code }));
    c.send({ n: 20 });
  });
  console.log('fork ipc', JSON.stringify(reply));
})().catch((e) => { console.log('FAILED', e && e.code, e && e.message); process.exitCode = 2; });
