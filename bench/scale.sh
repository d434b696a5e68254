#!/usr/bin/env bash
# Scale: large zones and many services, as an operator would load them.
#
#   bench/scale.sh [zone|services|all]
#
# zone:     a zone of 1,000,000 A records: `steerdns check` (time, peak RSS), `serve`
#           to the first answer (time, RSS), one reload (time, peak RSS, RSS after);
#           then 40,000 records of which half are CNAMEs: `check` time. PEER=nsd
#           serves the big zone with NSD (Debian package nsd) first: time to its first
#           answer and its RSS.
# services: 100,000 services of 4 targets (`all`) in one zone: `check`, `serve` to the
#           first answer, one reload and then four in a row (time, /healthz polled
#           every 100 ms throughout, RSS steady, peak and after), and dnsperf at
#           20,000 queries/s across three reloads (queries lost).
#
# Every address involved is on 127.0.0.0/8; dnsperf is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
command -v dnsperf >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf >/dev/null
}
cargo build --release --quiet
bin=$PWD/target/release/steerdns
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# NAME CONFIG: `steerdns check`, its time and peak RSS
check() {
  /usr/bin/time -f "%e s, peak %M KB" "$bin" check --config "$2" 2>&1 >/dev/null | sed "s/^/$1: check /"
}

# starts a server and times it to its first answer (steerdns's and NSD's runs share it)
cat > "$work/first.py" <<'PY'
import socket, subprocess, sys, time

def first_answer(command, name, label):
    """Starts `command`; (the process, seconds until it answers `name` A with records)."""
    start = time.time()
    p = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    query = b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(
        bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.05)
    while True:
        try:
            s.sendto(query, ("127.0.0.1", 5395))
            r = s.recv(4096)
            if r[3] & 0xF == 0 and int.from_bytes(r[6:8], "big") > 0:
                return p, time.time() - start
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f"{label}: the server stopped")
PY

# the serving half, in Python: start to the first answer, reloads, /healthz, RSS
cat > "$work/serve.py" <<'PY'
import http.client, os, sys, threading, time
from first import first_answer
label, binary, config, name, reloads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
p, first = first_answer([binary, "serve", "--config", config], name, label)
def mem(field):
    return int([l for l in open(f"/proc/{p.pid}/status") if l.startswith(field)][0].split()[1]) // 1024
