// An HTTP server whose state lives only in its memory: each request gets the next
// number. Checkpointed after some requests, a restored copy answers with the number
// after the last one, and each restored copy counts on its own.
// Usage: node counter_server.js PORT   (prints "ready" once listening)
'use strict';
const http = require('http');

const port = Number(process.argv[2] || 8080);
let counter = 0;
// Some work for libuv's thread pool, so a checkpoint sees its threads waiting.
require('crypto').pbkdf2Sync('warm', 'up', 1000, 32, 'sha256');
http
  .createServer((req, res) => {
    counter++;
    res.setHeader('content-type', 'text/plain');
    res.end(`${counter}\n`);
  })
  .listen(port, '0.0.0.0', () => console.log('ready'));
