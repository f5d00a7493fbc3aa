#!/usr/bin/env bash
# Benchmarks: a getppid loop and a pipe write/read loop, natively, in Nanovisor
# (target/release/runsc do) and in gVisor (Debian's /usr/bin/runsc, ptrace platform), in one
# run. Each workload runs REPS times per environment; the table shows the median ns/op.
#
# Usage: bench/run.sh [-n ITERATIONS] [-r REPS]
#   NANOVISOR_RUNSC=path  use another build of our runsc (default: target/release/runsc)
#   GVISOR_RUNSC=path     use another gVisor runsc (default: /usr/bin/runsc, apt-installed)
# Needs root (KVM, gVisor). Not a test: it prints figures, it does not judge them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

iterations=100000
reps=5
while getopts "n:r:h" opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    r) reps=$OPTARG ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done

log() { printf '==> %s\n' "$*" >&2; }

# Our runsc and gVisor's share a name: keep them apart by full path, always.
nanovisor=${NANOVISOR_RUNSC:-$root/target/release/runsc}
gvisor=${GVISOR_RUNSC:-/usr/bin/runsc}

if [ -z "${NANOVISOR_RUNSC:-}" ]; then
  log "cargo build --release -p runsc"
  cargo build --release -p runsc >&2
fi
if [ ! -x "$gvisor" ]; then
  log "installing gVisor (Debian package runsc)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y runsc >&2 || { apt-get update -qq && apt-get install -y runsc >&2; }
fi
if [ "$(readlink -f "$nanovisor")" = "$(readlink -f "$gvisor")" ]; then
  echo "bench: NANOVISOR_RUNSC points at gVisor's runsc ($gvisor)" >&2
  exit 1
fi

bin=$root/target/bench-bin
mkdir -p "$bin"
workloads=(getppid pipe clock node-start)
for w in getppid pipe clock; do
  gcc -static -O2 -Wall -o "$bin/$w" "bench/$w.c"
done

# Runs one environment's command line around PROG ITERATIONS; prints the ns/op or "".
clean_env=(env -i PATH=/usr/bin:/bin HOME=/root)
measure() {
  local envname=$1 prog=$2 out
  if [ "$(basename "$prog")" = node-start ]; then
    measure_node_start "$envname"
    return
  fi
  case $envname in
    native) out=$("${clean_env[@]}" "$prog" "$iterations" </dev/null 2>"$bin/last-stderr") || true ;;
    nanovisor) out=$("${clean_env[@]}" timeout 300 "$nanovisor" do --rootfs / -- "$prog" "$iterations" </dev/null 2>"$bin/last-stderr") || true ;;
    gvisor) out=$("${clean_env[@]}" timeout 300 "$gvisor" --network=none --platform=ptrace do "$prog" "$iterations" </dev/null 2>"$bin/last-stderr") || true ;;
  esac
  awk '$2 == "ns/op" { print $3 }' <<<"$out"
}

# node-start: wall time of `node -e 0`, start to exit, in ns (sandbox start-up included).
measure_node_start() {
  local envname=$1 t0 t1 ok=0
  t0=$(date +%s%N)
  case $envname in
    native) "${clean_env[@]}" /usr/bin/node -e 0 </dev/null 2>"$bin/last-stderr" && ok=1 ;;
    nanovisor) "${clean_env[@]}" timeout 300 "$nanovisor" do --rootfs / -- /usr/bin/node -e 0 </dev/null 2>"$bin/last-stderr" && ok=1 ;;
    gvisor) "${clean_env[@]}" timeout 300 "$gvisor" --network=none --platform=ptrace do /usr/bin/node -e 0 </dev/null 2>"$bin/last-stderr" && ok=1 ;;
  esac
  t1=$(date +%s%N)
  [ $ok = 1 ] && echo $((t1 - t0))
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# Formats ns as "123 ns" or "12.3 µs"; "n/a" for an empty value.
fmt() {
  awk -v v="$1" 'BEGIN {
    if (v == "") print "n/a";
    else if (v < 1000) printf "%.0f ns\n", v;
    else if (v < 100000) printf "%.1f µs\n", v / 1000;
    else if (v < 10000000) printf "%.0f µs\n", v / 1000;
    else printf "%.0f ms\n", v / 1000000 }'
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.3g×\n", a / b }'
}

declare -A result
for w in "${workloads[@]}"; do
  for e in native nanovisor gvisor; do
    log "$w in $e: $reps × $iterations iterations"
    values=()
    for ((i = 0; i < reps; i++)); do
      v=$(measure "$e" "$bin/$w")
      [ -n "$v" ] && values+=("$v")
    done
    if [ ${#values[@]} -eq 0 ]; then
      log "$w in $e: no result; last stderr: $(tail -n 3 "$bin/last-stderr")"
      result[$w,$e]=""
    else
      result[$w,$e]=$(printf '%s\n' "${values[@]}" | median)
      log "$w in $e: ns/op ${values[*]} -> median ${result[$w,$e]}"
    fi
  done
done

echo
echo "$(date -u +%Y-%m-%d) · $(nproc) vCPUs · $(uname -r) · $iterations iterations, median of $reps runs · KVM: $(if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo hardware; else echo 'software (kvm_pvm)'; fi)"
echo
echo "| workload | native | nanovisor | gvisor-ptrace | nanovisor/native | nanovisor/gvisor |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for w in "${workloads[@]}"; do
  n=${result[$w,native]} nv=${result[$w,nanovisor]} gv=${result[$w,gvisor]}
  case $w in
    getppid) label="getppid (per call)" ;;
    pipe) label="pipe write+read 1 B (per pair)" ;;
    clock) label="clock_gettime (per call)" ;;
    node-start) label="node -e 0 (whole run)" ;;
    *) label=$w ;;
  esac
  echo "| $label | $(fmt "$n") | $(fmt "$nv") | $(fmt "$gv") | $(ratio "$nv" "$n") | $(ratio "$nv" "$gv") |"
done
