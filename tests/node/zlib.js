'use strict';
// zlib: gzip/gunzip of 1 MB of deterministic data (sync, async and streaming),
// deflate/inflate, brotli. Prints lengths and hashes.
const zlib = require('zlib');
const crypto = require('crypto');
const { promisify } = require('util');
const { pipeline, Readable, Writable } = require('stream');

const sha = (b) => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);

// 1 MB: a compressible mix of text and a simple LCG byte stream.
const data = Buffer.alloc(1 << 20);
let x = 12345;
for (let i = 0; i < data.length; i++) {
  if ((i >> 12) & 1) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    data[i] = (x >>> 16) & 0x3f;
  } else {
    data[i] = 'lorem ipsum dolor sit amet '.charCodeAt(i % 27);
  }
}
console.log('input', data.length, sha(data));

const gz = zlib.gzipSync(data);
console.log('gzipSync', gz.length, sha(gz));
const gunz = zlib.gunzipSync(gz);
console.log('gunzipSync', gunz.length, gunz.equals(data));
const gz9 = zlib.gzipSync(data, { level: 9 });
console.log('gzip level 9', gz9.length, sha(gz9));
const gz1 = zlib.gzipSync(data, { level: 1 });
console.log('gzip level 1', gz1.length, sha(gz1));

const df = zlib.deflateSync(data);
console.log('deflateSync', df.length, sha(df));
console.log('inflateSync', zlib.inflateSync(df).equals(data));
const raw = zlib.deflateRawSync(Buffer.from('hello hello hello hello'));
console.log('deflateRaw', raw.toString('hex'), zlib.inflateRawSync(raw).toString());
console.log('unzipSync(gzip)', zlib.unzipSync(gz).equals(data));

const br = zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } });
console.log('brotliCompressSync q5', br.length, sha(br));
console.log('brotliDecompressSync', zlib.brotliDecompressSync(br).equals(data));
const brs = zlib.brotliCompressSync(Buffer.from('brotli '.repeat(100)));
console.log('brotli small', brs.length, sha(brs));

console.log('crc-like check: corrupted gzip throws', (() => {
  const bad = Buffer.from(gz);
  bad[bad.length - 5] ^= 0xff;
  try { zlib.gunzipSync(bad); return false; } catch (e) { return e.code; }
})());

(async () => {
  // Async (thread pool) variants.
  const agz = await promisify(zlib.gzip)(data);
  console.log('gzip async == sync', agz.equals(gz));
  const agunz = await promisify(zlib.gunzip)(agz);
  console.log('gunzip async', agunz.equals(data));
  const abr = await promisify(zlib.brotliCompress)(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } });
  console.log('brotli async == sync', abr.equals(br));
  console.log('brotli decompress async', (await promisify(zlib.brotliDecompress)(abr)).equals(data));

  // Streaming: 64 KB chunks through createGzip then createGunzip.
  const chunks = [];
  await new Promise((resolve, reject) => {
    let off = 0;
    const src = new Readable({
      read() {
        if (off >= data.length) { this.push(null); return; }
        this.push(data.subarray(off, off + 65536));
        off += 65536;
      },
    });
    const sink = new Writable({ write(c, _e, cb) { chunks.push(c); cb(); } });
    pipeline(src, zlib.createGzip(), zlib.createGunzip(), sink, (err) => (err ? reject(err) : resolve()));
  });
  const out = Buffer.concat(chunks);
  console.log('stream round trip', out.length, out.equals(data));

  // Streaming deflate output, hashed.
  const dchunks = [];
  await new Promise((resolve, reject) => {
    const z = zlib.createDeflate({ level: 6 });
    z.on('data', (c) => dchunks.push(c));
    z.on('end', resolve);
    z.on('error', reject);
    for (let off = 0; off < data.length; off += 100000) z.write(data.subarray(off, off + 100000));
    z.end();
  });
  const dstream = Buffer.concat(dchunks);
  console.log('stream deflate', dstream.length, zlib.inflateSync(dstream).equals(data));
})().catch((e) => { console.log('FAILED', e && e.message); process.exitCode = 2; });
