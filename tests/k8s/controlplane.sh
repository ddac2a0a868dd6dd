#!/bin/bash
# tests/k8s/controlplane.sh - cert-rotator on a real kubeadm control plane (issue "Real
# Kubernetes as the judge"). tests/k8s/lib.sh boots a systemd container in which kubeadm
# made the node and the real kube-apiserver, kube-controller-manager, kube-scheduler, etcd
# and kubelet run; the agent is the packaged one. Checks:
#   1. kubeadm agrees: `kubeadm certs check-expiration -o json` and `cert-rotator status
#      --json` list the same certificates with the same expiry and CA; the agent's renewal
#      and `kubeadm certs renew` of the same node give the same subject, SANs, key usages,
#      extended key usages, issuer and lifetime.
#   3. availability: renew-all --restart on the running control plane while a client asks
#      every 100 ms: no request fails, kube-apiserver and etcd are not restarted.
#   4 (part). ca renew of the three CAs on the running control plane; a CSR signed by the
#      controller-manager verifies against the renewed ca.crt. A full `ca rotate ca`:
#      kubectl trusting only the old or only the new CA accepted or refused as docs/ca.md
#      promises at each phase, a CSR signed at each phase verifying against the CA the
#      phase promises, kube-root-ca.crt carrying both CAs once trusted.
#   2. revive: every leaf certificate and kubeconfig re-signed into the past (own keys and
#      extensions), the control plane down; one pass of the packaged unit; then the
#      apiserver is ready, every admin kubeconfig authenticates as kubeadm's user, the
#      controller-manager and scheduler hold their leases, the Node heartbeats with the
#      renewed client certificate, the apiserver reaches the kubelet and etcd. The seconds
#      from the pass's start to all of that go to $K8S_RESULTS (docs/performance.md).
# Prints "N passed, N failed". Needs root, debootstrap, systemd-container, jq, Go (for the
# first build of the components: tests/k8s/build.sh) and target/packages/*.deb.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../e2e/lib.sh
. "$repo/tests/e2e/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
k8s_trap_exit
results=$K8S_RESULTS
eq() { [[ -n $1 && $1 == "$2" ]]; }
gt() { [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] && (($1 > $2)); }
apiserver_ready() { k8s_kubectl --request-timeout=2s get --raw /readyz >/dev/null 2>&1; }
fails_kubectl_whoami() { ! e2e_exec kubectl --kubeconfig "$1" --request-timeout=3s auth whoami >/dev/null 2>&1; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

k8s_boot_checked
: >"$results"

# --- 1. kubeadm agrees -------------------------------------------------------------
# kubeadm's names and the agent's, where they differ.
agent_name() {
	case $1 in
	etcd-server) echo etcd/server ;;
	etcd-peer) echo etcd/peer ;;
	etcd-healthcheck-client) echo etcd/healthcheck-client ;;
	etcd-ca) echo etcd/ca ;;
	*) echo "$1" ;;
	esac
}
e2e_exec kubeadm certs check-expiration -o json >"$E2E_DIR/kubeadm-expiration.json" 2>/dev/null
e2e_exec cert-rotator status --json >"$E2E_DIR/status.json"

