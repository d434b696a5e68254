#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine (as root), checks what it
# installed and that it serves, then purges it (CI runs this; it needs dpkg,
# systemd-analyze and curl).
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(packaging/build-deb.sh)
dpkg -i "$deb" >/dev/null
trap 'kill $(jobs -p) 2>/dev/null || true; dpkg --purge steerdns >/dev/null' EXIT
steerdns --version
# the installed config, named and by the default path
steerdns check --config /etc/steerdns/steerdns.toml
steerdns check
id steerdns
man -l /usr/share/man/man1/steerdns.1.gz | grep -q "Authoritative DNS load balancer"
test -s /usr/share/bash-completion/completions/steerdns
systemd-analyze verify /lib/systemd/system/steerdns.service
# it serves as its own user, its state in a directory of its own, as under the unit
state=$(mktemp -d)
chown steerdns:steerdns "$state"
STATE_DIRECTORY="$state" setpriv --reuid=steerdns --regid=steerdns --init-groups steerdns serve 2>"$state/log" &
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:8053/healthz >/dev/null && break
  sleep 0.2
done
curl -sf http://127.0.0.1:8053/healthz
steerdns status | grep -q "www.lb.example."
kill -TERM %1
wait %1
echo "package: installed, checked, served as user steerdns, purged next"
