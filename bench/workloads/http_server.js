// The HTTP benchmark's server (bench/http.sh): hello world on 0.0.0.0:PORT (default 8080).
// Prints "ready" once listening.
'use strict';
const http = require('http');
const port = Number(process.argv[2] || 8080);
http.createServer((q, s) => s.end('hello')).listen(port, '0.0.0.0', () => console.log('ready'));
