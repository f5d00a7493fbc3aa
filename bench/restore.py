#!/usr/bin/env python3
"""Cold start benchmark: time to the first HTTP 200 of a Node server, in one run:

  native     `node server.js` on the host
  boot       our cold start: `runsc run --detach` of the same server in a sandbox
  restore    `runsc restore --detach` of a checkpoint image of it (`runsc image build`)

Restores prefault the working set the image records (`runsc restore --working-set
prefault`, the default); the same restore without it (`--working-set ignore`) is measured
interleaved with it.

Each sandbox adopts a network namespace with a veth pair this script makes (as a CNI
plugin would), and the first 200 is fetched from the host over the veth; native is fetched
over 127.0.0.1. Times run from just before the command starts to the end of the first
successful response, polled with a fresh TCP connection every 0.2 ms; for restore, also
when `runsc restore --detach` itself returned (the rest is the restored guest serving its
first request: see docs/checkpoint.md, "Start-up time"). Then memory: the
PSS of 1, 10 and 50 sandboxes restored from one image (their sandbox processes' Pss from
/proc/PID/smaps_rollup), per sandbox.

The image is built with runsc's default warm-up (requests served before the checkpoint,
see `runsc image build --warm-up`); `--warm-up N` passes N instead (0: a cold image).

Usage: bench/restore.py [-n RUNS] [--pss 1,10,50] [--warm-up N]   (needs root and KVM;
uses target/release/runsc, or $NANOVISOR_RUNSC). Not a test: it prints figures. Run it
with a clean environment (`env -i PATH=$PATH HOME=$HOME`): an exported NODE_EXTRA_CA_CERTS
slows native Node's start-up (the sandboxes get the bundle's environment either way).
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "bench/workloads/http_server.js")
PORT = 8080
MEMORY = 512 << 20


def log(*a):
    print("==>", *a, file=sys.stderr, flush=True)


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, **kw)


def first_200(host, deadline_s=60.0):
    """Poll http://host:PORT/ until it answers 200; the monotonic time it did."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection(host, PORT, timeout=1)
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return time.monotonic()
        except (OSError, http.client.HTTPException):
            time.sleep(0.0002)
    raise RuntimeError(f"no HTTP 200 from {host}:{PORT} within {deadline_s} s")


class Netns:
    """A network namespace with a veth pair: 10.77.N.1 on the host, 10.77.N.2 inside."""

    def __init__(self, n):
        self.name = f"nvbench-{n}"
        self.host_if = f"nvbh{n}"
        self.host_ip = f"10.77.{n}.1"
        self.guest_ip = f"10.77.{n}.2"
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0",
           "netns", self.name)
        sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        # Our netstack reads frames from an AF_PACKET socket: no offloaded jumbo frames
        # (the responses here are small either way).
        if shutil.which("ethtool"):
            sh("ethtool", "-K", self.host_if, "tso", "off", "gso", "off", "gro", "off",
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        sh("ip", "-n", self.name, "addr", "add", f"{self.guest_ip}/24", "dev", "eth0")
        sh("ip", "-n", self.name, "link", "set", "eth0", "up")
        sh("ip", "-n", self.name, "link", "set", "lo", "up")
        sh("ip", "-n", self.name, "route", "add", "default", "via", self.host_ip)

    def path(self):
        return f"/var/run/netns/{self.name}"

    def close(self):
        sh("ip", "link", "del", self.host_if, check=False, stderr=subprocess.DEVNULL)
        sh("ip", "netns", "del", self.name, check=False, stderr=subprocess.DEVNULL)


def bundle(dirname, netns=None):
    os.makedirs(dirname, exist_ok=True)
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                    "args": ["node", SERVER, str(PORT)],
                    "env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "cwd": "/"},
        "root": {"path": "/", "readonly": True},
        "linux": {"resources": {"memory": {"limit": MEMORY}}},
    }
    if netns:
        config["linux"]["namespaces"] = [{"type": "network", "path": netns.path()}]
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(config, f)
    return dirname


class Runsc:
    def __init__(self, exe, root):
        self.exe, self.root = exe, root

    def __call__(self, *args, check=True, capture=False):
        return subprocess.run([self.exe, "--root", self.root, *args], check=check,
                              stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE if capture else subprocess.DEVNULL)


