// The os module: what programs size thread pools and report health from.
const os = require('os');

const cpus = os.cpus();
console.log('cpus', cpus.length, cpus.length === os.availableParallelism());
console.log(
  'cpu fields',
  cpus.every(
    (c) =>
      typeof c.model === 'string' &&
      c.model.length > 0 &&
      ['user', 'nice', 'sys', 'idle', 'irq'].every((k) => Number.isInteger(c.times[k]) && c.times[k] >= 0),
  ),
);
const load = os.loadavg();
console.log('loadavg', load.length, load.every((x) => x >= 0));
console.log('memory', os.totalmem() > 0, os.freemem() > 0, os.freemem() <= os.totalmem());
console.log('uptime', os.uptime() >= 0);
console.log('identity', os.platform(), os.arch(), os.type(), os.endianness(), typeof os.release());
console.log('hostname', os.hostname().length > 0);
console.log('user', os.userInfo().username, os.userInfo().uid);
console.log('lo', Object.keys(os.networkInterfaces()).includes('lo'));
const usage = process.cpuUsage();
console.log('cpuUsage', Number.isInteger(usage.user), Number.isInteger(usage.system));
console.log('resourceUsage', process.resourceUsage().maxRSS > 0);
// Resident memory is what the process touched, not what it reserved: it grows by what
// a buffer filled, and the high-water mark follows.
const before = process.memoryUsage().rss;
const filled = Buffer.alloc(64 << 20, 1);
const after = process.memoryUsage().rss;
console.log('rss grows', after - before >= 60 << 20, filled.length);
console.log('rss below reservation', after < 1024 << 20);
console.log('maxRSS', process.resourceUsage().maxRSS * 1024 >= after - (1 << 20));
