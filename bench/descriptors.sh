#!/usr/bin/env bash
# The descriptor benchmark (SPEC §7): steerdns under an open-file limit of 20,000 while
# 20,000 TCP clients from 400 loopback addresses connect and send a query every 3 s.
# Prints the server's CPU use while they hold on, the health of a probed target
# before and after (it must stay up with no failed probe), and a UDP answer.
#
#   bench/descriptors.sh [CONNECTIONS]
#
# Every address involved is on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-20000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet
cp bench/bench.zone "$work/"
python3 -m http.server --bind 127.0.97.1 18097 >/dev/null 2>&1 &
cat > "$work/c.toml" <<'TOML'
[server]
listen = ["127.0.0.1:5393"]
admin_listen = "127.0.0.1:8093"
udp_workers = 1
tcp_idle_timeout = "10s"
# limits above the descriptors, so that the open-file limit is what binds
tcp_max_connections = 100000
tcp_max_connections_per_client = 1000

[store]
backend = "memory"

[[zones]]
origin = "bench.test."
file = "bench.zone"

[checks.web]
port = 18097
interval = "1s"
timeout = "500ms"

[[services]]
name = "h.bench.test."
policy = "failover"
check = "web"
targets = [{ address = "127.0.97.1", priority = 1 }, { address = "127.0.97.2", priority = 2 }]
TOML
(ulimit -n 20000 && exec target/release/steerdns serve --config "$work/c.toml") 2>"$work/log" &
server=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:8093/healthz >/dev/null && break; sleep 0.2; done
target() { curl -s http://127.0.0.1:8093/v1/status | python3 -c '
import json, sys
for s in json.load(sys.stdin)["services"]:
    for t in s["targets"]:
        if t["address"] == "127.0.97.1":
            p = t.get("last_probe") or {}
            print(t["health"], "- fails", t["fails"], "- last probe passed:", p.get("passed"), p.get("reason"), "- last failure:", t["last_failure"])'; }
echo "target before:  $(target)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
# clients in processes of 5,000 connections each (the open-file limit binds them too)
cat > "$work/clients.py" <<'PY'
import socket, struct, sys, time
first, n = int(sys.argv[1]), int(sys.argv[2])
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(bytes([len(l)]) + l.encode() for l in ["static", "bench", "test"]) + b"\x00\x00\x01\x00\x01"
frame = struct.pack("!H", len(query)) + query
socks, refused = [], 0
for i in range(first, first + n):
    s = socket.socket()
    s.setblocking(False)
    s.bind((f"127.2.{i // 50 % 250}.{1 + i % 50}", 0))
    try:
        s.connect(("127.0.0.1", 5393))
    except BlockingIOError:
        pass
    except OSError:
        refused += 1
    socks.append(s)
print(f"clients {first}+: {n} connections attempted ({refused} refused at once)", flush=True)
end = time.time() + 20
while time.time() < end:
    sent = closed = 0
    for s in socks:
        try:
            s.send(frame)
            sent += 1
        except OSError:
            closed += 1
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
    time.sleep(3)
print(f"clients {first}+: last round {sent} queries sent, {closed} connections closed by the server", flush=True)
PY
clients=()
for first in $(seq 0 5000 $((connections - 1))); do
  python3 "$work/clients.py" "$first" $(( connections - first < 5000 ? connections - first : 5000 )) &
  clients+=($!)
done
sleep 8
before=$(cpu_ticks); sleep 10; after=$(cpu_ticks)
echo "server CPU:     $(echo "($after - $before) * 100 / $(getconf CLK_TCK) / 10" | bc -l | xargs printf %.1f)% of one core over 10 s with the clients connected"
echo "target during:  $(target)"
udp_answer() { python3 -c '
import socket
q = b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01h\x05bench\x04test\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(q, ("127.0.0.1", 5393))
r = s.recv(4096); n = int.from_bytes(r[6:8], "big")
print(", ".join(".".join(map(str, r[len(r) - 16 * n + 16 * i + 12:len(r) - 16 * n + 16 * i + 16])) for i in range(n)) or "no records")'; }
echo "UDP answer:     h.bench.test A $(udp_answer)"
wait "${clients[@]}" || true
echo "target after:   $(target)"
grep -E "clamped|out of file" "$work/log" | head -3 | sed 's/^/server log:     /'
