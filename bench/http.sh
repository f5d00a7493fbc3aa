#!/usr/bin/env bash
# HTTP benchmark: a hello-world Node server (bench/workloads/http_server.js) under load from wrk,
# in one run, in four setups:
#   native          node on the host, wrk to 127.0.0.1
#   nanovisor       target/release/runsc do --network sandbox; wrk to the guest's address over
#                   the sandbox's veth (Nanovisor's user-space netstack answers)
#   nanovisor -p    the same sandbox, wrk to 127.0.0.1:HOSTPORT, runsc's -p forward
#   gvisor-ptrace   /usr/bin/runsc --platform=ptrace --network=sandbox run, in a network
#                   namespace + veth pair this script makes (gVisor's netstack answers)
# Every setup gets the same warm-up and the same wrk parameters; the table shows requests/s,
# p50/p99 latency (wrk --latency) and the ratio against native. wrk's full output goes to
# target/bench-http/ and to stderr.
#
# Usage: bench/http.sh [-d DURATION] [-c CONNECTIONS] [-t THREADS] [-w WARMUP]
#   NANOVISOR_RUNSC=path  use another build of our runsc (default: target/release/runsc)
#   GVISOR_RUNSC=path     use another gVisor runsc (default: /usr/bin/runsc, apt-installed)
# Needs root (KVM, network namespaces). Not a test: it prints figures, it does not judge them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=10s
connections=32
threads=2
warmup=2s
while getopts "d:c:t:w:h" opt; do
  case $opt in
    d) duration=$OPTARG ;;
    c) connections=$OPTARG ;;
    t) threads=$OPTARG ;;
    w) warmup=$OPTARG ;;
    *) sed -n '2,18p' "$0"; exit 2 ;;
  esac
done

port=8080       # the server's port in every setup
fwd_port=18080  # the host port of Nanovisor's -p forward
wrk_args=(-t"$threads" -c"$connections" --timeout 2s --latency)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/http.sh: %s\n' "$*" >&2; exit 1; }

# Our runsc and gVisor's share a name: keep them apart by full path, always.
nanovisor=${NANOVISOR_RUNSC:-$root/target/release/runsc}
gvisor=${GVISOR_RUNSC:-/usr/bin/runsc}
server=$root/bench/workloads/http_server.js
clean_env=(env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root)
out=$root/target/bench-http
work=$(mktemp -d /tmp/bench-http.XXXXXX)
mkdir -p "$out"

# ---- cleanup: every process, container, namespace and veth this script makes ----------------

server_pid=""       # the current setup's server (node, runsc do, or gVisor's runsc run)
gv_root=$work/gvisor-state
gv_id=bench-http-$$
gv_netns=""         # set once created
gv_host_if=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

stop_gvisor() {
  if [ -d "$gv_root" ]; then
    "$gvisor" --root "$gv_root" kill "$gv_id" KILL >/dev/null 2>&1 || true
    stop_server
    "$gvisor" --root "$gv_root" delete -force "$gv_id" >/dev/null 2>&1 || true
  fi
  if [ -n "$gv_netns" ]; then
    ip netns del "$gv_netns" 2>/dev/null || true
    gv_netns=""
  fi
  if [ -n "$gv_host_if" ]; then
    ip link del "$gv_host_if" 2>/dev/null || true   # normally gone with the netns
    gv_host_if=""
  fi
}

