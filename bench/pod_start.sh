#!/usr/bin/env bash
# Benchmark: a Kubernetes pod's start, from kubelet's RunPodSandbox to the first HTTP 200 of
# its Node server, with containerd's runc, our shim (boot and restore) and nanovisor-cri (boot
# and restore from its pool), in one run (tests/examples/pod_start.rs says how it measures).
#
# Usage: bench/pod_start.sh [--runs N] [--gap-ms MS] [--only TEXT]... [--pool-warm-up]
# Needs root, and what the CRI test needs (containerd, containernetworking-plugins,
# docker-registry, skopeo, protobuf-compiler): .ci/run installs them.
# Not a test: it prints figures, it does not judge them.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> cargo build --release (runsc, the shim, nanovisor-cri)" >&2
cargo build --release -p runsc -p shim -p nanovisor-cri >&2
export NANOVISOR_RUNSC=$PWD/target/release/runsc
exec cargo run --release -q -p nanovisor-tests --example pod_start -- "$@"
