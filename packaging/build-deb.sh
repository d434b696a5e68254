#!/usr/bin/env bash
# Builds the Debian package from the release build, with dpkg-deb:
#
#   packaging/build-deb.sh        # -> target/steerdns_VERSION_ARCH.deb
#
# It installs the binary, the systemd unit, the example config and zone under
# /etc/steerdns (conffiles), the man page, bash/zsh/fish completions and the docs; its
# postinst creates the system user `steerdns`. As gdnsd's package does not, it starts
# nothing: `systemctl enable --now steerdns` once the config is yours.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
bin=target/release/steerdns
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -Dm755 "$bin" "$root/usr/bin/steerdns"
install -Dm644 packaging/steerdns.service "$root/lib/systemd/system/steerdns.service"
install -Dm644 packaging/steerdns.toml "$root/etc/steerdns/steerdns.toml"
install -Dm644 packaging/zones/lb.example.zone "$root/etc/steerdns/zones/lb.example.zone"
"$bin" generate-docs "$root/docs"
install -Dm644 "$root/docs/steerdns.1" "$root/usr/share/man/man1/steerdns.1"
gzip -9n "$root/usr/share/man/man1/steerdns.1"
install -Dm644 "$root/docs/steerdns.bash" "$root/usr/share/bash-completion/completions/steerdns"
install -Dm644 "$root/docs/_steerdns" "$root/usr/share/zsh/vendor-completions/_steerdns"
install -Dm644 "$root/docs/steerdns.fish" "$root/usr/share/fish/vendor_completions.d/steerdns.fish"
rm -rf "$root/docs"
for doc in README.md UPGRADING.md examples/reference.toml; do
  install -Dm644 "$doc" "$root/usr/share/doc/steerdns/$(basename "$doc")"
done
install -Dm644 LICENSE "$root/usr/share/doc/steerdns/copyright"

mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<EOF
Package: steerdns
Version: $version
Architecture: $arch
Maintainer: steerdns developers <steerdns@localhost>
Depends: adduser, libc6 (>= 2.34)
Section: net
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: authoritative DNS load balancer
 steerdns answers A/AAAA for the services of a delegated zone from a live picture
 of their targets: all of them, the healthy ones, a failover group, or those of the
 client's region, with health checks, leases, drains and a dashboard.
EOF
printf '%s\n' /etc/steerdns/steerdns.toml /etc/steerdns/zones/lb.example.zone > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  # the unit's User= and Group=; its StateDirectory= makes /var/lib/steerdns
  adduser --system --group --quiet --home /var/lib/steerdns --no-create-home steerdns
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
fi
EOF
cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop steerdns.service >/dev/null 2>&1 || true
fi
EOF
cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  # run-time state (registrations, admin states): the package's to remove on purge
  rm -rf /var/lib/steerdns
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
out="target/steerdns_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out"