cleanup() {
  stop_gvisor
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites ----------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root"
apt_install() {
  log "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "$@" >&2 || { apt-get update -qq && apt-get install -y "$@" >&2; }
}
command -v wrk >/dev/null || apt_install wrk
command -v curl >/dev/null || apt_install curl
[ -x "$gvisor" ] || apt_install runsc
if [ -z "${NANOVISOR_RUNSC:-}" ]; then
  log "cargo build --release -p runsc"
  cargo build --release -p runsc >&2
fi
if [ "$(readlink -f "$nanovisor")" = "$(readlink -f "$gvisor")" ]; then
  die "NANOVISOR_RUNSC points at gVisor's runsc ($gvisor)"
fi
for p in "$port" "$fwd_port"; do
  if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is already in use on the host"; fi
done

# ---- helpers ----------------------------------------------------------------------------------

# Waits until http://ADDR/ answers "hello" (up to 60 s), or the server process has died.
wait_http() {
  local url=$1 name=$2
  for _ in $(seq 600); do
    if [ "$(curl -s -m 1 "$url" 2>/dev/null || true)" = hello ]; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  log "$name: the server never answered $url; its output:"
  cat "$work/$name.log" >&2 || true
  return 1
}

declare -A rps p50 p99 errs note
rows=()

# Warms up, then measures URL; records the figures under ROW.
run_wrk() {
  local row=$1 url=$2 file
  file=$out/$(tr -c 'a-zA-Z0-9\n' - <<<"$row").txt
  log "$row: warm-up $warmup, then wrk ${wrk_args[*]} -d$duration $url"
  wrk "${wrk_args[@]}" -d"$warmup" "$url" >/dev/null || true
  wrk "${wrk_args[@]}" -d"$duration" "$url" >"$file" || true
  cat "$file" >&2
  rows+=("$row")
  rps[$row]=$(awk '/^Requests\/sec:/ { print $2 }' "$file")
  p50[$row]=$(awk '$1 == "50%" { print $2 }' "$file")
  p99[$row]=$(awk '$1 == "99%" { print $2 }' "$file")
  # "Socket errors: connect 0, read 0, write 0, timeout 12" and "Non-2xx or 3xx responses: N"
  errs[$row]=$(awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); s = $0 }
                    /Non-2xx/ { n = $NF " non-2xx" }
                    END { if (s != "" && n != "") print s ", " n; else if (s n != "") print s n; else print "none" }' "$file")
}

# Records a setup that could not be measured.
skip_row() {
  rows+=("$1"); rps[$1]=""; p50[$1]=""; p99[$1]=""; errs[$1]="not measured"; note[$1]=$2
  log "$1: not measured: $2"
}

# ---- setup 1: native --------------------------------------------------------------------------

bench_native() {
  local row=native
  log "$row: node on the host"
  "${clean_env[@]}" /usr/bin/node "$server" "$port" </dev/null >"$work/$row.log" 2>&1 &
  server_pid=$!
  if wait_http "http://127.0.0.1:$port/" "$row"; then
    run_wrk "$row" "http://127.0.0.1:$port/"
  else
    skip_row "$row" "server did not start"
  fi
  stop_server
}

# ---- setup 2: Nanovisor, over the veth and through the -p forward ----------------------------

bench_nanovisor() {
  local name=nanovisor addr=""
  log "$name: runsc do --network sandbox -p $fwd_port:$port"
  "${clean_env[@]}" "$nanovisor" do --network sandbox -p "$fwd_port:$port" \
    -- /usr/bin/node "$server" "$port" </dev/null >"$work/$name.log" 2>&1 &
  server_pid=$!
  # "runsc: sandbox ID: address A/24 (host side H on IF)"
  for _ in $(seq 300); do
    addr=$(sed -n 's|^runsc: sandbox [^ ]*: address \([0-9.]*\)/.*|\1|p' "$work/$name.log")
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ] || ! wait_http "http://$addr:$port/" "$name"; then
    log "$name: runsc output:"; cat "$work/$name.log" >&2
    skip_row "nanovisor (veth)" "sandbox did not start"
    skip_row "nanovisor (-p forward)" "sandbox did not start"
    stop_server
    return
  fi
  grep '^runsc:' "$work/$name.log" >&2 || true
  run_wrk "nanovisor (veth)" "http://$addr:$port/"
  if wait_http "http://127.0.0.1:$fwd_port/" "$name"; then
    run_wrk "nanovisor (-p forward)" "http://127.0.0.1:$fwd_port/"
  else
    skip_row "nanovisor (-p forward)" "forward did not answer"
  fi
  stop_server
}

# ---- setup 3: gVisor, its own netstack on a veth pair like ours ------------------------------

# Picks a free 10.209.N.0/24 (no host address or route in it); prints N.
free_subnet() {
  local used n
  used=$(ip -4 -o addr show; ip -4 route show table all)
  for n in $(seq 0 255); do
    grep -q "10\.209\.$n\." <<<"$used" || { echo "$n"; return; }
  done
  return 1
}

