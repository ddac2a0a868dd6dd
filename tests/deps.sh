#!/usr/bin/env bash
# tests/deps.sh: installs what `make test` needs on a Debian 12 machine, or, when not root,
# says exactly what is missing and exits 1. `make test` runs it first (`make deps`), and so
# does CI (.ci/run runs `make test`). A second run installs nothing.
#
#   - Debian packages: openssl, util-linux, make, jq, cfssl (golang-cfssl), Prometheus's
#     promtool and node_exporter, debootstrap and systemd-nspawn (systemd-container) for the
#     booted-systemd tests, dpkg-dev, rpm and lintian for the packages;
#   - rustfmt and clippy (rustup), cargo-deb and cargo-generate-rpm (packaging/build.sh --tools);
#   - Go >= 1.26 (the machine's; Debian 12's golang is too old), to build the pinned
#     Kubernetes components and etcd (tests/k8s/build.sh, cached outside the repository;
#     `make k8s`), whose kubectl, etcd and etcdctl the tests then use.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openssl util-linux make jq golang-cfssl prometheus prometheus-node-exporter
	debootstrap systemd-container dpkg-dev rpm lintian ca-certificates)

missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "tests/deps.sh: missing Debian packages: ${missing[*]}" >&2
		echo "  run as root (make deps), or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "==> apt-get install ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Installing them starts their services (Debian's policy): the tests need only the
	# binaries, and a node_exporter on the host's :9100 is noise.
	if [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus-node-exporter.service prometheus.service >/dev/null 2>&1 || :
	else
		pkill -x prometheus-node-exporter 2>/dev/null || :
		pkill -x prometheus 2>/dev/null || :
	fi
fi

command -v cargo >/dev/null || {
	echo "tests/deps.sh: cargo is not installed (a Rust toolchain >= 1.85, e.g. from rustup)" >&2
	exit 1
}
if command -v rustup >/dev/null; then
	rustup component add rustfmt clippy >/dev/null 2>&1 || :
fi
packaging/build.sh --tools

go_ok() {
	local v
	v=$(go env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	[ "$(printf '%s\n1.26\n' "$v" | sort -V | head -n1)" = 1.26 ]
}
go_ok || {
	echo "tests/deps.sh: Go >= 1.26 is needed to build the Kubernetes components the tests run" >&2
	echo "  (found: $(go version 2>/dev/null || echo none)); Debian 12's golang package is too old" >&2
	exit 1
}
tests/k8s/build.sh >/dev/null
