// An HTTP server and client in one process over loopback: IPv4, IPv6 (dual stack) and
// a UDP round trip. Prints only what is the same on every run.
'use strict';
const http = require('http');
const dgram = require('dgram');
const net = require('net');

function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    }).on('error', reject);
  });
}

async function main() {
  let hits = 0;
  const srv = http.createServer((req, res) => {
    hits++;
    res.setHeader('content-type', 'text/plain');
    res.end(`hello ${req.url} #${hits}`);
  });
  await new Promise((r) => srv.listen(0, r));
  const { port, family } = srv.address();
  console.log('listening on', family);
  console.log(await get(`http://127.0.0.1:${port}/v4`));
  console.log(await get(`http://[::1]:${port}/v6`));
  // Keep-alive: several requests over one agent.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 3; i++) {
    console.log(await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: `/ka${i}`, agent }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(b));
      }).on('error', reject);
    }));
  }
  agent.destroy();
  srv.close();

  // A refused connection.
  await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', (e) => { console.log('closed port:', e.code); resolve(); });
  });

  // UDP echo.
  const a = dgram.createSocket('udp4');
  const b = dgram.createSocket('udp4');
  await new Promise((r) => a.bind(0, '127.0.0.1', r));
  a.on('message', (m, rinfo) => a.send(Buffer.from('echo ' + m), rinfo.port, rinfo.address));
  const reply = await new Promise((resolve) => {
    b.on('message', (m) => resolve(m.toString()));
    b.send('ping', a.address().port, '127.0.0.1');
  });
  console.log('udp:', reply);
  a.close();
  b.close();

  // A big body, to cross window and buffer sizes.
  const big = Buffer.alloc(3 * 1024 * 1024, 'x');
  const srv2 = http.createServer((req, res) => res.end(big));
  await new Promise((r) => srv2.listen(0, '127.0.0.1', r));
  const len = await new Promise((resolve, reject) => {
    http.get(`http://127.0.0.1:${srv2.address().port}/`, (res) => {
      let n = 0;
      res.on('data', (d) => (n += d.length));
      res.on('end', () => resolve(n));
    }).on('error', reject);
  });
  console.log('big body bytes:', len);
  srv2.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
