#!/bin/bash
# tests/e2e/ca_rotate.sh - CA rotation to a new key in phases (issue #11, section 2)
# on a real booted systemd, checked with the real clients, against the command
# contract `cert-rotator ca rotate NAME start|trust|issue|finish|abort`.
#
# For `ca` (cross-signing on, the default):
#   - `abort` from started, trusting and issuing restores every file of the node byte
#     for byte (contents, modes, symlink targets; the static-pod manifests checked on
#     their own) and `ca status` says phase none;
#   - a full rotation, after each phase: the phase in `ca status --json`; kubectl with
#     a kubeconfig holding only the old CA and with one holding only the new CA
#     (each with admin.conf's client certificate of the moment) against the
#     apiserver stand-in, which requires client certificates of ca.crt and sends
#     apiserver.crt's chain:
#         phase      old CA only   new CA only
#         started    accepted      refused   (nothing live changed: every file as before)
#         trusting   accepted      refused   (the server's leaf is still the old CA's)
#         issuing    accepted      accepted  (new leaf, chain with the cross certificate)
#         finished   refused       accepted
#     ca.crt holds old then new while trusting, new then old while issuing, new alone
#     when finished; the controller-manager's signing certificate is one certificate
#     throughout; a phase out of order exits 1 and changes nothing; etcdctl works
#     after every phase.
# For `etcd/ca`: a full rotation with etcdctl (apiserver-etcd-client and
# healthcheck-client) after every phase, the real etcd restarted to trust the new CA,
# every etcd leaf verifying against the new CA alone at the end.
# Not here: kill -9 at every write step (the cargo tests with failpoints do that; the
# packaged binary has no failpoints). Prints "N passed, N failed". Needs what run.sh
# needs, and jq on the host.
#
# Stand-ins (run.sh says which): the full `ca rotate ca` with old/new-CA-only kubectl
# is proven on the real kube-apiserver in tests/k8s/controlplane.sh, the full
# `ca rotate etcd/ca` with the real etcd and an abort from issuing in
# tests/k8s/ca_rotate.sh. Kept here: abort from every phase with byte-for-byte
# snapshots after each, and phases out of order; the apiserver stand-in is stricter
# than the real one (it ends the handshake on a client certificate ca.crt does not
# verify), which shows the client side of each phase without the API's own state.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
# shellcheck source-path=SCRIPTDIR source=clients.sh
. "$here/clients.sh"
e2e_trap_exit

deb=$(ls -t "$repo"/target/packages/cert-rotator_*_amd64.deb 2>/dev/null | head -n1)
if [[ -z $deb ]] || ! e2e_clients_bind || ! command -v jq >/dev/null; then
	e2e_check "a .deb from packaging/build.sh, jq, and the host binaries clients.sh binds exist" false
	e2e_summary
	exit 1
fi
if ! e2e_rootfs >/dev/null || ! e2e_boot; then
	e2e_check "container boots to running/degraded" false
	e2e_summary
	exit 1
fi

