'use strict';
// crypto: digests and HMACs of fixed inputs, randomBytes, pbkdf2 (sync and async),
// randomUUID, ciphers, key generation. Only deterministic values are printed.
const crypto = require('crypto');
const { promisify } = require('util');

const inputs = ['', 'abc', 'The quick brown fox jumps over the lazy dog', 'x'.repeat(100000)];
for (const alg of ['sha256', 'sha512', 'md5', 'sha1']) {
  for (const s of inputs) {
    console.log(alg, s.length, crypto.createHash(alg).update(s).digest('hex'));
  }
}
console.log('hmac sha256', crypto.createHmac('sha256', 'key').update('The quick brown fox jumps over the lazy dog').digest('hex'));
console.log('hmac sha512 base64', crypto.createHmac('sha512', Buffer.from('secret')).update('data').digest('base64'));
// Incremental update equals one-shot.
const h = crypto.createHash('sha256');
for (let i = 0; i < 1000; i++) h.update(`chunk ${i};`);
const oneShot = crypto.createHash('sha256').update(Array.from({ length: 1000 }, (_, i) => `chunk ${i};`).join('')).digest('hex');
console.log('incremental == one-shot', h.digest('hex') === oneShot);

const rb = crypto.randomBytes(32);
console.log('randomBytes(32).length', rb.length);
console.log('randomBytes differ', !crypto.randomBytes(32).equals(rb));
const filled = crypto.randomFillSync(Buffer.alloc(64));
console.log('randomFillSync nonzero', filled.some((b) => b !== 0));
const ri = crypto.randomInt(10, 20);
console.log('randomInt in range', ri >= 10 && ri < 20);
console.log('getRandomValues', crypto.getRandomValues(new Uint8Array(16)).length);

console.log('pbkdf2Sync', crypto.pbkdf2Sync('password', 'salt', 1000, 32, 'sha256').toString('hex'));
console.log('scryptSync', crypto.scryptSync('password', 'salt', 32, { N: 1024 }).toString('hex'));
console.log('hkdfSync', Buffer.from(crypto.hkdfSync('sha256', 'key', 'salt', 'info', 32)).toString('hex'));

const uuid = crypto.randomUUID();
console.log('randomUUID format', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid));

// AES-256-GCM with a fixed key and IV: deterministic ciphertext, and a round trip.
const key = crypto.createHash('sha256').update('key').digest();
const iv = Buffer.alloc(12, 7);
const c = crypto.createCipheriv('aes-256-gcm', key, iv);
const ct = Buffer.concat([c.update('attack at dawn'), c.final()]);
const tag = c.getAuthTag();
console.log('aes-gcm ct', ct.toString('hex'), 'tag', tag.toString('hex'));
const d = crypto.createDecipheriv('aes-256-gcm', key, iv);
d.setAuthTag(tag);
console.log('aes-gcm pt', Buffer.concat([d.update(ct), d.final()]).toString());
const cbc = crypto.createCipheriv('aes-128-cbc', key.subarray(0, 16), Buffer.alloc(16, 1));
console.log('aes-cbc', Buffer.concat([cbc.update('x'.repeat(40)), cbc.final()]).toString('hex'));
console.log('timingSafeEqual', crypto.timingSafeEqual(Buffer.from('abc'), Buffer.from('abc')));
console.log('hashes include sha3-256', crypto.getHashes().includes('sha3-256'));

(async () => {
  const k = await promisify(crypto.pbkdf2)('password', 'salt', 2000, 64, 'sha512');
  console.log('pbkdf2 async', k.toString('hex'));
  // Several in parallel on the libuv thread pool.
  const many = await Promise.all([1, 2, 3, 4].map((i) => promisify(crypto.pbkdf2)(`pw${i}`, 'salt', 500, 16, 'sha256')));
  console.log('pbkdf2 parallel', many.map((b) => b.toString('hex')).join(' '));
  const rnd = await promisify(crypto.randomBytes)(16);
  console.log('randomBytes async length', rnd.length);
  const sk = await promisify(crypto.scrypt)('pw', 'salt', 16);
  console.log('scrypt async', sk.toString('hex'));
  // Ed25519: generated keys vary, but sign/verify must agree; signatures are deterministic per key.
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const sig = crypto.sign(null, Buffer.from('message'), privateKey);
  console.log('ed25519 sig length', sig.length, 'verify', crypto.verify(null, Buffer.from('message'), publicKey, sig));
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode('webcrypto'));
  console.log('subtle sha256', Buffer.from(digest).toString('hex'));
})().catch((e) => { console.log('FAILED', e && e.message); process.exitCode = 2; });
