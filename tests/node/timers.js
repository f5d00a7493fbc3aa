'use strict';
// Timers, microtasks and the event loop's phase ordering.
const log = [];
const p = (s) => log.push(s);

// setTimeout ordering by delay, and by insertion order for equal delays.
setTimeout(() => p('timeout 30'), 30);
setTimeout(() => p('timeout 10 a'), 10);
setTimeout(() => p('timeout 10 b'), 10);
setTimeout(() => p('timeout 0'), 0);
const cancelled = setTimeout(() => p('cancelled timeout ran!'), 5);
clearTimeout(cancelled);

// nextTick before promise microtasks before immediates.
setImmediate(() => p('immediate 1'));
Promise.resolve().then(() => p('promise 1'));
process.nextTick(() => p('nextTick 1'));
queueMicrotask(() => p('microtask 1'));
process.nextTick(() => { p('nextTick 2'); Promise.resolve().then(() => p('promise from nextTick')); });
setImmediate(() => { p('immediate 2'); process.nextTick(() => p('nextTick from immediate')); });
p('sync');

// Inside an I/O callback, setImmediate always runs before setTimeout(0).
require('fs').readFile(__filename, () => {
  setTimeout(() => p('io: timeout 0'), 0);
  setImmediate(() => p('io: immediate'));
});

// async/await chain.
const sleep = (ms, v) => new Promise((r) => setTimeout(() => r(v), ms));
async function chain() {
  let acc = 0;
  for (let i = 1; i <= 5; i++) acc += await sleep(2, i);
  p(`async chain sum ${acc}`);
  const all = await Promise.all([sleep(15, 'a'), sleep(5, 'b'), Promise.resolve('c')]);
  p(`all ${all.join('')}`);
  const race = await Promise.race([sleep(40, 'slow'), sleep(1, 'fast')]);
  p(`race ${race}`);
  const settled = await Promise.allSettled([Promise.reject(new Error('no')), sleep(1, 'yes')]);
  p(`allSettled ${settled.map((s) => s.status).join(',')}`);
  try { await Promise.any([Promise.reject(new Error('x'))]); } catch (e) { p(`any ${e.constructor.name}`); }
  const { setTimeout: st } = require('timers/promises');
  p(`timers/promises ${await st(3, 'value')}`);
  return acc;
}

// setInterval that clears itself after 3 ticks; check elapsed time is at least 3 intervals.
const t0 = process.hrtime.bigint();
let ticks = 0;
const iv = setInterval(() => {
  ticks++;
  p(`interval ${ticks}`);
  if (ticks === 3) {
    clearInterval(iv);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    p(`interval elapsed >= 60ms ${ms >= 59}`);
  }
}, 20);

// A timer never fires early.
const tLong = process.hrtime.bigint();
setTimeout(() => {
  const ms = Number(process.hrtime.bigint() - tLong) / 1e6;
  p(`timeout 100 not early ${ms >= 99}`);
}, 100);

chain().then((v) => {
  p(`chain returned ${v}`);
});

process.on('beforeExit', () => {
  if (log.includes('done')) return;
  p('done');
  // Timers ordering relative to the interval depends on timing; print the fixed-order parts.
  const order = (names) => log.filter((l) => names.includes(l)).join(' | ');
  // (timeout 0 vs the first immediate at startup is up to the clock, so not compared.)
  console.log('startup:', log.slice(0, 6).join(' | '));
  console.log('immediates:', order(['immediate 1', 'immediate 2', 'nextTick from immediate']));
  console.log('timeouts:', order(['timeout 0', 'timeout 10 a', 'timeout 10 b', 'timeout 30']));
  console.log('io:', order(['io: immediate', 'io: timeout 0']));
  console.log('intervals:', log.filter((l) => l.startsWith('interval')).join(' | '));
  console.log('async:', log.filter((l) => /^(async|all|race|any|timers|chain)/.test(l)).join(' | '));
  console.log('cancelled ran:', log.includes('cancelled timeout ran!'));
  console.log('long:', log.filter((l) => l.startsWith('timeout 100')).join(' | '));
  const uptime = process.uptime();
  console.log('uptime sane:', uptime > 0 && uptime < 60);
  const d = Date.now();
  console.log('Date sane:', d > 1.6e12 && d < 4e12);
  const h1 = process.hrtime.bigint();
  const h2 = process.hrtime.bigint();
  console.log('hrtime monotonic:', h2 >= h1);
  console.log('performance.now sane:', performance.now() > 0);
});
