// An HTTP server on 0.0.0.0:PORT whose answers count requests; prints "ready" when
// listening and exits when its stdin closes.
'use strict';
const http = require('http');
const port = Number(process.argv[2] || 8080);
let count = 0;
const srv = http.createServer((req, res) => {
  count++;
  res.setHeader('content-type', 'text/plain');
  res.end(`count ${count}\n`);
});
srv.listen(port, '0.0.0.0', () => console.log('ready'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
