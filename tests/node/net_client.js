// Reads commands from stdin, one per line, and prints one result line for each:
//   get URL       → "get URL STATUS BODY" or "get URL error CODE"
//   lookup NAME   → "lookup NAME ADDRESS" or "lookup NAME error CODE"
//   listen PORT   → "listen PORT ok" or "listen PORT error CODE"
'use strict';
const http = require('http');
const dns = require('dns');
const readline = require('readline');

function get(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 10000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e) => resolve(`error ${e.code}`));
  });
}

function lookup(name) {
  return new Promise((resolve) => {
    dns.lookup(name, { family: 4 }, (err, addr) => resolve(err ? `error ${err.code}` : addr));
  });
}

function listen(port) {
  return new Promise((resolve) => {
    const srv = http.createServer();
    srv.on('error', (e) => resolve(`error ${e.code}`));
    srv.listen(port, '0.0.0.0', () => srv.close(() => resolve('ok')));
  });
}

const rl = readline.createInterface({ input: process.stdin });
const queue = [];
let busy = false;
async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const [cmd, arg] = queue.shift().trim().split(/\s+/);
    let out;
    if (cmd === 'get') out = await get(arg);
    else if (cmd === 'lookup') out = await lookup(arg);
    else if (cmd === 'listen') out = await listen(Number(arg));
    else if (cmd === 'exit') process.exit(0);
    else out = 'unknown command';
    console.log(`${cmd} ${arg} ${out}`);
  }
  busy = false;
}
rl.on('line', (l) => { if (l.trim()) { queue.push(l); drain(); } });
rl.on('close', () => { const wait = () => (busy || queue.length ? setTimeout(wait, 10) : process.exit(0)); wait(); });
