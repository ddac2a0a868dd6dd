# The README's two commands: `cargo run --release -- demo` and `make test`.
# The tests run in the release profile; the packages (and so the booted-systemd
# test) are built in the size-tuned dist profile by packaging/build.sh.

.PHONY: test lint unit rules e2e demo

test: lint unit rules e2e

lint:
	cargo fmt --check
	cargo clippy --release --all-targets --features failpoints -- -D warnings

unit:
	cargo test --release --features failpoints

# The shipped Prometheus alert rules: valid, and their unit tests (promtool,
# Debian's prometheus package; docs/metrics.md).
rules:
	promtool check rules packaging/prometheus/cert-rotator-alerts.yml
	promtool test rules tests/prometheus/*.test.yml

# The packaged agent on a real booted systemd (systemd-nspawn): needs root,
# debootstrap, systemd-container, promtool, jq, and the host's etcd, etcdctl,
# kubectl and prometheus-node-exporter (see .ci/run).
e2e:
	packaging/build.sh --check
	tests/e2e/restart_selftest.sh
	tests/e2e/run.sh
	tests/e2e/ca.sh
	tests/e2e/ca_rotate.sh

demo:
	cargo run --release -- demo
