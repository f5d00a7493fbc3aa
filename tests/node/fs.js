'use strict';
// File system: /tmp (a per-run directory named by argv[2]) and the rootfs, sync,
// callback, fs.promises and stream APIs. Prints only deterministic facts.
const fs = require('fs');
const fsp = require('fs/promises');
const path = require('path');
const crypto = require('crypto');

const tag = process.argv[2] || 'default';
const base = path.join('/tmp', `nv-node-fs-${tag}`);
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);

function syncPart() {
  process.umask(0o022);
  fs.rmSync(base, { recursive: true, force: true });
  fs.mkdirSync(path.join(base, 'a/b/c'), { recursive: true });
  console.log('mkdir -p', fs.statSync(path.join(base, 'a/b/c')).isDirectory());
  const f = path.join(base, 'one.txt');
  fs.writeFileSync(f, 'hello\n');
  fs.appendFileSync(f, 'world\n');
  console.log('read', JSON.stringify(fs.readFileSync(f, 'utf8')));
  const st = fs.statSync(f);
  console.log('stat size', st.size, 'file', st.isFile(), 'dir', st.isDirectory(),
    'mode', (st.mode & 0o777).toString(8), 'nlink', st.nlink);
  fs.renameSync(f, path.join(base, 'two.txt'));
  console.log('exists after rename', fs.existsSync(f), fs.existsSync(path.join(base, 'two.txt')));
  fs.writeFileSync(path.join(base, 'z.txt'), 'z');
  console.log('readdir', fs.readdirSync(base).sort().join(','));
  const ents = fs.readdirSync(base, { withFileTypes: true })
    .map((d) => `${d.name}:${d.isDirectory() ? 'd' : d.isFile() ? 'f' : '?'}`).sort();
  console.log('readdir types', ents.join(','));
  fs.unlinkSync(path.join(base, 'z.txt'));
  console.log('unlinked', !fs.existsSync(path.join(base, 'z.txt')));
  try { fs.readFileSync(path.join(base, 'z.txt')); } catch (e) { console.log('ENOENT', e.code); }
  try { fs.rmdirSync(path.join(base, 'a')); } catch (e) { console.log('rmdir nonempty', e.code); }
  fs.rmdirSync(path.join(base, 'a/b/c'));
  fs.rmdirSync(path.join(base, 'a/b'));
  fs.rmdirSync(path.join(base, 'a'));
  console.log('rmdir', !fs.existsSync(path.join(base, 'a')));
  // Low-level fd API.
  const fd = fs.openSync(path.join(base, 'fd.bin'), 'w+');
  fs.writeSync(fd, Buffer.from('0123456789'));
  const buf = Buffer.alloc(4);
  fs.readSync(fd, buf, 0, 4, 3);
  console.log('pread', buf.toString());
  fs.ftruncateSync(fd, 5);
  console.log('fstat size', fs.fstatSync(fd).size);
  fs.closeSync(fd);
  fs.symlinkSync('two.txt', path.join(base, 'link'));
  console.log('readlink', fs.readlinkSync(path.join(base, 'link')),
    'lstat link', fs.lstatSync(path.join(base, 'link')).isSymbolicLink(),
    'via link', JSON.stringify(fs.readFileSync(path.join(base, 'link'), 'utf8')));
  fs.chmodSync(path.join(base, 'two.txt'), 0o600);
  console.log('chmod', (fs.statSync(path.join(base, 'two.txt')).mode & 0o777).toString(8));
  fs.utimesSync(path.join(base, 'two.txt'), 1000000, 2000000);
  console.log('utimes mtime', fs.statSync(path.join(base, 'two.txt')).mtimeMs);
  // Rootfs.
  const osr = fs.readFileSync('/etc/os-release', 'utf8').split('\n')[0];
  console.log('os-release first line', osr);
  console.log('node size>0', fs.statSync('/usr/bin/node').size > 0);
  const nodeSt = fs.statSync('/usr/bin/node');
  console.log('node size', nodeSt.size, 'mode', (nodeSt.mode & 0o7777).toString(8));
  const head = Buffer.alloc(4096);
  const nfd = fs.openSync('/usr/bin/node', 'r');
  console.log('node head', fs.readSync(nfd, head, 0, 4096, 0), sha(head));
  fs.closeSync(nfd);
  // A big directory read in several getdents64 batches, sync and through fs.opendir.
  const usrBin = fs.readdirSync('/usr/bin').sort();
  console.log('/usr/bin entries', usrBin.length, sha(usrBin.join('\n')));
  console.log('/etc entries', fs.readdirSync('/etc').length);
  console.log('/usr/bin has node', fs.readdirSync('/usr/bin').includes('node'));
  console.log('realpath /usr/bin/../bin', fs.realpathSync('/usr/bin/../bin'));
  try { fs.writeFileSync('/proc/nonexistent-nv', 'x'); } catch (e) { console.log('write /proc error', typeof e.code); }
}

