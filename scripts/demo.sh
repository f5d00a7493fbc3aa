#!/usr/bin/env bash
# The main job in one command: build runsc, make a busybox rootfs, and run a command in a
# sandbox. Usage: scripts/demo.sh [CMD ARGS…]   (default: /bin/busybox echo hello)
#   ROOTFS=DIR  where the rootfs lives (default /tmp/nv-rootfs; made if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

rootfs=${ROOTFS:-/tmp/nv-rootfs}
if [ ! -x /bin/busybox ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y busybox-static >&2 || { apt-get update -qq && apt-get install -y busybox-static >&2; }
fi
cargo build --release -p runsc >&2
[ -x "$rootfs/bin/busybox" ] || scripts/make-rootfs.sh "$rootfs" >&2
[ $# -gt 0 ] || set -- /bin/busybox echo hello
exec target/release/runsc do --rootfs "$rootfs" -- "$@"