# same_inventory: every certificate kubeadm lists (present) is in status with the same
# notAfter and the same CA; and status lists no kubeadm-managed certificate kubeadm lacks.
same_inventory() {
	local k=$E2E_DIR/kubeadm-expiration.json s=$E2E_DIR/status.json n name exp ca a_exp a_ca bad=0
	n=$(jq '[.certificates[] | select(.missing | not)] | length' "$k")
	((n >= 10)) || { e2e_log "kubeadm lists only $n certificates"; return 1; }
	while IFS=$'\t' read -r name exp ca; do
		a_exp=$(jq -r --arg n "$(agent_name "$name")" '.certificates[] | select(.name == $n) | .not_after' "$s")
		a_ca=$(jq -r --arg n "$(agent_name "$name")" '.certificates[] | select(.name == $n) | .signer' "$s")
		if [[ $(date -u -d "$exp" +%s 2>/dev/null) != "$(date -u -d "$a_exp" +%s 2>/dev/null)" || $(agent_name "$ca") != "$a_ca" ]]; then
			e2e_log "$name: kubeadm $exp by $ca, cert-rotator ${a_exp:-absent} by ${a_ca:-?}"
			bad=1
		fi
	done < <(jq -r '.certificates[] | select(.missing | not) | [.name, .expirationDate, .caName] | @tsv' "$k")
	while IFS=$'\t' read -r name exp; do
		a_exp=$(jq -r --arg n "$(agent_name "$name")" '.authorities[] | select(.name == $n) | .not_after' "$s")
		if [[ $(date -u -d "$exp" +%s) != "$(date -u -d "$a_exp" +%s 2>/dev/null)" ]]; then
			e2e_log "CA $name: kubeadm $exp, cert-rotator ${a_exp:-absent}"
			bad=1
		fi
	done < <(jq -r '.certificateAuthorities[] | select(.missing | not) | [.name, .expirationDate] | @tsv' "$k")
	return $bad
}
e2e_check "kubeadm check-expiration and cert-rotator status list the same certificates, expiry and CA" same_inventory

# Renew a copy of the node both ways: kubeadm certs renew all, and the agent's renew-all.
e2e_exec sh -euc '
	rm -rf /tmp/by-kubeadm /tmp/by-agent
	mkdir -p /tmp/by-kubeadm /tmp/by-agent/etc
	cp -a /etc/kubernetes/. /tmp/by-kubeadm/
	cp -a /etc/kubernetes /tmp/by-agent/etc/
	kubeadm certs renew all --cert-dir /tmp/by-kubeadm/pki --kubeconfig-dir /tmp/by-kubeadm >/dev/null 2>&1
	cert-rotator --root /tmp/by-agent renew-all >/dev/null
'
# describe FILE: the fields kubeadm and the agent must agree on, one per line; a kubeconfig's
# client certificate for a .conf file.
describe() {
	e2e_exec sh -c '
		f=$1
		case $f in
		*.conf) grep "client-certificate-data:" "$f" | head -n1 | sed "s/.*: //" | base64 -d >/tmp/describe.pem ;;
		*) cp "$f" /tmp/describe.pem ;;
		esac
		openssl x509 -in /tmp/describe.pem -noout -subject -issuer -nameopt RFC2253 \
			-ext subjectAltName,keyUsage,extendedKeyUsage,basicConstraints
		nb=$(date -u -d "$(openssl x509 -in /tmp/describe.pem -noout -startdate | cut -d= -f2)" +%s)
		na=$(date -u -d "$(openssl x509 -in /tmp/describe.pem -noout -enddate | cut -d= -f2)" +%s)
		echo "lifetime $(( (na - nb) / 3600 ))h"
	' sh "$1"
}
same_renewal() {
	local rel=$1 a b
	a=$(describe "/tmp/by-kubeadm/$rel") || return 1
	b=$(describe "/tmp/by-agent/etc/kubernetes/$rel") || return 1
	[[ -n $a && $a == "$b" ]] && return 0
	e2e_log "$rel: kubeadm certs renew and cert-rotator differ:"
	diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") >&2
	return 1
}
for rel in pki/apiserver.crt pki/apiserver-kubelet-client.crt pki/apiserver-etcd-client.crt \
	pki/front-proxy-client.crt pki/etcd/server.crt pki/etcd/peer.crt pki/etcd/healthcheck-client.crt \
	admin.conf super-admin.conf controller-manager.conf scheduler.conf; do
	e2e_check "renewed $rel: same subject, SANs, usages, issuer and lifetime as kubeadm certs renew" same_renewal "$rel"
done

