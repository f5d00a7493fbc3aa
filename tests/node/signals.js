'use strict';
// Signals: handlers for SIGUSR2, SIGUSR1, SIGHUP and SIGTERM sent to ourselves with
// process.kill; the SIGTERM handler prints and exits 0.
const seen = [];

process.on('SIGUSR2', (sig, num) => {
  seen.push(`${sig}/${num}`);
  console.log('got', sig, num);
  next();
});
process.on('SIGUSR1', (sig) => { console.log('got', sig); next(); });
process.on('SIGHUP', (sig) => { console.log('got', sig); next(); });
process.on('SIGTERM', (sig, num) => {
  console.log('got', sig, num, 'after', seen.join(','));
  // Keep the process busy briefly to show the handler ran on the event loop.
  setTimeout(() => { console.log('exiting from SIGTERM handler'); process.exit(0); }, 10);
});

// process.kill with signal 0 checks existence.
console.log('kill 0 ok', process.kill(process.pid, 0));
try { process.kill(process.pid, 'SIGNOTREAL'); } catch (e) { console.log('bad signal', e.code); }

// Send one signal at a time; each handler triggers the next step.
// SIGHUP comes from another process (a shell run by spawnSync, while Node is blocked
// waiting for it); the others are sent by process.kill.
const steps = ['SIGUSR2', 'SIGUSR2', 'SIGUSR1', 'SIGHUP', 'SIGTERM'];
let step = 0;
function next() {
  if (step >= steps.length) return;
  const sig = steps[step++];
  console.log('sending', sig);
  if (sig === 'SIGHUP') {
    const r = require('child_process').spawnSync('/bin/sh', ['-c', 'kill -HUP $PPID && echo sent']);
    console.log('child kill', r.status, JSON.stringify(String(r.stdout)));
    return;
  }
  if (sig === 'SIGUSR1') {
    // Arrives while the main thread runs JavaScript; the handler runs once the loop resumes.
    process.kill(process.pid, sig);
    const t = Date.now();
    while (Date.now() - t < 100) { /* spin */ }
    console.log('spun with SIGUSR1 pending');
    return;
  }
  setImmediate(() => process.kill(process.pid, sig));
}
next();
// Keep the loop alive; SIGTERM's handler ends the process well before this fires.
setTimeout(() => { console.log('timed out waiting for signals'); process.exit(9); }, 10000);
