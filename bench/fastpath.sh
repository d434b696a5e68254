#!/usr/bin/env bash
# The fast-path benchmark.
#
#   bench/fastpath.sh [load|callgrind|rrl|dnssec|all] [CONFIG] [NAME...]
#
# load:      steerdns pinned to core 1 (taskset -c 1), dnsperf pinned to core 0 for
#            $SECONDS_PER_NAME s per name; prints queries/s, average latency, lost
#            queries, the server's CPU µs per answered query (utime and stime from
#            /proc/PID/stat, sampled at each 100 Hz tick, so coarse for a user share
#            of 0.1 µs; the CPU column is exact: nanoseconds on a CPU from
#            /proc/PID/task/*/schedstat) and its peak RSS (VmHWM).
#            ROUNDS=5 runs five interleaved rounds and then prints each name's
#            medians with their range.
#            First line: a do-nothing C reflector (bench/reflector.c) measured the same
#            way, the kernel's own cost of a loopback UDP query on this machine.
# callgrind: steerdns under valgrind --tool=callgrind; counters are zeroed, a fixed
#            number of queries ($CALLGRIND_QUERIES) is sent, counters dumped:
#            instructions per query of the UDP thread (the one calling recvmmsg),
#            stable on a noisy machine.
# PEER=gdnsd with load or callgrind: gdnsd 3 (Debian package gdnsd) first, serving the
#            same zone with `all` as a multifo resource of four always-up addresses,
#            pinned and measured the same way (under valgrind for callgrind), so the
#            two compare within one run.
# rrl:       callgrind twice in one run, with RRL off and on (CONFIG plus a
#            [server.rrl] whose limit no query reaches): RRL's cost per query.
# dnssec:    CONFIG's zone signed with a fresh ECDSA key; callgrind, then load, each
#            for every name without DO and with DO=1 (dnsperf -D; the signatures come
#            from the cache after the first): the cost of signed answers.
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

cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
# nanoseconds on a CPU, every thread of PID summed (exact, where the ticks above are
# sampled at 100 Hz: a user share of 0.1 µs per query is only tens of samples a run)
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ns += $1} END {printf "%.0f", ns}'; }

# drive PID on PORT with NAME for SECONDS_PER_NAME s and print one line of figures:
# label, queries/s, average latency, lost, user and system CPU µs per answered query,
# their sum, peak RSS
measure() {
  local pid=$1 port=$2 name=$3 label=$4
  echo "$name A" > "$work/q"
  local before after ns_before ns_after
  before=$(cpu_ticks "$pid")
  ns_before=$(cpu_ns "$pid")
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$work/q" -l "$SECONDS_PER_NAME" -c 4 -q 200 $DNSPERF_EXTRA > "$work/out"
  after=$(cpu_ticks "$pid")
  ns_after=$(cpu_ns "$pid")
  local completed qps latency lost rss hz u0 s0 u1 s1
  completed=$(awk '/Queries completed:/ {print $3}' "$work/out")
  qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$work/out")
  latency=$(awk '/Average Latency/ {printf "%.0fµs", $4 * 1e6; exit}' "$work/out")
  lost=$(awk '/Queries lost:/ {print $3}' "$work/out")
  rss=$(awk '/VmHWM/ {printf "%.1fMB", $2 / 1024}' "/proc/$pid/status")
  hz=$(getconf CLK_TCK)
  read -r u0 s0 <<<"$before"
  read -r u1 s1 <<<"$after"
  printf "%-28s %10s %10s %6s %8.3f %8.3f %8.3f %9s\n" "$label" "$qps" "$latency" "$lost" \
    "$(echo "($u1 - $u0) * 1000000 / $hz / $completed" | bc -l)" \
    "$(echo "($s1 - $s0) * 1000000 / $hz / $completed" | bc -l)" \
    "$(echo "($ns_after - $ns_before) / 1000 / $completed" | bc -l)" "$rss"
}

header() {
  printf "%-28s %10s %10s %6s %8s %8s %8s %9s\n" name "queries/s" latency lost "user µs" "sys µs" "CPU µs" "peak RSS"
}

# one round: the reflector (UDP only), gdnsd when PEER=gdnsd, then steerdns
load_round() {
  if [[ $DNSPERF_EXTRA != *tcp* ]]; then
    gcc -O2 -o "$work/reflector" bench/reflector.c
    taskset -c 1 "$work/reflector" 5391 &
    local reflector=$!
    sleep 0.5
    measure $reflector 5391 static.bench.test "(C reflector: the floor)"
    kill $reflector; wait $reflector 2>/dev/null || true
  fi
  [ "${PEER:-}" != gdnsd ] || gdnsd_load
  taskset -c 1 "$bin" serve --config "$config" 2>"$work/server.log" &
  local pid=$!
  wait_for_server
  for name in "${names[@]}"; do
    measure $pid "$port" "$name" "$name${LABEL_SUFFIX:-}"
    if [ -n "${ALSO_DO:-}" ]; then
      DNSPERF_EXTRA="$DNSPERF_EXTRA -D" measure $pid "$port" "$name" "$name +DO"
    fi
  done
  kill -TERM $pid; wait $pid || true
}