pki=/etc/kubernetes/pki
eq() { [[ -n $1 && $1 == "$2" ]]; }
fails() { ! "$@"; }
phase_of() {
	e2e_exec cert-rotator ca status --json |
		jq -er --arg n "$1" '.authorities[] | select(.name == $n) | .phase'
}
# Every file the agent may touch, with its mode and content hash; symlinks by target
# (kubectl's cache under /root/.kube left out).
snapshot() {
	e2e_exec bash -c 'find /etc/kubernetes /var/lib/kubelet/pki /root/.kube -path /root/.kube/cache -prune -o \( -type f -o -type l \) -print | sort |
		while read -r f; do
			if [[ -L $f ]]; then printf "%s -> %s\n" "$f" "$(readlink "$f")"
			else printf "%s %s %s\n" "$f" "$(stat -c %a "$f")" "$(sha256sum <"$f" | cut -c1-64)"; fi
		done'
}
same_files() { # SNAPSHOT-FILE [manifests|others]: the node's files (only the static-pod
	# manifests, or all others) are as recorded in SNAPSHOT-FILE (on the host)
	local keep=(cat)
	case ${2:-} in
	manifests) keep=(grep '^/etc/kubernetes/manifests/') ;;
	others) keep=(grep -v '^/etc/kubernetes/manifests/') ;;
	esac
	snapshot >"$1.now"
	diff <("${keep[@]}" "$1") <("${keep[@]}" "$1.now") >&2
}
# certs_in FILE: the number of certificates in FILE
certs_in() { e2e_exec grep -c -- '-----BEGIN CERTIFICATE-----' "$1"; }
# nth_subject_serial FILE N: the serial of the Nth certificate of FILE (1-based)
nth_serial() {
	e2e_exec bash -c 'awk -v n="$2" "/-----BEGIN CERTIFICATE-----/ { i++ } i == n { print } /-----END CERTIFICATE-----/ && i == n { exit }" "$1" |
		openssl x509 -noout -serial | cut -d= -f2' _ "$1" "$2"
}
serial_of() { nth_serial "$1" 1; }
# ca_only_kubeconfig CA-FILE OUT: admin.conf as it is now, trusting CA-FILE's first
# certificate alone
ca_only_kubeconfig() {
	e2e_exec bash -euo pipefail -c '
		ca=$(openssl x509 -in "$1" | base64 -w0)
		[[ -n $ca ]]
		sed "s|^\( *certificate-authority-data:\).*|\1 $ca|" /etc/kubernetes/admin.conf >"$2"
	' _ "$1" "$2"
}
# clients OLD NEW: kubectl trusting the old CA alone does OLD, trusting the new CA
# alone does NEW (ok|refused; NEW may be - when the new CA is not on disk yet)
clients() {
	local rc=0
	ca_only_kubeconfig /tmp/rot/old-ca.crt /tmp/rot/old-only.conf || return 1
	if [[ $1 == ok ]]; then kubectl_ok /tmp/rot/old-only.conf || rc=1; else kubectl_refused /tmp/rot/old-only.conf || rc=1; fi
	if [[ $2 != - ]]; then
		ca_only_kubeconfig /tmp/rot/new-ca.crt /tmp/rot/new-only.conf || return 1
		if [[ $2 == ok ]]; then kubectl_ok /tmp/rot/new-only.conf || rc=1; else kubectl_refused /tmp/rot/new-only.conf || rc=1; fi
	fi
	return "$rc"
}
etcd_works() {
	etcd_healthy apiserver-etcd-client && etcd_healthy healthcheck-client &&
		etcd_put_get apiserver-etcd-client /cert-rotator-e2e/rotation "$1"
}
rotate() { e2e_exec cert-rotator ca rotate "$@"; }
# save_new_ca CA-FILE: the certificate of CA-FILE that is not the old CA -> new-ca.crt
save_new_ca() {
	local f=$1 old n i
	old=$(e2e_exec openssl x509 -in /tmp/rot/old-"${2:-ca}".crt -noout -serial | cut -d= -f2)
	n=$(certs_in "$f")
	for ((i = 1; i <= n; i++)); do
		[[ $(nth_serial "$f" "$i") == "$old" ]] && continue
		e2e_exec bash -c 'awk -v n="$2" "/-----BEGIN CERTIFICATE-----/ { i++ } i == n { print }" "$1" >"$3"' \
			_ "$f" "$i" "/tmp/rot/new-${2:-ca}.crt"
		return 0
	done
	return 1
}

# --- the node ------------------------------------------------------------------------
e2e_copy_in "$deb" /opt/cert-rotator.deb
e2e_copy_in "$here/standins" /opt/standins
e2e_check "dpkg -i installs the package" e2e_exec dpkg -i /opt/cert-rotator.deb
e2e_check "fixture builder lays down a kubeadm node" e2e_exec cert-rotator demo --build-only --keep /
e2e_exec sh -c 'printf "[run]\nmax_restarts_per_pass = 5\nmin_restart_gap_seconds = 2\nverify_timeout_seconds = 60\n" >/etc/cert-rotator/config.d/50-e2e.toml'
e2e_exec ip addr add 10.0.0.10/32 dev lo
e2e_check "stand-ins installed and started" e2e_exec /opt/standins/install.sh --now
e2e_check "a pass renews the due leaves" e2e_exec systemctl start cert-rotator.service
e2e_check "real etcd is healthy" e2e_wait_for 30 etcd_healthy apiserver-etcd-client
e2e_check "the apiserver stand-in is up" e2e_wait_for 20 kubectl_ok /etc/kubernetes/admin.conf
e2e_exec mkdir -p /tmp/rot
e2e_exec cp $pki/ca.crt /tmp/rot/old-ca.crt
e2e_exec cp $pki/etcd/ca.crt /tmp/rot/old-etcd-ca.crt
e2e_check "ca status --json: ca is in phase none" eq "$(phase_of ca)" none

