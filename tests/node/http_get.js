// Print the body of GET http://127.0.0.1:PORT/ (exit 1 on error).
'use strict';
require('http')
  .get(`http://127.0.0.1:${process.argv[2]}/`, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => process.stdout.write(`${res.statusCode} ${body}`));
  })
  .on('error', (e) => {
    console.error(e.message);
    process.exit(1);
  });
