// An HTTP server with libuv's thread pool idle in futex waits and an idle client
// connection to itself, for checkpoints: after a restore, GET /idle tells what became of
// the client connection, and GET /work runs a pbkdf2 on the pool.
// Usage: node pool_server.js PORT   (prints "ready" once all that is set up)
'use strict';
const crypto = require('crypto');
const http = require('http');
const net = require('net');

const port = Number(process.argv[2] || 8080);
let idle = 'none';

function work(cb) {
  crypto.pbkdf2('password', 'salt', 20000, 16, 'sha256', (err, key) =>
    cb(err ? `error ${err.message}` : key.toString('hex')),
  );
}

const server = http.createServer((req, res) => {
  if (req.url === '/work') {
    work((out) => res.end(`work ${out}\n`));
  } else {
    res.end(`idle ${idle}\n`);
  }
});

server.listen(port, '0.0.0.0', () => {
  // Run the pool's four threads once, so that they wait in futex_wait from then on.
  let done = 0;
  for (let i = 0; i < 4; i++) {
    work(() => {
      if (++done === 4) connectIdle();
    });
  }
});

function connectIdle() {
  const c = net.connect(port, '127.0.0.1', () => {
    idle = 'open';
    console.log('ready');
  });
  c.on('error', (e) => {
    idle = `error ${e.code}`;
  });
  c.on('close', () => {
    if (idle === 'open') idle = 'closed';
  });
}
