// fs.watch (libuv over inotify), as dev servers and nodemon use it: each change is made
// once the previous one's event has arrived, and the events are printed in order.
const fs = require('fs');
const path = require('path');

const dir = path.join('/tmp', `nv-watch-${process.argv[2] || process.pid}`);
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir);
fs.writeFileSync(path.join(dir, 'existing'), 'a');

const seen = [];
let wake = null;
const record = (what) => {
  seen.push(what);
  if (wake) wake();
};
const onDir = fs.watch(dir, (type, name) => record(`dir ${type} ${name}`));
const onFile = fs.watch(path.join(dir, 'existing'), (type) => record(`file ${type}`));

// Make a change, then wait until `count` more events have come (or 3 s).
function step(change, count) {
  return new Promise((resolve) => {
    const target = seen.length + count;
    const timer = setTimeout(done, 3000);
    function done() {
      clearTimeout(timer);
      wake = null;
      resolve();
    }
    wake = () => {
      if (seen.length >= target) done();
    };
    change();
  });
}

(async () => {
  await step(() => fs.writeFileSync(path.join(dir, 'new.txt'), 'x'), 2);
  await step(() => fs.appendFileSync(path.join(dir, 'existing'), 'b'), 2);
  await step(() => fs.renameSync(path.join(dir, 'new.txt'), path.join(dir, 'moved.txt')), 2);
  await step(() => fs.chmodSync(path.join(dir, 'moved.txt'), 0o600), 1);
  await step(() => fs.unlinkSync(path.join(dir, 'moved.txt')), 1);
  await step(() => fs.mkdirSync(path.join(dir, 'sub')), 1);
  await step(() => fs.rmdirSync(path.join(dir, 'sub')), 1);
  onDir.close();
  onFile.close();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(seen.join('\n'));
})();
