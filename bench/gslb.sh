#!/usr/bin/env bash
# The GSLB benchmark: bench/fastpath.sh over a config with 10,000 region networks (10
# regions of 1,000 /24s each), comparing a gslb service with an all service, both
# queried with the same ECS option (10.1.2.0/24, a network of region r1) on every
# query (dnsperf -E).
#
#   bench/gslb.sh [load|callgrind|all]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp bench/bench.zone "$work/"
{
  cat <<'TOML'
[server]
listen = ["127.0.0.1:5392"]
udp_workers = 1
identity = "bench"

[[zones]]
origin = "bench.test."
file = "bench.zone"

[geo]
default_region = "r0"

[[services]]
name = "all.bench.test."
targets = ["127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4"]

[[services]]
name = "gslb.bench.test."
policy = "gslb"
check = "always"
targets = [
  { address = "127.0.3.1", region = "r0" },
  { address = "127.0.3.2", region = "r1" },
  { address = "127.0.3.3", region = "r2" },
  { address = "127.0.3.4", region = "r3" },
]

[checks.always]
kind = "none"
TOML
  for r in $(seq 0 9); do
    echo
    echo "[regions.r$r]"
    printf 'networks = ['
    for i in $(seq 0 999); do
      n=$((r * 1000 + i))
      printf '"10.%d.%d.0/24", ' $((n / 256)) $((n % 256))
    done
    echo ']'
    echo "location = [$((r * 9 - 45)).0, $((r * 30 - 150)).0]"
  done
} > "$work/gslb.toml"
# ECS option 8: family 1, source 24, scope 0, address 10.1.2 (network 258: region r0)
export DNSPERF_EXTRA="-E 8:000118000a0102"
bench/fastpath.sh "${1:-all}" "$work/gslb.toml" all.bench.test gslb.bench.test