function callbackPart() {
  return new Promise((resolve, reject) => {
    const f = path.join(base, 'cb.txt');
    fs.writeFile(f, 'callback', (err) => {
      if (err) return reject(err);
      fs.readFile(f, 'utf8', (err2, data) => {
        if (err2) return reject(err2);
        console.log('callback read', data);
        fs.stat(f, (err3, st) => {
          if (err3) return reject(err3);
          console.log('callback stat', st.size);
          resolve();
        });
      });
    });
  });
}

async function promisesPart() {
  const d = path.join(base, 'p/q');
  await fsp.mkdir(d, { recursive: true });
  const f = path.join(d, 'p.txt');
  await fsp.writeFile(f, 'promises\n');
  await fsp.appendFile(f, 'more\n');
  console.log('promises read', JSON.stringify(await fsp.readFile(f, 'utf8')));
  console.log('promises stat', (await fsp.stat(f)).size);
  console.log('promises readdir', (await fsp.readdir(d)).join(','));
  await fsp.rename(f, path.join(d, 'r.txt'));
  await fsp.unlink(path.join(d, 'r.txt'));
  await fsp.rmdir(d);
  await fsp.rm(path.join(base, 'p'), { recursive: true });
  console.log('promises cleaned', !fs.existsSync(path.join(base, 'p')));
  const fh = await fsp.open(path.join(base, 'fh.txt'), 'w+');
  await fh.write('filehandle');
  const { bytesRead, buffer } = await fh.read(Buffer.alloc(6), 0, 6, 4);
  console.log('filehandle read', bytesRead, buffer.toString());
  await fh.close();
  try { await fsp.access(path.join(base, 'nope')); } catch (e) { console.log('access', e.code); }
  const osr = (await fsp.readFile('/etc/os-release', 'utf8')).split('\n')[0];
  console.log('promises rootfs', osr);
  const names = [];
  for await (const ent of await fsp.opendir('/usr/bin')) names.push(ent.name);
  names.sort();
  console.log('opendir /usr/bin', names.length, sha(names.join('\n')));
  const mkd = await fsp.mkdtemp(path.join(base, 'tmp-'));
  console.log('mkdtemp', path.basename(mkd).startsWith('tmp-'), fs.statSync(mkd).isDirectory());
}

async function streamPart() {
  const f = path.join(base, 'big.bin');
  const data = Buffer.alloc(200 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 8)) & 0xff;
  // Write through a write stream in chunks.
  await new Promise((resolve, reject) => {
    const ws = fs.createWriteStream(f);
    ws.on('error', reject);
    ws.on('finish', resolve);
    for (let off = 0; off < data.length; off += 10000) ws.write(data.subarray(off, off + 10000));
    ws.end();
  });
  console.log('stream written size', fs.statSync(f).size);
  const h = crypto.createHash('sha256');
  let total = 0;
  await new Promise((resolve, reject) => {
    const rs = fs.createReadStream(f, { highWaterMark: 16 * 1024 });
    rs.on('data', (c) => { total += c.length; h.update(c); });
    rs.on('error', reject);
    rs.on('end', resolve);
  });
  console.log('stream read', total, h.digest('hex').slice(0, 16), sha(data));
  // Async iteration with a range.
  let part = 0;
  for await (const c of fs.createReadStream(f, { start: 1000, end: 1999 })) part += c.length;
  console.log('stream range', part);
  // pipeline copy.
  const { pipeline } = require('stream/promises');
  await pipeline(fs.createReadStream(f), fs.createWriteStream(path.join(base, 'copy.bin')));
  console.log('pipeline copy same', sha(fs.readFileSync(path.join(base, 'copy.bin'))) === sha(data));
  // copyFile (FICLONE / copy_file_range / sendfile in libuv), sync and async.
  fs.copyFileSync(f, path.join(base, 'copy2.bin'));
  await fsp.copyFile(f, path.join(base, 'copy3.bin'));
  console.log('copyFile same', sha(fs.readFileSync(path.join(base, 'copy2.bin'))) === sha(data),
    sha(fs.readFileSync(path.join(base, 'copy3.bin'))) === sha(data));
  try { fs.copyFileSync(f, path.join(base, 'copy2.bin'), fs.constants.COPYFILE_EXCL); } catch (e) { console.log('copyFile EXCL', e.code); }
}

(async () => {
  syncPart();
  await callbackPart();
  await promisesPart();
  await streamPart();
  const listing = fs.readdirSync(base).filter((n) => !n.startsWith('tmp-')).sort();
  console.log('final listing', listing.join(','));
  fs.rmSync(base, { recursive: true, force: true });
  console.log('removed', !fs.existsSync(base));
})().catch((e) => { console.log('FAILED', e && e.code, e && e.message); process.exitCode = 2; });
