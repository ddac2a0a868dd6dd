# The README's test command is `make test`: it installs what it needs (deps), builds the
# pinned Kubernetes components (k8s, cached outside the repository), then runs every test.
# `make check` is the fast tier for the edit-compile loop: nothing installed, no root.

.PHONY: test check deps k8s lint unit rules e2e k8s-e2e demo

# The pinned upstream components (tests/k8s/build.sh): their kubectl, etcd and etcdctl come
# first on PATH for every test, so the tests run the versions the project pins, not whatever
# the machine has.
K8S_BIN := $(shell tests/k8s/build.sh --dir)
export PATH := $(K8S_BIN):$(PATH)

test: deps lint unit rules e2e k8s-e2e

# Installs what is missing (as root), or says what (tests/deps.sh); builds the components.
deps:
	tests/deps.sh

# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubeadm, kubelet, kubectl,
# etcd and etcdctl at the pinned versions into $(K8S_BIN); a no-op when already built.
k8s:
	tests/k8s/build.sh

# fmt, clippy and the tests that need nothing but openssl: the pure core, the fixture node,
# the sequencer on fakes, the gate, the CLI. A few minutes warm.
check:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test --lib
	cargo test --test cli --test docs --test gate --test kubelet_owned --test read_only \
		--test live --test renew --test renew_refused --test restarts --test run --test sequencer

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

# The packaged agent on a real booted systemd (systemd-nspawn) against stand-ins for the
# control plane: needs root, debootstrap, systemd-container, promtool, jq, and etcd, etcdctl,
# kubectl (the pinned builds) and prometheus-node-exporter, bound into the container.
e2e:
	packaging/build.sh --check
	tests/e2e/restart_selftest.sh
	tests/e2e/run.sh
	tests/e2e/ca.sh
	tests/e2e/ca_rotate.sh

# The packaged agent on a real kubeadm control plane (tests/k8s/README.md): kubeadm-made
# node, the real kube-apiserver, controller-manager, scheduler, etcd and kubelet.
k8s-e2e:
	packaging/build.sh
	tests/k8s/controlplane.sh
	tests/k8s/ca_rotate.sh
	tests/k8s/kubelet_rotation.sh
	tests/k8s/csr.sh

demo:
	cargo run --release -- demo