def get(path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", 8095, timeout=600)
    c.request(method, path)
    r = c.getresponse()
    r.read()
    return r.status
time.sleep(2)
steady = mem("VmRSS")
print(f"{label}: serve: first answer after {first:.2f} s, RSS {steady} MB")
if reloads:
    bad, polls, done = [0], [0], threading.Event()
    def poll():
        while not done.is_set():
            polls[0] += 1
            try:
                bad[0] += get("/healthz") != 200
            except OSError:
                bad[0] += 1
            time.sleep(0.1)
    t = threading.Thread(target=poll)
    t.start()
    took = []
    for i in range(reloads):
        begun = time.time()
        status = get("/v1/reload", "POST")
        took.append(f"{time.time() - begun:.2f} s ({status})")
        if i == 0:
            peak_one = mem("VmHWM")
    done.set()
    t.join()
    time.sleep(3)
    print(f"{label}: reloads {', '.join(took)}; /healthz failed {bad[0]} of {polls[0]} polls; "
          f"RSS steady {steady} MB, peak after the first {peak_one} MB ({peak_one / steady:.2f}x), "
          f"after all {mem('VmHWM')} MB ({mem('VmHWM') / steady:.2f}x), 3 s later {mem('VmRSS')} MB")
p.terminate()
p.wait()
PY

zone() {
  python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
head = "$ORIGIN m.example.\n$TTL 300\n@ IN SOA ns.m.example. h.m.example. 1 7200 3600 1209600 300\n@ IN NS ns\nns IN A 127.0.0.53\n"
with open(f"{work}/m.zone", "w") as f:
    f.write(head)
    for i in range(1_000_000):
        f.write(f"h{i} IN A 127.6.{i // 65536 % 256}.{i % 65536 // 256}\n")
with open(f"{work}/c.zone", "w") as f:
    f.write(head)
    for i in range(20_000):
        f.write(f"h{i} IN A 127.6.{i // 256 % 256}.{i % 256}\nc{i} IN CNAME h{i}\n")
for zone in ["m", "c"]:
    with open(f"{work}/{zone}.toml", "w") as f:
        f.write(f'[server]\nlisten = ["127.0.0.1:5395"]\nadmin_listen = "127.0.0.1:8095"\n[store]\nbackend = "memory"\n'
                f'[[zones]]\norigin = "m.example."\nfile = "{zone}.zone"\n')
PY
  if [ "${PEER:-}" = nsd ]; then nsd_zone; fi
  check "1,000,000 A records" "$work/m.toml"
  PYTHONPATH="$work" python3 "$work/serve.py" "1,000,000 A records" "$bin" "$work/m.toml" h5.m.example 1
  check "40,000 records, half CNAMEs" "$work/c.toml"
}

# NSD on the same zone: time to its first answer, its RSS
nsd_zone() {
  command -v nsd >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nsd >/dev/null
  }
  mkdir -p "$work/nsd"
  printf '%s\n' "server:" "  ip-address: 127.0.0.1@5395" "  zonesdir: $work" "  database: \"\"" \
    "  pidfile: $work/nsd/pid" "  xfrdfile: $work/nsd/xfrd.state" "  zonelistfile: $work/nsd/zone.list" \
    "  username: \"\"" "  server-count: 1" "remote-control:" "  control-enable: no" \
    "zone:" "  name: m.example." "  zonefile: m.zone" > "$work/nsd/nsd.conf"
  PYTHONPATH="$work" python3 - "$work" <<'PY'
import subprocess, sys, time
from first import first_answer
work = sys.argv[1]
p, first = first_answer(["nsd", "-d", "-c", f"{work}/nsd/nsd.conf"], "h5.m.example", "NSD")
time.sleep(2)
# NSD forks its server from the process that loaded the zone: their proportional
# set sizes add up to the memory they take, where their RSS would count shared pages twice
pss = sum(int([l for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:")][0].split()[1])
          for pid in subprocess.run(["pgrep", "-f", f"{work}/nsd/nsd.conf"], capture_output=True, text=True).stdout.split())
print(f"NSD, 1,000,000 A records: first answer after {first:.2f} s, {pss // 1024} MB (PSS of all its processes)")
p.terminate()
p.wait()
PY
}

services() {
  python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
with open(f"{work}/lb.zone", "w") as f:
    f.write("$ORIGIN lb.example.\n$TTL 300\n@ IN SOA ns1 h 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 127.0.0.53\n")
with open(f"{work}/s.toml", "w") as f:
    f.write('[server]\nlisten = ["127.0.0.1:5395"]\nadmin_listen = "127.0.0.1:8095"\n\n[store]\nbackend = "memory"\n\n'
            '[[zones]]\norigin = "lb.example."\nfile = "lb.zone"\n\n')
    for i in range(100_000):
        last = f"{i // 250 % 256}.{i % 250 + 1}"
        f.write(f'[[services]]\nname = "s{i}.lb.example."\n'
                f'targets = ["127.1.{last}", "127.2.{last}", "127.3.{last}", "127.4.{last}"]\n\n')
PY
  check "100,000 services" "$work/s.toml"
  PYTHONPATH="$work" python3 "$work/serve.py" "100,000 services" "$bin" "$work/s.toml" s5.lb.example 5
  # queries lost across three reloads at 20,000 queries/s
  "$bin" serve --config "$work/s.toml" 2>/dev/null &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8095/healthz >/dev/null && break; sleep 0.2; done
  echo "s5.lb.example A" > "$work/q"
  dnsperf -s 127.0.0.1 -p 5395 -d "$work/q" -l 20 -Q 20000 > "$work/dnsperf.out" 2>&1 &
  local perf=$!
  sleep 3
  for _ in 1 2 3; do curl -sf -X POST -o /dev/null http://127.0.0.1:8095/v1/reload; sleep 2; done
  wait $perf
  echo "100,000 services: three reloads under dnsperf at 20,000/s: $(awk '/Queries (sent|lost)/ {printf "%s %s ", $2, $3}' "$work/dnsperf.out")"
  kill -TERM $pid; wait $pid || true
}

case $mode in
  zone) zone ;;
  services) services ;;
  all) zone; services ;;
  *) echo "usage: bench/scale.sh [zone|services|all]" >&2; exit 2 ;;
esac
