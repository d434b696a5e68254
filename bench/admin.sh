#!/usr/bin/env bash
# The admin API under polling: the latency of a state change (PUT …/state, answered
# once the View shows it) alone, then while four clients fetch /v1/status and
# /v1/explain as fast as they can, in one run.
#
#   bench/admin.sh [CHANGES]
#
# Every address involved is on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."
changes=${1:-300}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet
cp zones/lb.example.zone "$work/"
sed -e 's|../zones/lb.example.zone|lb.example.zone|' -e 's|127.0.0.1:5353|127.0.0.1:5394|' \
  examples/quickstart.toml > "$work/c.toml"
printf '\n[store]\nbackend = "memory"\n' >> "$work/c.toml"
sed -i 's|^\[server\]|[server]\nadmin_listen = "127.0.0.1:8094"|' "$work/c.toml"
target/release/steerdns serve --config "$work/c.toml" 2>"$work/log" &
for _ in $(seq 100); do curl -sf http://127.0.0.1:8094/healthz >/dev/null && break; sleep 0.2; done
python3 - "$changes" <<'PY'
import http.client, statistics, sys, threading, time
changes = int(sys.argv[1])

def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    assert response.status == 200, (method, path, response.status)

def changes_ms():
    conn = http.client.HTTPConnection("127.0.0.1", 8094)
    took = []
    for i in range(changes):
        state = "drain" if i % 2 == 0 else "auto"
        start = time.perf_counter()
        request(conn, "PUT", "/v1/services/www.lb.example/targets/127.0.0.10/state", f'{{"state": "{state}"}}')
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.99) - 1]

stop = threading.Event()
reads = [0]
def poll(path):
    conn = http.client.HTTPConnection("127.0.0.1", 8094)
    while not stop.is_set():
        request(conn, "GET", path)
        reads[0] += 1

alone = changes_ms()
pollers = [threading.Thread(target=poll, args=(p,)) for p in ["/v1/status", "/v1/explain?name=www.lb.example", "/v1/status", "/metrics"]]
for t in pollers:
    t.start()
time.sleep(1)
start, before = time.time(), reads[0]
polled = changes_ms()
rate = (reads[0] - before) / (time.time() - start)
stop.set()
for t in pollers:
    t.join()
print(f"state change alone:               median {alone[0]:.2f} ms, p99 {alone[1]:.2f} ms ({changes} changes)")
print(f"while 4 clients poll ({rate:.0f} reads/s): median {polled[0]:.2f} ms, p99 {polled[1]:.2f} ms")
PY
