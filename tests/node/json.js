'use strict';
// CPU-heavy JSON: build a 200k-entry object, stringify/parse it several times,
// print lengths and hashes.
const crypto = require('crypto');
const sha = (s) => crypto.createHash('sha256').update(s).digest('hex').slice(0, 16);

const N = 200000;
const obj = {};
for (let i = 0; i < N; i++) {
  obj[`key${i}`] = {
    id: i,
    name: `item-${i.toString(36)}`,
    tags: [i % 3, i % 7],
    s: 'é✓'.slice(0, i % 3),
  };
}

let text = JSON.stringify(obj);
console.log('stringify', text.length, sha(text));
for (let round = 1; round <= 2; round++) {
  const parsed = JSON.parse(text);
  const keys = Object.keys(parsed).filter((k) => k.startsWith('key'));
  let sum = 0;
  for (const k of keys) sum += parsed[k].id + parsed[k].tags[1];
  parsed[`round${round}`] = { keys: keys.length, sum };
  text = JSON.stringify(parsed);
  console.log('round', round, 'keys', keys.length, 'sum', sum, 'length', text.length, sha(text));
}
const pretty = JSON.stringify(JSON.parse(text.slice(0, text.indexOf(',"key20000"')) + '}'), null, 2);
console.log('pretty', pretty.length, sha(pretty));
const arr = Array.from({ length: N }, (_, i) => [i, String(i * i), i * 0.5]);
const arrText = JSON.stringify(arr);
console.log('array', arrText.length, sha(arrText));
const reviver = JSON.parse(arrText, (k, v) => (typeof v === 'number' ? v * 2 : v));
console.log('reviver last', JSON.stringify(reviver[N - 1]));
// Sort a large array of objects by a derived key.
const sorted = arr.map(([i, s]) => ({ i, s })).sort((a, b) => (a.s < b.s ? -1 : a.s > b.s ? 1 : 0));
console.log('sorted first', JSON.stringify(sorted.slice(0, 3)), 'last', JSON.stringify(sorted[N - 1]));
console.log('Buffer utf8 length', Buffer.byteLength(text));
