#!/bin/sh
# Builds the installer image from a release build, with podman (or BUILDER=buildah, which
# takes the same `build` arguments):
#
#   cargo build --release -p runsc -p shim
#   deploy/installer/build-image.sh ghcr.io/nanovisor/installer:0.1.0
#
# The build context is a staging directory holding only the two binaries and the
# scripts, so the workspace's multi-gigabyte target/ is never sent to the builder.
set -eu

image=${1:?usage: build-image.sh IMAGE[:TAG]}
here=$(cd "$(dirname "$0")" && pwd)
workspace=$(cd "$here/../.." && pwd)
release=${RELEASE_DIR:-$workspace/target/release}

stage=$(mktemp -d "${TMPDIR:-/tmp}/nanovisor-installer.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/bin"
for bin in runsc containerd-shim-nanovisor-v1; do
    [ -f "$release/$bin" ] || {
        echo "build-image.sh: $release/$bin is missing: cargo build --release first" >&2
        exit 1
    }
    cp "$release/$bin" "$stage/bin/"
done
cp "$here/Containerfile" "$here/install.sh" "$here/configure-containerd.sh" "$stage/"

${BUILDER:-podman} build -f "$stage/Containerfile" -t "$image" "$stage"
