# shellcheck shell=bash
# tests/k8s/lib.sh - a real kubeadm control-plane node in a booted systemd container.
#
# Source it after tests/e2e/lib.sh from a bash test script running as root:
#
#   . tests/e2e/lib.sh; . tests/k8s/lib.sh
#   e2e_trap_exit
#   k8s_boot          # build (or reuse) the components, boot, install the deb, kubeadm init
#   k8s_exec kubectl get nodes
#
# What runs in the container (systemd-nspawn --boot --private-network: loopback only):
#   - the real kube-apiserver, kube-controller-manager, kube-scheduler and etcd built by
#     tests/k8s/build.sh, started from the manifests kubeadm wrote, with kubeadm's flags,
#     by static-pods.service (tests/k8s/node/static-pods), which restarts a pod when its
#     manifest's content changes, as the kubelet does;
#   - the real kubelet (kubelet.service, kubeadm's unit and drop-in) against upstream's fake
#     CRI runtime (fake-cri.service): it registers the Node, heartbeats, creates the mirror
#     pods, serves :10250 and rotates its client certificate through the CSR API;
#   - the real kubeadm made the node: `kubeadm init` from tests/k8s/node/kubeadm.yaml;
#   - cert-rotator from the .deb, under its packaged units.
# The one stand-in: the static pods' containers are processes of a runner, because no
# container runtime runs here (docs/testing.md says why).
#
# The kubelet sets six kernel tunables at start (vm.overcommit_memory, vm.panic_on_oom,
# kernel.panic, kernel.panic_on_oops, kernel.keys.root_max{keys,bytes}); /proc/sys is
# read-only in the container, so k8s_boot sets them on the host to the kubelet's values
# beforehand and k8s_restore_sysctls (called by e2e_teardown's trap) puts them back.

