#!/usr/bin/env bash
# The fast-path benchmark.
#
#   bench/fastpath.sh [load|callgrind|rrl|all] [CONFIG] [NAME...]
#
# load:      steerdns pinned to core 1 (taskset -c 1), dnsperf pinned to core 0 for
#            $SECONDS_PER_NAME s per name; prints queries/s, average latency, lost
#            queries, the server's CPU µs per answered query (utime+stime from
#            /proc/PID/stat) and its peak RSS (VmHWM).
#            First line: a do-nothing C reflector (bench/reflector.c) measured the same
#            way, the kernel's own cost of a loopback UDP query on this machine.
# callgrind: steerdns under valgrind --tool=callgrind; counters are zeroed, a fixed
#            number of queries ($CALLGRIND_QUERIES) is sent, counters dumped:
#            instructions per query, stable on a noisy machine.
# PEER=gdnsd with load: gdnsd 3 (Debian package gdnsd) first, serving the same zone
#            with `all` as a multifo resource of four always-up addresses, pinned and
#            measured the same way, so the two compare within one run.
# rrl:       callgrind twice in one run, with RRL off and on (CONFIG plus a
#            [server.rrl] whose limit no query reaches): RRL's cost per query.
#
# Names default to those of bench/fastpath.toml. dnsperf (Debian package dnsperf) is
# installed when missing. Every address involved is on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
config=${2:-bench/fastpath.toml}
shift $(( $# > 2 ? 2 : $# ))
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(static.bench.test all.bench.test weighted.bench.test sticky.bench.test)
SECONDS_PER_NAME=${SECONDS_PER_NAME:-10}
CALLGRIND_QUERIES=${CALLGRIND_QUERIES:-10000}
DNSPERF_EXTRA=${DNSPERF_EXTRA:-}

need() {
  command -v "$1" >/dev/null 2>&1 && return
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need dnsperf dnsperf
need valgrind valgrind
need bc bc
cargo build --release --quiet
bin=target/release/steerdns
port=$(sed -n 's/^listen = \["127.0.0.1:\([0-9]*\)"\]/\1/p' "$config")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

wait_for_server() {
  for _ in $(seq 200); do
    dnsperf -s 127.0.0.1 -p "${1:-$port}" -d <(echo "static.bench.test A") -n 1 -t 1 2>/dev/null |
      grep -q "Queries completed: *1 " && return
    sleep 0.1
  done
  echo "server did not answer" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# drive PID on PORT with NAME for SECONDS_PER_NAME s and print one line of figures
measure() {
  local pid=$1 port=$2 name=$3 label=$4
  echo "$name A" > "$work/q"
  local before after
  before=$(cpu_ticks "$pid")
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$work/q" -l "$SECONDS_PER_NAME" -c 4 -q 200 $DNSPERF_EXTRA > "$work/out"
  after=$(cpu_ticks "$pid")
  local completed qps latency lost rss hz
  completed=$(awk '/Queries completed:/ {print $3}' "$work/out")
  qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$work/out")
  latency=$(awk '/Average Latency/ {printf "%.0f µs", $4 * 1e6; exit}' "$work/out")
  lost=$(awk '/Queries lost:/ {print $3}' "$work/out")
  rss=$(awk '/VmHWM/ {printf "%.1f MB", $2 / 1024}' "/proc/$pid/status")
  hz=$(getconf CLK_TCK)
  printf "%-24s %10s %12s %8s %12.2f %10s\n" "$label" "$qps" "$latency" "$lost" \
    "$(echo "($after - $before) * 1000000 / $hz / $completed" | bc -l)" "$rss"
}

load() {
  printf "%-24s %10s %12s %8s %12s %10s\n" name "queries/s" "avg latency" lost "CPU µs/query" "peak RSS"
  # the reflector speaks UDP only
  if [[ $DNSPERF_EXTRA != *tcp* ]]; then
    gcc -O2 -o "$work/reflector" bench/reflector.c
    taskset -c 1 "$work/reflector" 5391 &
    local reflector=$!
    sleep 0.5
    measure $reflector 5391 static.bench.test "(C reflector: the floor)"
    kill $reflector
  fi
  [ "${PEER:-}" != gdnsd ] || gdnsd_load
  taskset -c 1 "$bin" serve --config "$config" 2>"$work/server.log" &
  local pid=$!
  wait_for_server
  for name in "${names[@]}"; do
    measure $pid "$port" "$name" "$name"
  done
  kill -TERM $pid; wait $pid || true
}

# gdnsd 3 on the same zone and core: static.bench.test, and all.bench.test as a
# multifo resource of the four addresses steerdns's `all` service answers
gdnsd_load() {
  need gdnsd gdnsd
  local dir="$work/gdnsd"
  mkdir -p "$dir/zones"
  cat > "$dir/config" <<EOF
options => {
  listen => [ 127.0.0.1 ], dns_port => 5392, udp_threads => 1, tcp_threads => 1,
  run_dir => $dir/run, state_dir => $dir/state
}
plugins => { multifo => { all => {
  service_types => up, a => 127.0.3.1, b => 127.0.3.2, c => 127.0.3.3, d => 127.0.3.4
} } }
EOF
  { cat bench/bench.zone; echo "all 30 DYNA multifo!all"; } > "$dir/zones/bench.test"
  taskset -c 1 gdnsd -c "$dir" start 2>"$work/gdnsd.log" &
  local pid=$!
  wait_for_server 5392
  measure $pid 5392 static.bench.test "gdnsd static.bench.test"
  measure $pid 5392 all.bench.test "gdnsd all.bench.test"
  kill -TERM $pid; wait $pid || true
}

callgrind() {
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$bin" serve --config "$config" 2>"$work/server.log" &
  local pid=$!
  wait_for_server
  printf "%-22s %14s\n" name "instr/query"
  for name in "${names[@]}"; do
    echo "$name A" > "$work/q"
    # warm up, then count exactly CALLGRIND_QUERIES queries
    dnsperf -s 127.0.0.1 -p "$port" -d "$work/q" -n 200 -Q 2000 $DNSPERF_EXTRA >/dev/null
    callgrind_control -z $pid >/dev/null 2>&1
    dnsperf -s 127.0.0.1 -p "$port" -d "$work/q" -n "$CALLGRIND_QUERIES" -Q 2000 -t 10 $DNSPERF_EXTRA > "$work/out"
    local completed; completed=$(awk '/Queries completed:/ {print $3}' "$work/out")
    rm -f "$work"/cg.*.*
    callgrind_control -d $pid >/dev/null 2>&1; sleep 0.5
    # the newest dump holds exactly the queries since the zeroing
    local total; total=$(awk '/^totals:/ {print $2; exit}' "$(ls -t "$work"/cg.*.* | head -1)")
    printf "%-22s %14.0f   (%s queries answered)\n" "$name" "$(echo "$total / $completed" | bc -l)" "$completed"
  done
  kill -TERM $pid; wait $pid || true
}

rrl() {
  echo "RRL off ($config)"
  callgrind
  # beside CONFIG, so its relative paths hold; removed on exit
  local on; on="$(dirname "$config")/.rrl-on.toml"
  trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work" "'"$on"'"' EXIT
  { cat "$config"; printf '\n[server.rrl]\nresponses_per_second = 1000000\n'; } > "$on"
  echo "RRL on (responses_per_second = 1000000: every reply is counted, none limited)"
  config=$on
  callgrind
}

case $mode in
  load) load ;;
  callgrind) callgrind ;;
  rrl) rrl ;;
  all) load; callgrind ;;
  *) echo "usage: $0 [load|callgrind|rrl|all] [CONFIG] [NAME...]" >&2; exit 2 ;;
esac
