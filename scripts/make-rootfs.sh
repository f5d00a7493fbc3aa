#!/usr/bin/env bash
# Creates a minimal root file system for `runsc do --rootfs`: Debian's static busybox, an
# /etc with a fixed host name and passwd, an empty /tmp, and a few files for tests to read.
# Usage: scripts/make-rootfs.sh OUT_DIR   (OUT_DIR must not exist or be empty)
set -euo pipefail

out=${1:?usage: $0 OUT_DIR}
busybox=/bin/busybox

if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "$0: $busybox is missing or not static; install it with: apt-get install -y busybox-static" >&2
  exit 1
fi
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "$0: $out exists and is not empty" >&2
  exit 1
fi

mkdir -p "$out"/{bin,etc,tmp,root,home,dev,proc,usr/bin,var/data}
chmod 1777 "$out/tmp"
cp "$busybox" "$out/bin/busybox"
ln -s busybox "$out/bin/sh"

echo nanovisor-test > "$out/etc/hostname"
cat > "$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$out/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
printf 'hello from the nanovisor test rootfs\n' > "$out/var/data/hello.txt"
printf 'line 1\nline 2\nline 3\n' > "$out/var/data/lines.txt"
echo "rootfs ready: $out"