# --- abort from every phase before finish restores the node byte for byte ---------
before=$E2E_DIR/before-start.snapshot
snapshot >"$before"
steps=(start trust issue)
for ((k = 1; k <= ${#steps[@]}; k++)); do
	ok=1
	for step in "${steps[@]:0:k}"; do rotate ca "$step" >/dev/null || ok=0; done
	e2e_check "ca rotate ca ${steps[*]:0:k} succeed" eq "$ok" 1
	abort_out=$E2E_DIR/abort-after-${steps[k - 1]}.out
	e2e_check "... then abort succeeds" eval 'rotate ca abort >"$abort_out"'
	# Abort restarts only what it restored: nothing after start; after trust or issue
	# the static pods by writing back their manifests of before start, then the kubelet.
	if ((k == 1)); then
		e2e_check "... and restarts nothing (nothing live had changed)" fails grep -q ': restarted ' "$abort_out"
	else
		e2e_check "... and restarts each static pod by its manifest of before start, then the kubelet" \
			eq "$(grep -o ': restarted [a-z.-]*' "$abort_out" | cut -d' ' -f3 | paste -sd' ')" \
			"kube-apiserver kube-controller-manager kube-scheduler kubelet.service"
	fi
	e2e_check "... and every file but the static-pod manifests is as before start" same_files "$before" others
	e2e_check "... and the static-pod manifests are as before start" same_files "$before" manifests
	snapshot >"$before" # the next round starts from here
	e2e_check "... phase none" eq "$(phase_of ca)" none
	e2e_check "... kubectl with admin.conf still authenticates" e2e_wait_for 20 kubectl_ok /etc/kubernetes/admin.conf
done

# --- a full rotation of ca ----------------------------------------------------------------
snapshot >"$before"
e2e_check "trust before start exits 1" fails rotate ca trust
e2e_check "... and changes nothing" same_files "$before"
e2e_check "ca rotate ca start" rotate ca start
e2e_check "... phase started" eq "$(phase_of ca)" started
e2e_check "... nothing live changed" same_files "$before"
e2e_check "... old-CA-only kubectl accepted" clients ok -
e2e_check "issue before trust exits 1 and changes nothing" \
	eq "$(rotate ca issue >/dev/null 2>&1; echo $?)|$(phase_of ca)" "1|started"
e2e_check "ca rotate ca trust" rotate ca trust
e2e_check "... phase trusting" eq "$(phase_of ca)" trusting
e2e_check "... ca.crt holds old then new" \
	eq "$(certs_in $pki/ca.crt) $(serial_of $pki/ca.crt)" "2 $(serial_of /tmp/rot/old-ca.crt)"
save_new_ca $pki/ca.crt
e2e_check "... the controller-manager signs with one certificate" \
	e2e_exec bash -c 'f=$(sed -n "s/^ *- --cluster-signing-cert-file=//p" /etc/kubernetes/manifests/kube-controller-manager.yaml); [[ -n $f ]] && (( $(grep -c -- "-----BEGIN CERTIFICATE-----" "$f") == 1 ))'
e2e_check "... kubectl: old-CA-only accepted, new-CA-only refused" clients ok refused
e2e_check "... etcdctl works" etcd_works trusting
e2e_check "ca rotate ca issue" rotate ca issue
e2e_check "... phase issuing" eq "$(phase_of ca)" issuing
e2e_check "... ca.crt holds new then old" \
	eq "$(certs_in $pki/ca.crt) $(nth_serial $pki/ca.crt 2)" "2 $(serial_of /tmp/rot/old-ca.crt)"
e2e_check "... apiserver.crt verifies against the new CA alone" \
	e2e_exec openssl verify -no-CApath -no-CAstore -CAfile /tmp/rot/new-ca.crt $pki/apiserver.crt
e2e_check "... kubectl: old-CA-only and new-CA-only accepted (cross-signed chain)" clients ok ok
e2e_check "... etcdctl works" etcd_works issuing
e2e_check "ca rotate ca finish" rotate ca finish
e2e_check "... phase finished" eq "$(phase_of ca)" finished
e2e_check "... ca.crt is the new CA alone" \
	eq "$(certs_in $pki/ca.crt) $(serial_of $pki/ca.crt)" "1 $(serial_of /tmp/rot/new-ca.crt)"
e2e_check "... kubectl: old-CA-only refused, new-CA-only accepted" clients refused ok
for kc in /etc/kubernetes/{admin,super-admin,controller-manager,scheduler,kubelet}.conf /root/.kube/config; do
	e2e_exec test -e "$kc" || continue
	e2e_check "... kubectl with ${kc#/etc/kubernetes/} authenticates" kubectl_ok "$kc"
done
e2e_check "... etcdctl works" etcd_works finished
e2e_check "abort after finish exits 1" fails rotate ca abort

# --- a full rotation of etcd/ca -------------------------------------------------------------
etcd_leaves=("$pki/etcd/server.crt" "$pki/etcd/peer.crt" "$pki/etcd/healthcheck-client.crt" "$pki/apiserver-etcd-client.crt")
for step in start trust issue finish; do
	e2e_check "ca rotate etcd/ca $step" rotate etcd/ca "$step"
	e2e_check "... etcdctl works" e2e_wait_for 30 etcd_works "etcd-$step"
	e2e_check "... real etcd serves etcd/server.crt" \
		e2e_exec sh -c "openssl s_client -connect 127.0.0.1:2379 </dev/null 2>/dev/null | openssl x509 -noout -serial | grep -qx \"\$(openssl x509 -in $pki/etcd/server.crt -noout -serial)\""
	[[ $step == trust ]] && save_new_ca $pki/etcd/ca.crt etcd-ca
done
e2e_check "etcd/ca.crt is the new etcd CA alone" \
	eq "$(certs_in $pki/etcd/ca.crt) $(serial_of $pki/etcd/ca.crt)" "1 $(serial_of /tmp/rot/new-etcd-ca.crt)"
e2e_check "every etcd leaf verifies against it alone" \
	e2e_exec openssl verify -no-CApath -no-CAstore -CAfile $pki/etcd/ca.crt "${etcd_leaves[@]}"
e2e_check "real etcd runs with it (restarted)" \
	e2e_exec grep -qx "$(e2e_exec sha256sum $pki/etcd/ca.crt)" /run/static-pods/etcd.inputs

e2e_teardown
e2e_summary