# ROUNDS interleaved rounds (default 1; 5 for the README's figures): each round's
# lines, then per name the medians of the CPU columns with their range
load() {
  local rounds=${ROUNDS:-1}
  header
  : > "$work/rounds"
  for _ in $(seq "$rounds"); do
    load_round | tee -a "$work/rounds"
  done
  [ "$rounds" -gt 1 ] || return 0
  echo
  echo "medians of $rounds interleaved rounds (range):"
  printf "%-28s %22s %22s %22s\n" name "user µs/query" "sys µs/query" "CPU µs/query"
  awk '{ key = $1; for (i = 2; i <= NF - 7; i++) key = key " " $i
         n[key]++; u[key, n[key]] = $(NF - 3); s[key, n[key]] = $(NF - 2); t[key, n[key]] = $(NF - 1)
         if (!(key in seen)) { seen[key] = 1; order[++keys] = key } }
       function med(a, k, m,   i, j, v, tmp) {
         for (i = 1; i <= m; i++) v[i] = a[k, i]
         for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
         return sprintf("%.3f (%.3f-%.3f)", (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2, v[1], v[m]) }
       END { for (i = 1; i <= keys; i++) { k = order[i]
               printf "%-28s %22s %22s %22s\n", k, med(u, k, n[k]), med(s, k, n[k]), med(t, k, n[k]) } }' "$work/rounds"
}

# gdnsd 3 on the same zone and core: static.bench.test, and all.bench.test as a
# multifo resource of the four addresses steerdns's `all` service answers
gdnsd_config() {
  need gdnsd gdnsd
  local dir="$work/gdnsd"
  mkdir -p "$dir/zones"
  printf '%s\n' \
    "options => {" \
    "  listen => [ 127.0.0.1 ], dns_port => 5392, udp_threads => 1, tcp_threads => 1," \
    "  run_dir => $dir/run, state_dir => $dir/state" \
    "}" \
    "plugins => { multifo => { all => {" \
    "  service_types => up, a => 127.0.3.1, b => 127.0.3.2, c => 127.0.3.3, d => 127.0.3.4" \
    "} } }" > "$dir/config"
  { cat bench/bench.zone; echo "all 30 DYNA multifo!all"; } > "$dir/zones/bench.test"
  echo "$dir"
}

gdnsd_load() {
  local dir; dir=$(gdnsd_config)
  taskset -c 1 gdnsd -c "$dir" -f start 2>"$work/gdnsd.log" &
  local pid=$!
  wait_for_server 5392
  measure $pid 5392 static.bench.test "gdnsd static.bench.test"
  measure $pid 5392 all.bench.test "gdnsd all.bench.test"
  kill -TERM $pid; wait $pid || true
}

# instructions per query of PID (under callgrind) on PORT for NAME
count() {
  local pid=$1 port=$2 name=$3 label=$4
  echo "$name A" > "$work/q"
  # warm up, then count exactly CALLGRIND_QUERIES queries
  dnsperf -s 127.0.0.1 -p "$port" -d "$work/q" -n 200 -Q 2000 $DNSPERF_EXTRA >/dev/null
  callgrind_control -z $pid >/dev/null 2>&1
  dnsperf -s 127.0.0.1 -p "$port" -d "$work/q" -n "$CALLGRIND_QUERIES" -Q 2000 -t 10 $DNSPERF_EXTRA > "$work/out"
  local completed; completed=$(awk '/Queries completed:/ {print $3}' "$work/out")
  rm -f "$work"/cg.*.*
  callgrind_control -d $pid >/dev/null 2>&1; sleep 0.5
  # this dump holds exactly the queries since the zeroing, one file per thread: the
  # UDP worker's is the one that calls recvmmsg (the other threads' background work,
  # heartbeats and status, would add noise that depends on the machine's speed)
  local total; total=$(for f in "$work"/cg.*.*; do
    if grep -q recvmmsg "$f"; then awk '/^totals:/ {print $2; exit}' "$f"; fi; done | sort -n | tail -1)
  printf "%-28s %14.0f   (%s queries answered)\n" "$label" "$(echo "$total / $completed" | bc -l)" "$completed"
}

callgrind() {
  printf "%-28s %14s\n" name "instr/query"
  if [ "${PEER:-}" = gdnsd ]; then
    local dir; dir=$(gdnsd_config)
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg.%p" gdnsd -c "$dir" -f start 2>"$work/gdnsd.log" &
    local peer=$!
    wait_for_server 5392
    count $peer 5392 static.bench.test "gdnsd static.bench.test"
    count $peer 5392 all.bench.test "gdnsd all.bench.test"
    kill -TERM $peer; wait $peer || true
    rm -f "$work"/cg.*
  fi
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg.%p" "$bin" serve --config "$config" 2>"$work/server.log" &
  local pid=$!
  wait_for_server
  for name in "${names[@]}"; do
    count $pid "$port" "$name" "$name${LABEL_SUFFIX:-}"
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

dnssec() {
  # beside CONFIG, so its relative paths hold; removed on exit
  local dir signed key
  dir=$(dirname "$config")
  signed="$dir/.dnssec-on.toml"
  trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work" "'"$signed"'" "'"$dir/.dnssec-keys"'"' EXIT
  rm -rf "$dir/.dnssec-keys"; mkdir -p "$dir/.dnssec-keys"
  "$bin" dnssec keygen bench.test --dir "$dir/.dnssec-keys" >/dev/null 2>&1
  key=$(cd "$dir" && ls .dnssec-keys/*.private)
  awk -v key="$key" '{ print } /^file = "bench.zone"/ { print "dnssec_keys = [\"" key "\"]" }' "$config" > "$signed"
  config=$signed
  echo "callgrind, the zone signed: without DO, then with DO=1"
  callgrind
  LABEL_SUFFIX=" +DO" DNSPERF_EXTRA="$DNSPERF_EXTRA -D" callgrind
  echo
  echo "load, the zone signed: each name without DO, then with DO=1"
  ALSO_DO=1 load
}

case $mode in
  load) load ;;
  callgrind) callgrind ;;
  rrl) rrl ;;
  dnssec) dnssec ;;
  all) load; callgrind ;;
  *) echo "usage: $0 [load|callgrind|rrl|dnssec|all] [CONFIG] [NAME...]" >&2; exit 2 ;;
esac
