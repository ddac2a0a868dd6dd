#!/bin/bash
# tests/k8s/ca_rotate.sh - CA rotation to a new key on a real kubeadm control plane (issue
# "Real Kubernetes as the judge", check 4; controlplane.sh has `ca renew` and the full
# `ca rotate ca`). The node of tests/k8s/lib.sh: kubeadm made it, the real kube-apiserver,
# kube-controller-manager, kube-scheduler, etcd and kubelet run; the agent is the packaged one.
# Checks:
#   abort part way: `ca rotate ca start`, `trust`, `issue` on the running control plane,
#     then `abort`: phase none, every node file as before start (contents, modes, symlink
#     targets), kube-apiserver serving its certificate of before start, kubectl trusting
#     the old CA alone accepted and the new CA alone refused, the controller-manager
#     signing with the old CA again, kube-root-ca.crt back to the old CA alone, the Node
#     Ready on its old client certificate. An old-CA-only client (apiserver-poll) asks
#     /readyz and gets a namespace every 100 ms throughout: its counts go to $K8S_RESULTS.
#   a full `ca rotate etcd/ca` with the real etcd: after each phase, etcdctl trusting the
#     old etcd CA alone and the new one alone (each with healthcheck-client's certificate
#     of the moment) accepted or refused as docs/ca.md promises,
#         started ok/-   trusting ok/refused   issuing ok/ok (cross-signed chain)   finished refused/ok
#     a client certificate of the old etcd CA accepted until finish and refused after; the
#     apiserver reads and writes etcd after each phase (a ConfigMap created and read back,
#     /readyz's etcd check); at the end every etcd leaf verifies against the new CA alone
#     and etcd was restarted on it. apiserver-poll's counts go to $K8S_RESULTS.
#   While the apiserver restarts, a watcher records what an anonymous GET /readyz answers
#     every 200 ms (serving TLS comes before ready): the counts go to $K8S_RESULTS.
# Prints "N passed, N failed". Needs what controlplane.sh needs.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../e2e/lib.sh
. "$repo/tests/e2e/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
k8s_trap_exit
results=$K8S_RESULTS
# Each phase command's output, kept after the test.
outputs=${K8S_OUTPUTS:-$repo/target/k8s-ca-rotate}
mkdir -p "$outputs"
pki=/etc/kubernetes/pki
eq() { [[ -n $1 && $1 == "$2" ]]; }
fails() { ! "$@"; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
phase_of() {
	e2e_exec cert-rotator ca status --json |
		jq -er --arg n "$1" '.authorities[] | select(.name == $n) | .phase'
}
certs_in() { e2e_exec grep -c -- '-----BEGIN CERTIFICATE-----' "$1"; }
serial_of() { e2e_exec openssl x509 -in "$1" -noout -serial; }
starts() { e2e_exec cat "/run/static-pods/$1.starts" 2>/dev/null || echo 0; }
# rotate NAME PHASE: one phase command, its output kept; the seconds it took to $results.
# It runs with the packaged unit's view of /proc and capabilities (ProcSubset=pid: no
# /proc/net; ProtectProc=invisible; no CAP_SYS_PTRACE), where the agent must still tell
# which process answers (ready_after).
rotate() {
	local t0 rc
	t0=$(date +%s.%N)
	PHASE_T0=$t0
	e2e_exec sh -c 'systemd-run --quiet --wait --pipe --collect -p ProtectProc=invisible -p ProcSubset=pid \
		-p "CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE" \
		cert-rotator ca rotate "$1" "$2" >"/run/rotate-$3.out" 2>&1' _ "$1" "$2" "${1//\//-}-$2"
	rc=$?
	e2e_exec cat "/run/rotate-${1//\//-}-$2.out" >"$outputs/rotate-${1//\//-}-$2.out" 2>/dev/null
	printf 'rotate_%s_%s_seconds %s\n' "${1//\//_}" "$2" "$(seconds "$t0" "$(date +%s.%N)")" >>"$results"
	return "$rc"
}
# poll_start / poll_stop NAME: apiserver-poll with admin.conf as it is now (the client keeps
# the CA and client certificate it read at start); its counts to $results as NAME_*.
poll_start() { apiserver_poll_start 1200; }
poll_stop() {
	apiserver_poll_stop >"$outputs/poll-$1.json"
	POLL_REQUESTS=$(jq -r .requests "$outputs/poll-$1.json" 2>/dev/null)
	POLL_FAILED=$(jq -r .failed "$outputs/poll-$1.json" 2>/dev/null)
	printf '%s_requests %s\n%s_failed %s\n' "$1" "${POLL_REQUESTS:-?}" "$1" "${POLL_FAILED:-?}" | tee -a "$results" >&2
}
# readyz_watch_start / readyz_watch_stop NAME: an anonymous GET /readyz every 200 ms, each
# answer's status line (or "down") with the time; counted into $results as NAME_*.
readyz_watch_start() {
	e2e_exec sh -c '
		while :; do
			s=$(printf "GET /readyz HTTP/1.0\r\n\r\n" | timeout 2 openssl s_client -quiet -connect 127.0.0.1:6443 2>/dev/null | head -n1 | tr -d "\r")
			echo "$(date +%s.%N) ${s:-down}"
			sleep 0.2
		done >/run/readyz.log 2>&1 & echo $! >/run/readyz.pid'
}
readyz_watch_stop() {
	local f=$outputs/readyz-$1.log
	e2e_exec sh -c 'kill "$(cat /run/readyz.pid)"; cat /run/readyz.log' >"$f"
	printf '%s_readyz_answers %s\n%s_readyz_down %s\n%s_readyz_200 %s\n%s_readyz_not_ready %s\n' \
		"$1" "$(wc -l <"$f")" "$1" "$(grep -c ' down$' "$f")" "$1" "$(grep -c ' 200 ' "$f")" \
		"$1" "$(grep -v ' down$' "$f" | grep -vc ' 200 ')" | tee -a "$results" >&2
	grep -v ' down$' "$f" | grep -v ' 200 ' | awk '{ $1 = ""; print }' | sort | uniq -c >&2 || :
}
# ready_after OUT: the phase's output OUT says the agent saw kube-apiserver ready on
# /readyz, answered by a socket opened after the restart request (inode N: the phase ran
# in the packaged unit's sandbox, which hides the process) or by pid P. That socket's
# process (looked up here, as root) or P is the kube-apiserver the static-pods runner
# started last, during the phase: not the process of before the restart, which serves the
# new certificate and stays ready until it is stopped (docs/reloads.md). Then kubectl's
# /readyz answers ok at once and every 0.5 s for 5 s: its failures go to $results.
ready_after() {
	local out=$outputs/rotate-$1.out line p inode started runner i failed=0
	line=$(grep 'kube-apiserver ready on .* (/readyz)' "$out" | tail -n1)
	[[ -n $line ]] || { e2e_log "$1: no readiness line"; return 1; }
	for ((i = 0; i < 10; i++)); do
		k8s_kubectl --request-timeout=2s get --raw /readyz >/dev/null 2>&1 || failed=$((failed + 1))
		sleep 0.5
	done
	printf 'readyz_failed_after_verified_%s %s\n' "${1//-/_}" "$failed" | tee -a "$results" >&2
	p=$(grep -o 'answered by pid [0-9]*' <<<"$line" | grep -o '[0-9]*$')
	inode=$(grep -o 'answered by a socket opened after the restart request (inode [0-9]*' <<<"$line" | grep -o '[0-9]*$')
	if [[ -z $p && -n $inode ]]; then
		p=$(e2e_exec sh -c 'find /proc/[0-9]*/fd -lname "socket:\[$1\]" 2>/dev/null | head -n1 | cut -d/ -f3' _ "$inode")
	fi
	runner=$(e2e_exec cat /run/static-pods/kube-apiserver.pid)
	started=$(e2e_exec awk -v p="$p" '$2 == "kube-apiserver" && $3 == "started" && $0 ~ (" pid=" p " ") { print $1 }' /run/static-pods/events.log | tail -n1)
	e2e_log "$1: the agent verified ${p:+pid $p}${inode:+ (socket $inode)} (runner: pid $runner, started at ${started:-?}; the phase began at $PHASE_T0): $line"
	[[ -n $p ]] && eq "$p" "$runner" && [[ -n $started ]] &&
		awk -v a="$PHASE_T0" -v b="$started" 'BEGIN { exit !(b > a) }' && ((failed == 0))
}
# Every file the agent may touch, with its mode and content hash; symlinks by target.
snapshot() {
	e2e_exec bash -c 'find /etc/kubernetes /var/lib/kubelet/pki /root/.kube -path /root/.kube/cache -prune -o \( -type f -o -type l \) -print | sort |
		while read -r f; do
			if [[ -L $f ]]; then printf "%s -> %s\n" "$f" "$(readlink "$f")"
			else printf "%s %s %s\n" "$f" "$(stat -c %a "$f")" "$(sha256sum <"$f" | cut -c1-64)"; fi
		done'
}
same_files() { snapshot >"$1.now" && diff "$1" "$1.now" >&2; }

k8s_boot_checked
# Restarts 5 s apart instead of the packaged 30 s (controlplane.sh check 3 measures the
# defaults); here the gap would only make the test long.
e2e_exec sh -c 'printf "[run]\nmin_restart_gap_seconds = 5\n" >/etc/cert-rotator/config.d/50-test.toml'

# --- abort part way: ca rotated to issuing, then aborted -------------------------------
rot=/tmp/rot
e2e_exec sh -c "mkdir -p $rot && cp $pki/ca.crt $rot/old-ca.crt"
before=$E2E_DIR/before-start.snapshot
snapshot >"$before"
api_serial=$(serial_of $pki/apiserver.crt)
kubelet_client=$(e2e_exec readlink /var/lib/kubelet/pki/kubelet-client-current.pem)
poll_start
readyz_watch_start
sleep 2
e2e_check "ca rotate ca start" rotate ca start
e2e_check "ca rotate ca trust" rotate ca trust
e2e_check "... the agent verified the new kube-apiserver's /readyz (its pid); kubectl's /readyz ok from then on" ready_after ca-trust
save_new_ca $pki/ca.crt $rot/old-ca.crt $rot/new-ca.crt
e2e_check "... kubectl: old-CA-only accepted, new-CA-only refused" e2e_wait_for 30 clients "$rot" ok refused
e2e_check "ca rotate ca issue" rotate ca issue
e2e_check "... kubectl: old-CA-only and new-CA-only accepted" e2e_wait_for 30 clients "$rot" ok ok
e2e_check "... kube-apiserver serves a certificate of the new CA" \
	eval 'serves_disk 6443 $pki/apiserver.crt && e2e_exec openssl verify -no-CApath -no-CAstore -CAfile $rot/new-ca.crt $pki/apiserver.crt >/dev/null'
e2e_check "... phase issuing" eq "$(phase_of ca)" issuing
e2e_check "ca rotate ca abort (from issuing)" rotate ca abort
e2e_check "... the agent verified the new kube-apiserver's /readyz (its pid); kubectl's /readyz ok from then on" ready_after ca-abort
e2e_check "... phase none" eq "$(phase_of ca)" none
e2e_check "... every node file as before start (contents, modes, symlinks)" same_files "$before"
e2e_check "... kubectl: old-CA-only accepted, new-CA-only refused" e2e_wait_for 30 clients "$rot" ok refused
e2e_check "... kube-apiserver serves its certificate of before start" \
	eval 'serves_disk 6443 $pki/apiserver.crt && eq "$(serial_of $pki/apiserver.crt)" "$api_serial"'
e2e_check "... the controller-manager signs a CSR with the old CA again" \
	eval 'csr_signed after-abort && signed_verifies_with $rot/old-ca.crt'
e2e_check "... kube-root-ca.crt holds the old CA alone" e2e_wait_for 60 eval '[[ $(root_ca_configmap_certs) == 1 ]]'
e2e_check "... the kubelet's client certificate is its file of before start" \
	eq "$(e2e_exec readlink /var/lib/kubelet/pki/kubelet-client-current.pem)" "$kubelet_client"
e2e_check "... every kubeconfig authenticates" \
	eval 'whoami_is /etc/kubernetes/admin.conf kubernetes-admin kubeadm:cluster-admins && whoami_is /etc/kubernetes/super-admin.conf kubernetes-super-admin system:masters && whoami_is /etc/kubernetes/kubelet.conf "system:node:$K8S_NODE" system:nodes'
e2e_check "... the Node is Ready" e2e_wait_node_ready 90
poll_stop abort_poll
readyz_watch_stop abort
e2e_check "an old-CA-only client kept asking through start, trust, issue and abort (${POLL_REQUESTS:-0} requests, ${POLL_FAILED:-?} failed)" \
	eval '[[ ${POLL_REQUESTS:-0} -gt 100 ]]'
e2e_check "ca status: ca renewable again (not held)" \
	eval 'e2e_exec cert-rotator ca status --json | jq -e ".authorities[] | select(.name == \"ca\") | has(\"held\") | not" >/dev/null'

# --- a full rotation of etcd/ca with the real etcd ------------------------------------
# etcd_with CACERT CERT KEY: put and get a key as that client -> ok or refused.
etcd_with() {
	local args=(etcdctl --endpoints=https://127.0.0.1:2379 --cacert="$1" --cert="$2" --key="$3"
		--dial-timeout=3s --command-timeout=5s)
	if e2e_exec "${args[@]}" put /cert-rotator-test/k "$RANDOM" >/dev/null 2>&1 &&
		e2e_exec "${args[@]}" get /cert-rotator-test/k >/dev/null 2>&1; then
		echo ok
	else
		echo refused
	fi
}
# etcd_clients OLD NEW: etcdctl trusting the old etcd CA alone does OLD, the new one alone
# does NEW (ok, refused, or - for not tried), each with healthcheck-client's certificate.
etcd_clients() {
	local rc=0 pair f want got
	for pair in "old:$1" "new:$2"; do
		f=${pair%%:*} want=${pair#*:}
		[[ $want == - ]] && continue
		got=$(etcd_with "$erot/$f-ca.crt" $pki/etcd/healthcheck-client.crt $pki/etcd/healthcheck-client.key)
		[[ $got == "$want" ]] || { rc=1; e2e_log "$f-etcd-CA-only etcdctl: expected $want, got $got"; }
	done
	return "$rc"
}
# apiserver_uses_etcd PHASE: the apiserver writes a ConfigMap, reads it back, and /readyz's
# etcd check passes.
apiserver_uses_etcd() {
	k8s_kubectl --request-timeout=5s create configmap "etcd-rotation-$1" --from-literal=phase="$1" >/dev/null 2>&1 || :
	[[ $(k8s_kubectl --request-timeout=5s get configmap "etcd-rotation-$1" -o jsonpath='{.data.phase}' 2>/dev/null) == "$1" ]] &&
		k8s_kubectl --request-timeout=5s get --raw '/readyz/etcd' >/dev/null 2>&1
}
erot=/tmp/erot
e2e_exec sh -c "mkdir -p $erot && cp $pki/etcd/ca.crt $erot/old-ca.crt && cp $pki/etcd/healthcheck-client.crt $pki/etcd/healthcheck-client.key $erot/"
etcd_starts=$(starts etcd)
poll_start
readyz_watch_start
e2e_check "before: etcdctl trusting the old etcd CA accepted" e2e_wait_for 30 etcd_clients ok -
e2e_check "ca rotate etcd/ca start" rotate etcd/ca start
e2e_check "... etcdctl: old-CA-only accepted" e2e_wait_for 30 etcd_clients ok -
e2e_check "... the apiserver reads and writes etcd" e2e_wait_for 60 apiserver_uses_etcd started
e2e_check "ca rotate etcd/ca trust" rotate etcd/ca trust
save_new_ca $pki/etcd/ca.crt $erot/old-ca.crt $erot/new-ca.crt
e2e_check "... etcd/ca.crt holds old then new" \
	eq "$(certs_in $pki/etcd/ca.crt) $(serial_of $pki/etcd/ca.crt)" "2 $(serial_of $erot/old-ca.crt)"
e2e_check "... etcdctl: old-CA-only accepted, new-CA-only refused" e2e_wait_for 30 etcd_clients ok refused
e2e_check "... the apiserver reads and writes etcd" e2e_wait_for 60 apiserver_uses_etcd trusting
e2e_check "ca rotate etcd/ca issue" rotate etcd/ca issue
e2e_check "... etcd/server.crt verifies against the new CA alone" \
	e2e_exec openssl verify -no-CApath -no-CAstore -CAfile $erot/new-ca.crt $pki/etcd/server.crt
e2e_check "... etcd serves it" e2e_wait_for 30 serves_disk 2379 $pki/etcd/server.crt
e2e_check "... etcdctl: old-CA-only accepted (cross-signed chain), new-CA-only accepted" \
	e2e_wait_for 30 etcd_clients ok ok
e2e_check "... a client certificate of the old etcd CA still accepted" \
	eq "$(etcd_with $pki/etcd/ca.crt $erot/healthcheck-client.crt $erot/healthcheck-client.key)" ok
e2e_check "... the apiserver reads and writes etcd (apiserver-etcd-client of the new CA)" \
	e2e_wait_for 60 apiserver_uses_etcd issuing
e2e_check "ca rotate etcd/ca finish" rotate etcd/ca finish
e2e_check "... the agent verified the new kube-apiserver's /readyz (its pid); kubectl's /readyz ok from then on" ready_after etcd-ca-finish
e2e_check "... etcd/ca.crt is the new etcd CA alone" \
	eq "$(certs_in $pki/etcd/ca.crt) $(serial_of $pki/etcd/ca.crt)" "1 $(serial_of $erot/new-ca.crt)"
e2e_check "... etcdctl: old-CA-only refused, new-CA-only accepted" e2e_wait_for 30 etcd_clients refused ok
e2e_check "... a client certificate of the old etcd CA refused" \
	eq "$(etcd_with $pki/etcd/ca.crt $erot/healthcheck-client.crt $erot/healthcheck-client.key)" refused
e2e_check "... the apiserver reads and writes etcd" e2e_wait_for 60 apiserver_uses_etcd finished
e2e_check "... every etcd leaf verifies against the new etcd CA alone" \
	e2e_exec openssl verify -no-CApath -no-CAstore -CAfile $pki/etcd/ca.crt \
	$pki/etcd/server.crt $pki/etcd/peer.crt $pki/etcd/healthcheck-client.crt $pki/apiserver-etcd-client.crt
e2e_check "... etcd was restarted at trust, issue and finish (it never reloads its CA)" \
	eq "$(starts etcd)" "$((etcd_starts + 3))"
e2e_check "... the ConfigMaps written at every phase are all there" \
	eval '[[ $(k8s_kubectl get configmap -o name | grep -c etcd-rotation-) == 4 ]]'
e2e_check "... the Node is Ready" e2e_wait_node_ready 90
poll_stop etcd_rotation_poll
readyz_watch_stop etcd_rotation
e2e_check "a client kept asking the apiserver through the etcd/ca rotation (${POLL_REQUESTS:-0} requests, ${POLL_FAILED:-?} failed)" \
	eval '[[ ${POLL_REQUESTS:-0} -gt 100 ]]'

e2e_summary