bench_gvisor() {
  local row="gvisor-ptrace (netstack, veth)" n addr bundle=$work/gvisor-bundle hide_sysctl=""
  n=$(free_subnet) || { skip_row "$row" "no free 10.209.N.0/24"; return; }
  addr=10.209.$n.2
  gv_netns=bench-http-gv-$$
  gv_host_if=hbgv$$
  log "$row: netns $gv_netns, host $gv_host_if 10.209.$n.1/24 <-> eth0 $addr/24"
  # The pod-style namespace gVisor expects: eth0 addressed, a default route via the host end.
  # gVisor's sandbox network takes eth0's address and routes over, and removes the address
  # from the namespace's kernel so only its netstack answers.
  ip netns add "$gv_netns"
  ip link add "$gv_host_if" type veth peer name eth0 netns "$gv_netns"
  ip addr add "10.209.$n.1/24" dev "$gv_host_if"
  ip link set "$gv_host_if" up
  ip -n "$gv_netns" addr add "$addr/24" dev eth0
  ip -n "$gv_netns" link set eth0 up
  ip -n "$gv_netns" link set lo up
  ip -n "$gv_netns" route add default via "10.209.$n.1"

  mkdir -p "$bundle" "$gv_root"
  cat >"$bundle/config.json" <<EOF
{
  "ociVersion": "1.0.0",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "args": ["/usr/bin/node", "$server", "$port"],
    "env": ["PATH=/usr/bin:/bin", "HOME=/root"],
    "cwd": "/",
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}]
  },
  "root": {"path": "/", "readonly": true},
  "hostname": "gvisor",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {
    "namespaces": [
      {"type": "pid"},
      {"type": "network", "path": "/var/run/netns/$gv_netns"},
      {"type": "ipc"},
      {"type": "uts"},
      {"type": "mount"}
    ]
  }
}
EOF
  # This 2022 gVisor refuses sandbox networking "in the root network namespace", and decides
  # that a namespace is the root one when /proc/sys/net/core/rmem_default exists; Linux 6.x
  # has that file in every namespace. When the check would misfire, run gVisor's runsc in a
  # private mount namespace with an empty tmpfs over /proc/sys/net (the sentry has its own
  # /proc; nothing else in gVisor's netstack setup reads the host's /proc/sys/net).
  if ip netns exec "$gv_netns" test -e /proc/sys/net/core/rmem_default; then
    hide_sysctl="mount -t tmpfs -o size=4k,mode=555 none /proc/sys/net && "
  fi
  "${clean_env[@]}" unshare -m --propagation private sh -c \
    "${hide_sysctl}exec \"\$@\"" sh \
    "$gvisor" --root "$gv_root" --platform=ptrace --network=sandbox run --bundle "$bundle" "$gv_id" \
    </dev/null >"$work/gvisor.log" 2>&1 &
  server_pid=$!
  if wait_http "http://$addr:$port/" gvisor; then
    run_wrk "$row" "http://$addr:$port/"
    [ -n "$hide_sysctl" ] && note[$row]="run with /proc/sys/net hidden from gVisor's runsc (see script)"
  else
    skip_row "$row" "sandbox did not start: $(tail -n 1 "$work/gvisor.log")"
  fi
  stop_gvisor
}

# ---- run and report ---------------------------------------------------------------------------

bench_native
bench_nanovisor
bench_gvisor

# Milliseconds from wrk's latency ("850.00us", "3.85ms", "1.02s").
ms() {
  awk -v v="$1" 'BEGIN {
    if (v == "") exit
    if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
    else if (v ~ /m$/) { sub(/m$/, "", v); print v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
  }'
}
fmt_ms() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else if (v < 10) printf "%.2f ms\n", v; else printf "%.1f ms\n", v }'; }
fmt_rps() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else printf "%.0f\n", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f×\n", a / b }'; }

n_rps=${rps[native]:-} n_p50=$(ms "${p50[native]:-}") n_p99=$(ms "${p99[native]:-}")
echo
echo "$(date -u +%Y-%m-%d) · $(nproc) vCPUs · $(uname -r) · wrk ${wrk_args[*]} -d$duration after a $warmup warm-up · KVM: $(if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo hardware; else echo 'software (kvm_pvm)'; fi)"
echo
echo "| setup | requests/s | p50 | p99 | req/s vs native | p50 vs native | p99 vs native | wrk errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for row in "${rows[@]}"; do
  r=${rps[$row]} a=$(ms "${p50[$row]}") b=$(ms "${p99[$row]}")
  echo "| $row | $(fmt_rps "$r") | $(fmt_ms "$a") | $(fmt_ms "$b") | $(ratio "$r" "$n_rps") | $(ratio "$a" "$n_p50") | $(ratio "$b" "$n_p99") | ${errs[$row]} |"
done
for row in "${rows[@]}"; do
  if [ -n "${note[$row]:-}" ]; then echo; echo "$row: ${note[$row]}"; fi
done