# --- 3. a healthy control plane stays available --------------------------------------
# A pass that renews everything on the running control plane (renew-all --restart, the
# same sequencer as the timer's run), while a client asks /readyz and gets a namespace
# every 100 ms. Which components restart is the agent's reload table (docs/reloads.md).
starts() { e2e_exec cat "/run/static-pods/$1.starts" 2>/dev/null || echo 0; }
declare -A before_starts=()
for c in kube-apiserver kube-controller-manager kube-scheduler etcd; do before_starts[$c]=$(starts "$c"); done
kubelet_run=$(e2e_exec systemctl show -P InvocationID kubelet.service)
apiserver_poll_start 600
sleep 2
e2e_check "renew-all --restart on the healthy control plane succeeds" \
	e2e_exec sh -c 'cert-rotator renew-all --restart >/run/renew-all.out 2>&1'
sleep 2
apiserver_poll_stop >"$E2E_DIR/poll.json"
restarted=()
for c in kube-apiserver kube-controller-manager kube-scheduler etcd; do
	[[ $(starts "$c") != "${before_starts[$c]}" ]] && restarted+=("$c")
done
[[ $(e2e_exec systemctl show -P InvocationID kubelet.service) != "$kubelet_run" ]] && restarted+=(kubelet)
failed=$(jq -r .failed "$E2E_DIR/poll.json" 2>/dev/null)
requests=$(jq -r .requests "$E2E_DIR/poll.json" 2>/dev/null)
printf 'available_requests %s\navailable_failed %s\navailable_restarted %s\n' \
	"${requests:-?}" "${failed:-?}" "${restarted[*]:-none}" | tee -a "$results" >&2
[[ ${failed:-0} == 0 ]] || jq -r '.errors[]' "$E2E_DIR/poll.json" >&2
e2e_check "the client kept asking during the pass (${requests:-0} requests)" gt "${requests:-0}" 50
e2e_check "no request refused or failed during the pass (${failed:-?} failed)" eq "${failed:-x}" 0
e2e_check "kube-apiserver was not restarted: it reloads all its certificates by itself" \
	eq "$(starts kube-apiserver)" "${before_starts[kube-apiserver]}"
e2e_check "etcd was not restarted: it reloads its certificates by itself" \
	eq "$(starts etcd)" "${before_starts[etcd]}"
e2e_check "kube-controller-manager and kube-scheduler were restarted: their kubeconfigs are read at start" \
	bash -c '[[ " $* " == *" kube-controller-manager "* && " $* " == *" kube-scheduler "* ]]' _ "${restarted[@]}"
e2e_check "kube-apiserver serves the renewed apiserver.crt" serves_disk 6443 /etc/kubernetes/pki/apiserver.crt
e2e_check "etcd serves the renewed etcd/server.crt" serves_disk 2379 /etc/kubernetes/pki/etcd/server.crt
e2e_check "every kubeconfig still authenticates after the pass" \
	whoami_is /etc/kubernetes/admin.conf kubernetes-admin kubeadm:cluster-admins
e2e_check "the Node stays Ready" e2e_wait_node_ready 60

# --- 4 (part). CA renewal with the same key on the real control plane ----------------
# `ca renew` of the three CAs: every copy rewritten, what holds a CA restarted one at a
# time and verified. Then every kubeconfig still authenticates, etcd serves on the renewed
# etcd/ca, and kube-controller-manager signs a CSR with the renewed ca that verifies against
# ca.crt alone.
# Restarts 5 s apart instead of the packaged 30 s: the gap protects availability, which
# check 3 measured with the defaults; here it would only make the test long.
e2e_exec sh -c 'printf "[run]\nmin_restart_gap_seconds = 5\n" >/etc/cert-rotator/config.d/50-test.toml'
ca_serial() { e2e_exec openssl x509 -in "/etc/kubernetes/pki/$1.crt" -noout -serial; }
declare -A ca_before=()
for ca in ca front-proxy-ca etcd/ca; do ca_before[$ca]=$(ca_serial "$ca"); done
e2e_check "ca renew ca front-proxy-ca etcd/ca succeeds on the running control plane" \
	e2e_exec sh -c 'cert-rotator ca renew ca front-proxy-ca etcd/ca >/run/ca-renew.out 2>&1'