K8S_HERE=${K8S_HERE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
K8S_REPO=$(cd "$K8S_HERE/../.." && pwd)
K8S_NODE=${K8S_NODE:-cert-rotator-e2e}
# The node's address (RFC 5737 TEST-NET-1), on lo inside the container's private network.
K8S_ADDRESS=${K8S_ADDRESS:-192.0.2.10}
K8S_SYSCTLS=(vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1
	kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000)
K8S_SAVED_SYSCTLS=()

# Where the test scripts write what they measure (docs/performance.md).
K8S_RESULTS=${K8S_RESULTS:-$K8S_REPO/target/k8s-results.txt}

k8s_exec() { e2e_exec "$@"; }

# k8s_kubectl ARGS...: the built kubectl in the container, as kubeadm's admin.
k8s_kubectl() { e2e_exec kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"; }

# Two runs on one host would fight over those tunables (one restoring them under the other's
# kubelet), so a script holds K8S_HOST_LOCK from k8s_boot to its exit; a caller already holding
# it (`flock FILE script`) says so with K8S_HOST_LOCKED=1. Bounded: 30 minutes, then it fails.
K8S_HOST_LOCK=${K8S_HOST_LOCK:-/run/lock/cert-rotator-k8s.lock}
k8s_lock_host() {
	[[ -n ${K8S_HOST_LOCKED:-} ]] && return 0
	exec {K8S_HOST_LOCK_FD}>>"$K8S_HOST_LOCK" || return 1
	if ! flock -n "$K8S_HOST_LOCK_FD"; then
		e2e_log "waiting for another Kubernetes test on this host ($K8S_HOST_LOCK)"
		flock -w 1800 "$K8S_HOST_LOCK_FD" || { e2e_log "$K8S_HOST_LOCK still held after 30 minutes"; return 1; }
	fi
	K8S_HOST_LOCKED=1
}

k8s_set_sysctls() {
	local kv k
	k8s_lock_host || return 1
	K8S_SAVED_SYSCTLS=()
	for kv in "${K8S_SYSCTLS[@]}"; do
		k=${kv%%=*}
		K8S_SAVED_SYSCTLS+=("$k=$(sysctl -n "$k")")
		sysctl -q -w "$kv" || return 1
	done
}

k8s_restore_sysctls() {
	local kv
	for kv in "${K8S_SAVED_SYSCTLS[@]}"; do sysctl -q -w "$kv" || :; done
	K8S_SAVED_SYSCTLS=()
}

# k8s_binaries: the directory of the built components (builds them on a cold cache).
k8s_binaries() { "$K8S_HERE/build.sh"; }

# k8s_boot: boot the container with the built components bound read-only under
# /usr/local/bin, install the packaged agent (target/packages/*.deb) and make the node with
# kubeadm init. Sets K8S_BIN. Fails (non-zero) with a message on the first step that fails.
k8s_boot() {
	local deb f
	K8S_BIN=$(k8s_binaries | tail -n1) || { e2e_log "building the Kubernetes components failed"; return 1; }
	deb=$(ls -t "$K8S_REPO"/target/packages/cert-rotator_*_amd64.deb 2>/dev/null | head -n1)
	[[ -n $deb ]] || { e2e_log "no .deb: run packaging/build.sh first"; return 1; }
	for f in kube-apiserver kube-controller-manager kube-scheduler kubeadm kubelet kubectl etcd etcdctl fake-cri apiserver-poll; do
		[[ -x $K8S_BIN/$f ]] || { e2e_log "$K8S_BIN/$f is missing"; return 1; }
		E2E_NSPAWN_ARGS="${E2E_NSPAWN_ARGS:-} --bind-ro=$K8S_BIN/$f:/usr/local/bin/$f"
	done
	# The kubelet reads the kernel log (/dev/kmsg, its OOM watcher), which needs CAP_SYSLOG,
	# and sets its own OOM score (CAP_SYS_RESOURCE): nspawn drops both by default.
	E2E_NSPAWN_ARGS="${E2E_NSPAWN_ARGS:-} --capability=CAP_SYSLOG,CAP_SYS_RESOURCE"
	k8s_set_sysctls || { e2e_log "cannot set the kubelet's kernel tunables on the host"; return 1; }
	e2e_rootfs >/dev/null && e2e_boot || return 1
	e2e_copy_in "$deb" /opt/cert-rotator.deb &&
		e2e_exec dpkg -i /opt/cert-rotator.deb >/dev/null || { e2e_log "dpkg -i failed"; return 1; }
	e2e_copy_in "$K8S_HERE/node" /opt/k8s-node || return 1
	e2e_exec sh -euc '
		install -m 0755 /opt/k8s-node/static-pods /usr/local/sbin/static-pods
		install -m 0644 /opt/k8s-node/fake-cri.service /opt/k8s-node/static-pods.service \
			/opt/k8s-node/kubelet.service /etc/systemd/system/
		mkdir -p /etc/kubernetes/manifests /var/lib/kubelet
		# nspawn gives the container no /dev/kmsg; the kubelet will not start without it.
		[ -e /dev/kmsg ] || mknod -m 0600 /dev/kmsg c 1 11
		systemctl daemon-reload
		systemctl enable --now fake-cri.service static-pods.service >/dev/null 2>&1
		systemctl enable kubelet.service >/dev/null 2>&1
		ip addr add "$3/32" dev lo
		sed -e "s/@NODE@/$1/" -e "s/@VERSION@/$2/" -e "s/@ADDRESS@/$3/" /opt/k8s-node/kubeadm.yaml >/root/kubeadm.yaml
	' sh "$K8S_NODE" "$(e2e_exec kubeadm version -o short)" "$K8S_ADDRESS" || { e2e_log "installing the node units failed"; return 1; }
	e2e_exec hostname "$K8S_NODE"
	if ! e2e_exec kubeadm init --config /root/kubeadm.yaml >"$E2E_DIR/kubeadm-init.log" 2>&1; then
		tail -n 40 "$E2E_DIR/kubeadm-init.log" >&2
		e2e_exec sh -c 'tail -n 20 /var/log/static-pods/*.log' >&2 || :
		e2e_exec journalctl -u kubelet --no-pager -n 40 >&2 || :
		e2e_log "kubeadm init failed"
		return 1
	fi
	e2e_exec sh -euc 'mkdir -p /root/.kube && install -m 0600 /etc/kubernetes/admin.conf /root/.kube/config'
	e2e_wait_node_ready 120
}

# k8s_boot_checked: k8s_boot as a test script's first check; a node that does not come up
# ends the script (summary, exit 1).
k8s_boot_checked() {
	mkdir -p "$(dirname "$K8S_RESULTS")"
	if ! k8s_boot; then
		e2e_check "kubeadm init makes a control-plane node on the real components" false
		e2e_summary
		exit 1
	fi
	e2e_check "kubeadm init makes a control-plane node on the real components; the Node is Ready" true
}

# e2e_wait_node_ready SECS: the Node is Ready (kubelet registered and heartbeating).
e2e_wait_node_ready() {
	local deadline=$((SECONDS + $1))
	while ((SECONDS < deadline)); do
		[[ $(k8s_kubectl get node "$K8S_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] &&
			return 0
		sleep 1
	done
	e2e_log "node $K8S_NODE not Ready after $1 s"
	k8s_kubectl get node -o wide >&2 || :
	e2e_exec journalctl -u kubelet --no-pager -n 40 >&2 || :
	return 1
}

# k8s_trap_exit: e2e_trap_exit, and the host's kernel tunables put back first.
k8s_trap_exit() {
	trap _k8s_on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
_k8s_on_exit() {
	local rc=$?
	k8s_restore_sysctls
	(exit "$rc")
	_e2e_on_exit
}

# --- apiserver-poll, the old-credentials client -----------------------------------------

# apiserver_poll_start SECONDS: apiserver-poll in the container on admin.conf as it is now.
apiserver_poll_start() {
	e2e_exec sh -c 'apiserver-poll --duration "$1s" >/run/poll.json 2>/run/poll.err & echo $! >/run/poll.pid' _ "$1"
}
# apiserver_poll_stop: SIGTERM, then wait (up to 15 s) for it to print its JSON and exit, and
# print that JSON. A round can be inside two 2-second requests when the signal comes (the
# apiserver restarting answers slowly), so a fixed short sleep can read an empty file.
# One still running after that is killed (said on stderr) and prints nothing here: its JSON
# would be partial, or land later in the next result, so the check fails visibly instead.
# Its stderr follows on our stderr when the JSON is missing.
apiserver_poll_stop() {
	e2e_exec sh -c '
		pid=$(cat /run/poll.pid); kill -TERM "$pid" 2>/dev/null
		i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 75 ]; do sleep 0.2; i=$((i + 1)); done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null
			echo "apiserver-poll (pid $pid) still running 15 s after SIGTERM: killed, its JSON dropped; its stderr:" >&2
			cat /run/poll.err >&2
			exit 1
		fi
		cat /run/poll.json
		[ -s /run/poll.json ] || { echo "apiserver-poll printed nothing; its stderr:"; cat /run/poll.err; } >&2'
}

# --- checks shared by the test scripts -------------------------------------------------

# whoami_is KUBECONFIG USER GROUP: kubectl auth whoami with KUBECONFIG is USER in GROUP.
whoami_is() {
	local out
	out=$(e2e_exec kubectl --kubeconfig "$1" --request-timeout=5s auth whoami -o json 2>/dev/null) || return 1
	[[ $(jq -r .status.userInfo.username <<<"$out") == "$2" ]] &&
		jq -e --arg g "$3" '.status.userInfo.groups | index($g)' <<<"$out" >/dev/null
}

# serves_disk PORT FILE: the serial served on 127.0.0.1:PORT is FILE's first certificate's.
serves_disk() {
	local a b
	a=$(e2e_exec sh -c "openssl s_client -connect 127.0.0.1:$1 </dev/null 2>/dev/null | openssl x509 -noout -serial")
	b=$(e2e_exec openssl x509 -in "$2" -noout -serial)
	[[ -n $a && $a == "$b" ]]
}

# csr_signed NAME: a client CSR for the kube-apiserver-client signer, approved with kubectl;
# the controller-manager's certificate verifies against ca.crt.
csr_signed() {
	e2e_exec sh -euc '
		cd /tmp && rm -f csr.key csr.pem signed.pem
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout csr.key 			-subj "/CN=$1/O=cert-rotator-test" -out csr.pem 2>/dev/null
		k="kubectl --kubeconfig /etc/kubernetes/admin.conf"
		cat <<EOC | $k apply -f - >/dev/null
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: $1
spec:
  request: $(base64 -w0 csr.pem)
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 3600
  usages: [client auth]
EOC
		$k certificate approve "$1" >/dev/null
		for i in $(seq 1 60); do
			c=$($k get csr "$1" -o jsonpath="{.status.certificate}")
			[ -n "$c" ] && break
			sleep 0.5
		done
		[ -n "$c" ] && echo "$c" | base64 -d >signed.pem
		openssl verify -CAfile /etc/kubernetes/pki/ca.crt signed.pem >/dev/null
	' sh "$1"
}

# only_kubeconfig CA-FILE OUT: admin.conf as it is now, trusting CA-FILE's first certificate alone.
only_kubeconfig() {
	e2e_exec bash -euo pipefail -c '
		ca=$(openssl x509 -in "$1" | base64 -w0)
		sed "s|^\( *certificate-authority-data:\).*|\1 $ca|" /etc/kubernetes/admin.conf >"$2"' _ "$1" "$2"
}

# kubectl_with KUBECONFIG: kubectl authenticates with KUBECONFIG.
kubectl_with() { e2e_exec kubectl --kubeconfig "$1" --request-timeout=5s auth whoami >/dev/null 2>&1; }

# signed_verifies_with CA-FILE: the certificate of the last csr_signed verifies against CA-FILE alone.
signed_verifies_with() {
	e2e_exec openssl verify -no-CApath -no-CAstore -CAfile "$1" /tmp/signed.pem >/dev/null 2>&1
}

# root_ca_configmap_certs: how many certificates default/kube-root-ca.crt holds.
root_ca_configmap_certs() {
	k8s_kubectl -n default get configmap kube-root-ca.crt -o jsonpath='{.data.ca\.crt}' 2>/dev/null |
		grep -c -- '-----BEGIN CERTIFICATE-----'
}

# save_new_ca CA-FILE OLD-CA OUT: the certificate of the bundle CA-FILE that is not OLD-CA -> OUT.
save_new_ca() {
	e2e_exec bash -euo pipefail -c '
		old=$(openssl x509 -in "$2" -noout -fingerprint)
		d=$(mktemp -d)
		awk -v d="$d" "/-----BEGIN CERTIFICATE-----/ { n++ } { print > (d \"/part\" n) }" "$1"
		for p in "$d"/part*; do
			[[ $(openssl x509 -in "$p" -noout -fingerprint) == "$old" ]] || cp "$p" "$3"
		done
		rm -rf "$d"
		test -s "$3"' _ "$1" "$2" "$3"
}

# clients DIR OLD NEW: kubectl trusting DIR/old-ca.crt alone does OLD, trusting DIR/new-ca.crt
# alone does NEW: ok, refused, or - (not tried); each with admin.conf's client certificate.
clients() {
	local dir=$1 rc=0 want f got pair
	shift
	for pair in "old:$1" "new:$2"; do
		f=${pair%%:*} want=${pair#*:}
		[[ $want == - ]] && continue
		only_kubeconfig "$dir/$f-ca.crt" "$dir/$f-only.conf" || return 1
		if kubectl_with "$dir/$f-only.conf"; then got=ok; else got=refused; fi
		[[ $got == "$want" ]] || { rc=1; e2e_log "$f-CA-only kubectl: expected $want, got $got"; }
	done
	return "$rc"
}
