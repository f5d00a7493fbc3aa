'use strict';
// worker_threads: two workers computing sums, a postMessage round trip, and
// SharedArrayBuffer + Atomics.wait/notify between the main thread and a worker.
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

if (!isMainThread) {
  const { kind } = workerData;
  if (kind === 'sum') {
    let s = 0n;
    for (let i = workerData.from; i < workerData.to; i++) s += BigInt(i) * BigInt(i);
    parentPort.postMessage({ id: workerData.id, sum: s.toString() });
  } else if (kind === 'echo') {
    parentPort.on('message', (m) => {
      if (m === 'bye') { parentPort.close(); return; }
      parentPort.postMessage({ echoed: m, upper: String(m).toUpperCase() });
    });
  } else if (kind === 'atomics') {
    const ia = new Int32Array(workerData.sab);
    // Wait for the main thread to set slot 0 to 1, then write a result and notify.
    const r = Atomics.wait(ia, 0, 0, 10000);
    ia[1] = 42 + ia[2];
    Atomics.store(ia, 3, 1);
    Atomics.notify(ia, 3, 1);
    // Contended counter: both sides add 100000.
    for (let i = 0; i < 100000; i++) Atomics.add(ia, 4, 1);
    Atomics.add(ia, 5, 1);
    Atomics.notify(ia, 5);
    parentPort.postMessage({ waitResult: r === 'timed-out' ? 'timed-out' : 'woken' });
  } else if (kind === 'throw') {
    throw new Error('worker failure');
  }
  return;
}

function run(data) {
  return new Promise((resolve, reject) => {
    const w = new Worker(__filename, { workerData: data });
    let msg;
    w.on('message', (m) => { msg = m; });
    w.on('error', reject);
    w.on('exit', (code) => resolve({ msg, code }));
  });
}

(async () => {
  // Two workers at once.
  const [a, b] = await Promise.all([
    run({ kind: 'sum', id: 1, from: 0, to: 300000 }),
    run({ kind: 'sum', id: 2, from: 300000, to: 600000 }),
  ]);
  console.log('worker 1', a.msg.id, a.msg.sum, 'exit', a.code);
  console.log('worker 2', b.msg.id, b.msg.sum, 'exit', b.code);
  let check = 0n;
  for (let i = 0; i < 600000; i++) check += BigInt(i) * BigInt(i);
  console.log('sums add up', (BigInt(a.msg.sum) + BigInt(b.msg.sum)) === check);

  // Round trip.
  await new Promise((resolve, reject) => {
    const w = new Worker(__filename, { workerData: { kind: 'echo' } });
    const replies = [];
    w.on('message', (m) => {
      replies.push(`${m.echoed}->${m.upper}`);
      if (replies.length < 3) w.postMessage(['two', 'three'][replies.length - 1]);
      else w.postMessage('bye');
    });
    w.on('error', reject);
    w.on('exit', (code) => { console.log('round trip', replies.join(' '), 'exit', code); resolve(); });
    w.postMessage('one');
  });

  // SharedArrayBuffer + Atomics.
  const sab = new SharedArrayBuffer(6 * 4);
  const ia = new Int32Array(sab);
  ia[2] = 8;
  const done = run({ kind: 'atomics', sab });
  // Give the worker time to block in Atomics.wait (not required for correctness).
  await new Promise((r) => setTimeout(r, 50));
  Atomics.store(ia, 0, 1);
  const woke = Atomics.notify(ia, 0, 1);
  console.log('notify woke <= 1', woke <= 1);
  // Block the main thread until the worker answers.
  const r3 = Atomics.wait(ia, 3, 0, 10000);
  console.log('main wait', r3 === 'timed-out' ? 'timed-out' : 'ok', 'result', ia[1]);
  for (let i = 0; i < 100000; i++) Atomics.add(ia, 4, 1);
  while (Atomics.load(ia, 5) === 0) Atomics.wait(ia, 5, 0, 10000);
  const { msg, code } = await done;
  console.log('worker wait', msg.waitResult, 'exit', code, 'counter', Atomics.load(ia, 4));

  // An exception in a worker arrives as an 'error' event in the parent.
  try {
    await run({ kind: 'throw' });
    console.log('throw: no error');
  } catch (e) {
    console.log('worker error', e.message);
  }

  // Worker exit codes and terminate().
  const w = new Worker('setInterval(() => {}, 1000)', { eval: true });
  await new Promise((r) => w.once('online', r));
  const tcode = await w.terminate();
  console.log("terminated exit", tcode);
  const ex = new Worker('process.exit(5)', { eval: true });
  console.log('process.exit in worker', await new Promise((r) => ex.on('exit', r)));
})().catch((e) => { console.log('FAILED', e && e.message); process.exitCode = 2; });