def ms(xs):
    return f"{statistics.median(xs) * 1000:8.1f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-n", "--runs", type=int, default=10)
    p.add_argument("--pss", default="1,10,50")
    p.add_argument("--warm-up", type=int, default=None,
                   help="warm-up requests for the image build (default: runsc's)")
    a = p.parse_args()
    exe = os.environ.get("NANOVISOR_RUNSC", os.path.join(ROOT, "target/release/runsc"))
    work = tempfile.mkdtemp(prefix="nv-bench-restore-")
    runsc = Runsc(exe, os.path.join(work, "root"))
    results = {}
    nets = []

    def fresh_net():
        # A sandbox takes its namespace's addresses for itself (as from a CNI plugin):
        # every sandbox gets a namespace of its own.
        ns = Netns(len(nets) + 1)
        nets.append(ns)
        return ns

    try:
        log("native: node server.js")
        t = []
        for _ in range(a.runs):
            start = time.monotonic()
            proc = subprocess.Popen(["node", SERVER, str(PORT)], stdout=subprocess.DEVNULL)
            t.append(first_200("127.0.0.1") - start)
            proc.kill()
            proc.wait()
        results["native node"] = t

        log("boot: runsc run --detach")
        t = []
        for i in range(a.runs):
            ns = fresh_net()
            b = bundle(os.path.join(work, f"bundle-boot{i}"), ns)
            start = time.monotonic()
            runsc("run", "--bundle", b, "--detach", f"boot{i}")
            t.append(first_200(ns.guest_ip) - start)
            runsc("delete", "--force", f"boot{i}")
        results["nanovisor boot"] = t

        log("building the image: runsc image build --ready-port")
        b = bundle(os.path.join(work, "bundle-build"), fresh_net())
        warm = [] if a.warm_up is None else ["--warm-up", str(a.warm_up)]
        out = runsc("image", "build", "-o", os.path.join(work, "images"),
                    "--ready-port", str(PORT), *warm, "--bundle", b, capture=True)
        log(out.stderr.decode().strip().splitlines()[-1:])
        image = out.stdout.decode().strip()
        # The first restore verifies memory.img in full and stamps it; later ones do not.
        ns = fresh_net()
        b = bundle(os.path.join(work, "bundle-warm"), ns)
        runsc("restore", "--image-path", image, "--bundle", b, "--detach", "warm")
        first_200(ns.guest_ip)
        runsc("delete", "--force", "warm")
        log("restore: runsc restore --detach (prefaulting the working set, and not)")
        t, returned, cold = [], [], []
        for i in range(a.runs):
            for mode in ("prefault", "ignore"):
                ns = fresh_net()
                b = bundle(os.path.join(work, f"bundle-rs{mode}{i}"), ns)
                sid = f"rs{mode}{i}"
                start = time.monotonic()
                runsc("restore", "--image-path", image, "--working-set", mode, "--bundle", b,
                      "--detach", sid)
                done = time.monotonic() - start
                first = first_200(ns.guest_ip) - start
                if mode == "prefault":
                    t.append(first)
                    returned.append(done)
                else:
                    cold.append(first)
                runsc("delete", "--force", sid)
        results["nanovisor restore"] = t
        results["  (runsc returned)"] = returned
        results["  no prefault"] = cold
        base = statistics.median(results["native node"])
        print(f"\nTime to first HTTP 200 ({a.runs} runs each; p50, ms; ratio to native node)")
        print(f"{'':20} {'p50':>8} {'min':>8} {'max':>8}  ratio")
        for name, xs in results.items():
            print(f"{name:20} {ms(xs)} {min(xs) * 1000:8.1f} {max(xs) * 1000:8.1f}"
                  f"  {statistics.median(xs) / base:5.2f}x")

        # Memory: N restored sandboxes (no network of their own: loopback only).
        pb = bundle(os.path.join(work, "bundle-pss"))
        print("\nPSS of restored sandboxes (sandbox processes' Pss, MiB)")
        print(f"{'working set':>12} {'sandboxes':>10} {'total':>10} {'per sandbox':>12}")
        for mode in ("prefault", "ignore"):
            for n in [int(x) for x in a.pss.split(",")]:
                ids = [f"pss{mode}{n}-{i}" for i in range(n)]
                for sid in ids:
                    runsc("restore", "--image-path", image, "--working-set", mode,
                          "--bundle", pb, "--detach", sid)
                time.sleep(1)
                total = 0
                for sid in ids:
                    with open(os.path.join(runsc.root, sid, "state.json")) as f:
                        pid = json.load(f)["pid"]
                    with open(f"/proc/{pid}/smaps_rollup") as f:
                        for line in f:
                            if line.startswith("Pss:"):
                                total += int(line.split()[1])
                print(f"{mode:>12} {n:10} {total / 1024:10.1f} {total / 1024 / n:12.1f}")
                for sid in ids:
                    runsc("delete", "--force", sid, check=False)
    finally:
        for ns in nets:
            ns.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
