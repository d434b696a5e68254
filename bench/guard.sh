#!/usr/bin/env bash
# The fast path's regression guard: callgrind instructions per query for each name of
# bench/fastpath.toml (bench/fastpath.sh callgrind), against the figures kept in
# bench/instructions.expected. Fails when any name costs more than 5% over its figure.
# Instruction counts are repeatable where timings are not (they move by about ±2%
# between runs with how datagrams fall into recvmmsg batches). When a change makes the
# path cheaper, lower the figures in the same commit.
#
#   bench/guard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(CALLGRIND_QUERIES=${CALLGRIND_QUERIES:-5000} bench/fastpath.sh callgrind)
echo "$out"
status=0
while read -r name expected _; do
  [[ -z $name || $name == \#* ]] && continue
  got=$(awk -v n="$name" '$1 == n {print $2}' <<<"$out")
  if [ -z "$got" ]; then
    echo "guard: no figure for $name"
    status=1
    continue
  fi
  limit=$((expected * 105 / 100))
  if [ "$got" -gt "$limit" ]; then
    echo "guard: $name costs $got instructions per query, over $limit (its figure $expected + 5%)"
    status=1
  else
    echo "guard: $name $got ≤ $limit"
  fi
done < bench/instructions.expected
exit $status
