#!/usr/bin/env bash
# Build a minimal OCI image holding the host's Node.js (/usr/bin/node and the shared
# libraries it links) and import it into podman as $IMAGE (default
# localhost/nanovisor-node:test). No registry or network needed. Prints the image name.
set -euo pipefail
IMAGE=${1:-localhost/nanovisor-node:test}
if podman image exists "$IMAGE" 2>/dev/null; then
  echo "$IMAGE"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,usr/bin,etc,tmp,root,proc,dev,sys}
chmod 1777 "$root/tmp"
copy() { mkdir -p "$root$(dirname "$1")"; cp -L "$1" "$root$1"; }
copy /usr/bin/node
for lib in $(ldd /usr/bin/node | grep -o '/[^ ]*'); do copy "$lib"; done
[ -e /bin/busybox ] && cp /bin/busybox "$root/bin/busybox" && ln -s busybox "$root/bin/sh"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
tar -C "$root" -cf "$work/rootfs.tar" .
podman import --change 'CMD ["/usr/bin/node"]' --change 'ENV PATH=/usr/bin:/bin' \
  "$work/rootfs.tar" "$IMAGE" >/dev/null
echo "$IMAGE"