ca_renewed() { local ca; for ca in ca front-proxy-ca etcd/ca; do
	[[ -n ${ca_before[$ca]} && $(ca_serial "$ca") != "${ca_before[$ca]}" ]] || return 1
done; }
e2e_check "every CA certificate was renewed (new serials)" ca_renewed
e2e_check "admin.conf authenticates after the CA renewal" \
	whoami_is /etc/kubernetes/admin.conf kubernetes-admin kubeadm:cluster-admins
e2e_check "super-admin.conf authenticates after the CA renewal" \
	whoami_is /etc/kubernetes/super-admin.conf kubernetes-super-admin system:masters
e2e_check "the apiserver's certificate verifies against the renewed ca.crt alone" \
	e2e_exec sh -c 'openssl s_client -connect 127.0.0.1:6443 -CAfile /etc/kubernetes/pki/ca.crt -verify_return_error </dev/null >/dev/null 2>&1'
e2e_check "etcd serves and answers a client on the renewed etcd/ca" \
	e2e_exec etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
	--cert=/etc/kubernetes/pki/apiserver-etcd-client.crt --key=/etc/kubernetes/pki/apiserver-etcd-client.key \
	--dial-timeout=5s endpoint health
e2e_check "kube-controller-manager signs a CSR with the renewed CA (verifies against ca.crt)" csr_signed after-ca-renew
e2e_check "the Node is Ready after the CA renewal" e2e_wait_node_ready 90

# --- 4 (part). CA rotation of ca to a new key on the real control plane --------------
# docs/ca.md's promise, phase by phase, with kubectl trusting the old CA alone and the new
# CA alone (each with admin.conf's client certificate of the moment):
#     started: ok/refused   trusting: ok/refused   issuing: ok/ok   finished: refused/ok
# and the controller-manager signing a CSR at each phase, verifying against the CA the
# phase promises (the old one until issue, the new one from issue on). Each client check is
# retried for up to 30 s: a phase restarts the apiserver, which may refuse for a moment after
# its restart was verified (serving comes before ready).
rot=/tmp/rot
e2e_exec sh -c "mkdir -p $rot && cp /etc/kubernetes/pki/ca.crt $rot/old-ca.crt"
rotate() { e2e_exec sh -c 'cert-rotator ca rotate ca "$1" >>/run/ca-rotate.out 2>&1' _ "$1"; }
e2e_check "ca rotate ca start" rotate start
e2e_check "... kubectl: old-CA-only accepted" e2e_wait_for 30 clients "$rot" ok -
e2e_check "ca rotate ca trust" rotate trust
save_new_ca /etc/kubernetes/pki/ca.crt "$rot/old-ca.crt" "$rot/new-ca.crt"
e2e_check "... kubectl: old-CA-only accepted, new-CA-only refused" e2e_wait_for 30 clients "$rot" ok refused
e2e_check "... the controller-manager signs a CSR; it verifies against the old CA" \
	eval 'csr_signed rot-trusting && signed_verifies_with $rot/old-ca.crt'
e2e_check "... kube-root-ca.crt carries both CAs" e2e_wait_for 60 eval '[[ $(root_ca_configmap_certs) == 2 ]]'
e2e_check "ca rotate ca issue" rotate issue
e2e_check "... kubectl: old-CA-only and new-CA-only accepted" e2e_wait_for 30 clients "$rot" ok ok
e2e_check "... the controller-manager signs a CSR; it verifies against the new CA alone" \
	eval 'csr_signed rot-issuing && signed_verifies_with $rot/new-ca.crt'
e2e_check "ca rotate ca finish" rotate finish
e2e_check "... kubectl: old-CA-only refused, new-CA-only accepted" e2e_wait_for 30 clients "$rot" refused ok
e2e_check "... the controller-manager signs a CSR; it verifies against the new CA alone" \
	eval 'csr_signed rot-finished && signed_verifies_with $rot/new-ca.crt'
e2e_check "... every kubeconfig authenticates" \
	eval 'whoami_is /etc/kubernetes/admin.conf kubernetes-admin kubeadm:cluster-admins && whoami_is /etc/kubernetes/super-admin.conf kubernetes-super-admin system:masters'
e2e_check "... the Node is Ready (the kubelet on its re-issued client certificate)" e2e_wait_node_ready 90
e2e_exec cat /run/ca-rotate.out >"$E2E_DIR/ca-rotate.out" 2>/dev/null

# --- 2. revive ---------------------------------------------------------------------
# The packaged defaults again.
e2e_exec rm -f /etc/cert-rotator/config.d/50-test.toml
e2e_copy_in "$here/node/age-leaves.sh" /usr/local/sbin/age-leaves
e2e_exec systemctl stop kubelet.service static-pods.service
e2e_check "every leaf, kubeconfig and kubelet certificate re-signed into the past" \
	e2e_exec age-leaves
e2e_exec systemctl start static-pods.service kubelet.service
sleep 10
e2e_check "with every certificate expired, the control plane is down" fails_kubectl_whoami /etc/kubernetes/admin.conf

start=$(date +%s.%N)
e2e_exec systemctl start cert-rotator.service
pass_done=$(date +%s.%N)
e2e_check "one pass of the packaged unit succeeds" \
	eq "$(e2e_exec systemctl show -P Result cert-rotator.service)" success

lease_fresh() { # lease_fresh NAMESPACE NAME: renewTime within the last 30 s, after the pass started
	local t
	t=$(k8s_kubectl -n "$1" get lease "$2" -o jsonpath='{.spec.renewTime}' 2>/dev/null) || return 1
	t=$(date -u -d "$t" +%s 2>/dev/null) || return 1
	((t >= ${start%.*}))
}
kubelet_client_renewed() {
	local nb
	nb=$(e2e_exec openssl x509 -in /var/lib/kubelet/pki/kubelet-client-current.pem -noout -enddate | cut -d= -f2)
	(($(date -u -d "$nb" +%s) > $(date +%s)))
}
revived() {
	apiserver_ready &&
		whoami_is /etc/kubernetes/admin.conf kubernetes-admin kubeadm:cluster-admins &&
		whoami_is /etc/kubernetes/super-admin.conf kubernetes-super-admin system:masters &&
		whoami_is /root/.kube/config kubernetes-admin kubeadm:cluster-admins &&
		lease_fresh kube-system kube-controller-manager &&
		lease_fresh kube-system kube-scheduler &&
		lease_fresh kube-node-lease "$K8S_NODE" &&
		kubelet_client_renewed &&
		k8s_kubectl get --raw "/api/v1/nodes/$K8S_NODE/proxy/healthz" >/dev/null 2>&1 &&
		k8s_kubectl create configmap "revived-$RANDOM" --from-literal=at="$start" >/dev/null 2>&1
}
deadline=$((SECONDS + 180))
until revived || ((SECONDS >= deadline)); do sleep 0.5; done
end=$(date +%s.%N)
e2e_check "after one pass: apiserver ready, admin.conf/super-admin.conf/.kube/config authenticate as kubeadm's users, controller-manager/scheduler/node leases renewed, kubelet client certificate renewed, apiserver reaches the kubelet and writes to etcd" revived
e2e_check "admin.conf is kubeadm's kubernetes-admin in kubeadm:cluster-admins" whoami_is /etc/kubernetes/admin.conf kubernetes-admin kubeadm:cluster-admins
e2e_check "super-admin.conf is kubernetes-super-admin in system:masters" whoami_is /etc/kubernetes/super-admin.conf kubernetes-super-admin system:masters
e2e_check "the Node is Ready" e2e_wait_node_ready 60
printf 'revive_pass_seconds %s\nrevive_total_seconds %s\n' \
	"$(seconds "$start" "$pass_done")" "$(seconds "$start" "$end")" | tee -a "$results" >&2

e2e_summary
