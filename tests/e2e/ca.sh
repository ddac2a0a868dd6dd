#!/bin/bash
# tests/e2e/ca.sh - CA renewal with the same key (issue #11, section 1) on a real
# booted systemd, checked with the real clients.
#
# Boots the e2e container (lib.sh), installs the .deb, lays down the fixture's node,
# makes its cluster CA and etcd CA ones near their end (standins/age-ca.sh: the same
# key and subject, 200 of 3650 days left, as on a cluster made in 2017), starts the
# stand-ins (the real etcd among them, clients.sh) and runs `cert-rotator ca renew`.
# Then: `ca status --json` shows both renewed (same key, subject and subject key
# identifier, a new serial, the old lifetime from now); no leaf was re-issued and
# every leaf verifies with the real `openssl verify` against the new CA alone; every
# kubeconfig embeds the new CA; kubectl with each kubeconfig authenticates to the
# apiserver stand-in, which was restarted after ca.crt changed; the real etcd was
# restarted (it never reloads its trusted CA), is healthy and accepts the apiserver's
# etcd client; the kubelet was restarted. The leaves due on the fixture's node are
# renewed by a pass first, before the CAs age. Prints "N passed, N failed". Needs what
# run.sh needs, and jq on the host.
#
# Stand-ins (run.sh says which): `ca renew` of the three CAs on the real
# kube-apiserver, controller-manager (a CSR signed with the renewed CA) and etcd is
# tests/k8s/controlplane.sh's. Kept here for CAs near their end (200 of 3650 days
# left: a node kubeadm makes in the test is minutes old), found due by `ca renew`
# without names, and the checks that no leaf was re-issued.
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
ne() { [[ -n $1 && -n $2 && $1 != "$2" ]]; }
gt() { [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] && (($1 > $2)); }
x509() { e2e_exec openssl x509 -in "$1" -noout "${@:2}"; }
serial_of() { x509 "$1" -serial | cut -d= -f2; }
# the subject key identifier, one line
ski_of() { x509 "$1" -ext subjectKeyIdentifier | tail -n +2 | tr -d ' '; }
pubkey_of() { x509 "$1" -pubkey; }
restarts() { e2e_exec cat "/run/static-pods/$1.starts" 2>/dev/null || echo 0; }
# runs_with COMPONENT FILE: the static pod's process read FILE as it is now at its start
runs_with() { e2e_exec grep -qx "$(e2e_exec sha256sum "$2")" "/run/static-pods/$1.inputs"; }
# The JSON of `ca status`, and one field of one authority in it.
ca_json() { e2e_exec cert-rotator ca status --json; }
authority() { # NAME JQ-FILTER (applied to the authority NAME)
	ca_json | jq -er --arg n "$1" ".authorities[] | select(.name == \$n) | $2"
}
# sha256 of the DER of FILE's first certificate, lowercase hex without colons
der_sha256() { e2e_exec sh -c "openssl x509 -in '$1' -outform DER | sha256sum" | cut -c1-64; }
norm_hex() { tr -d ':' | tr '[:upper:]' '[:lower:]' | sed 's/^0*//'; }

# Every leaf of the node, by the CA that must verify it: files, and the client
# certificates embedded in kubeconfigs (extracted to /tmp/leaves/NAME.crt).
ca_leaves=("$pki/apiserver.crt" "$pki/apiserver-kubelet-client.crt" /var/lib/kubelet/pki/kubelet-client-current.pem)
etcd_leaves=("$pki/etcd/server.crt" "$pki/etcd/peer.crt" "$pki/etcd/healthcheck-client.crt" "$pki/apiserver-etcd-client.crt")
kubeconfigs=(/etc/kubernetes/{admin,super-admin,controller-manager,scheduler,kubelet}.conf /root/.kube/config)
extract_kubeconfig_leaves() {
	e2e_exec bash -c 'mkdir -p /tmp/leaves; for f in "$@"; do
		[[ -f $f ]] || continue
		d=$(sed -n "s/^ *client-certificate-data: //p" "$f")
		[[ -n $d ]] && base64 -d <<<"$d" >"/tmp/leaves/${f//\//_}.crt"
	done; ls /tmp/leaves/*.crt' _ "${kubeconfigs[@]}"
}
leaves_sha256() { # every leaf's fingerprint, in order
	local f
	for f in "${ca_leaves[@]}" "${etcd_leaves[@]}" $(extract_kubeconfig_leaves); do
		printf '%s %s\n' "$f" "$(der_sha256 "$f")"
	done
}
verifies_alone() { # CA-FILE LEAF...: each leaf verifies against CA-FILE alone
	e2e_exec openssl verify -no-CApath -no-CAstore -CAfile "$1" "${@:2}" >/dev/null
}
kubeconfigs_embed() { # CA-FILE: every kubeconfig's certificate-authority-data is CA-FILE
	local f want got
	want=$(e2e_exec base64 -w0 "$1")
	for f in "${kubeconfigs[@]}"; do
		e2e_exec test -f "$f" || continue
		got=$(e2e_exec sed -n 's/^ *certificate-authority-data: //p' "$f")
		[[ $got == "$want" ]] || { e2e_log "  $f embeds another CA"; return 1; }
	done
}

# --- the node --------------------------------------------------------------------
e2e_copy_in "$deb" /opt/cert-rotator.deb
e2e_copy_in "$here/standins" /opt/standins
e2e_check "dpkg -i installs the package" e2e_exec dpkg -i /opt/cert-rotator.deb
e2e_check "fixture builder lays down a kubeadm node" e2e_exec cert-rotator demo --build-only --keep /
e2e_exec sh -c 'printf "[run]\nmax_restarts_per_pass = 5\nmin_restart_gap_seconds = 2\nverify_timeout_seconds = 60\n" >/etc/cert-rotator/config.d/50-e2e.toml'
e2e_exec ip addr add 10.0.0.10/32 dev lo
e2e_check "stand-ins installed and started" e2e_exec /opt/standins/install.sh --now
# The leaves that are due (scheduler.conf expired, the apiserver's, the kubelet's
# client certificate) renewed first, as the timer would have: every leaf is valid when
# the CA is renewed. Before the CAs age: `run` renews a due CA by itself.
e2e_check "a pass renews the due leaves" e2e_exec systemctl start cert-rotator.service
e2e_check "the cluster CA is made one near its end (same key, 200 days left)" \
	e2e_exec /opt/standins/age-ca.sh "$pki/ca" 200
e2e_check "... and the etcd CA" e2e_exec /opt/standins/age-ca.sh "$pki/etcd/ca" 200
e2e_check "the components restart with them" \
	e2e_exec systemctl restart static-pods.service kubelet.service
e2e_check "real etcd is healthy" e2e_wait_for 30 etcd_healthy apiserver-etcd-client
e2e_check "... runs with the aged etcd/ca.crt" runs_with etcd $pki/etcd/ca.crt
e2e_check "... and keeps a key" etcd_put_get apiserver-etcd-client /cert-rotator-e2e/before one
e2e_check "the apiserver stand-in is up" e2e_wait_for 20 kubectl_ok /etc/kubernetes/admin.conf
e2e_check "... with the aged ca.crt" runs_with kube-apiserver $pki/ca.crt
e2e_check "ca status --json: ca is due" eq "$(authority ca .due)" true
e2e_check "... etcd/ca is due" eq "$(authority etcd/ca .due)" true
e2e_check "... front-proxy-ca is not" eq "$(authority front-proxy-ca .due)" false

ca_serial=$(serial_of $pki/ca.crt) etcd_ca_serial=$(serial_of $pki/etcd/ca.crt)
ca_ski=$(ski_of $pki/ca.crt) etcd_ca_ski=$(ski_of $pki/etcd/ca.crt)
ca_pub=$(pubkey_of $pki/ca.crt) etcd_ca_pub=$(pubkey_of $pki/etcd/ca.crt)
ca_subject=$(x509 $pki/ca.crt -subject) etcd_ca_subject=$(x509 $pki/etcd/ca.crt -subject)
e2e_exec cp $pki/ca.crt /tmp/old-ca.crt
leaves_before=$(leaves_sha256)
etcd_pid=$(e2e_exec cat /run/static-pods/etcd.pid) etcd_starts=$(restarts etcd)
api_starts=$(restarts kube-apiserver)
kubelet_run=$(e2e_exec systemctl show -P InvocationID kubelet.service)

# --- ca renew -------------------------------------------------------------------------
e2e_check "cert-rotator ca renew succeeds" e2e_exec cert-rotator ca renew
e2e_check "ca status --json: nothing is due" \
	eq "$(ca_json | jq -r '[.authorities[] | select(.due)] | length')" 0
for c in ca etcd/ca; do
	f=$pki/$c.crt
	e2e_check "$c: a new serial" ne "$(serial_of "$f")" "$([[ $c == ca ]] && echo "$ca_serial" || echo "$etcd_ca_serial")"
	e2e_check "... the same subject, key and subject key identifier" eq \
		"$(x509 "$f" -subject)|$(pubkey_of "$f")|$(ski_of "$f")" \
		"$([[ $c == ca ]] && echo "$ca_subject|$ca_pub|$ca_ski" || echo "$etcd_ca_subject|$etcd_ca_pub|$etcd_ca_ski")"
	e2e_check "... the old lifetime from now (3650 days, ±1)" \
		e2e_exec bash -c "end=\$(date -d \"\$(openssl x509 -in $f -noout -enddate | cut -d= -f2)\" +%s); d=\$(( (end - \$(date +%s)) / 86400 )); ((d >= 3649 && d <= 3650))"
	e2e_check "... ca status --json has its serial and fingerprint" eq \
		"$(authority "$c" '.bundle[0].serial' | norm_hex) $(authority "$c" '.bundle[0].sha256' | norm_hex)" \
		"$(serial_of "$f" | norm_hex) $(der_sha256 "$f" | norm_hex)"
done
e2e_check "no leaf was re-issued" eq "$(leaves_sha256)" "$leaves_before"
# shellcheck disable=SC2046 # one file name a line
e2e_check "every leaf of ca verifies with openssl against the new ca.crt alone" \
	verifies_alone $pki/ca.crt "${ca_leaves[@]}" $(extract_kubeconfig_leaves)
e2e_check "every leaf of etcd/ca verifies against the new etcd/ca.crt alone" \
	verifies_alone $pki/etcd/ca.crt "${etcd_leaves[@]}"
e2e_check "every kubeconfig embeds the new ca.crt" kubeconfigs_embed $pki/ca.crt
e2e_check "the apiserver stand-in was restarted" gt "$(restarts kube-apiserver)" "$api_starts"
e2e_check "... and runs with the renewed ca.crt" runs_with kube-apiserver $pki/ca.crt
for kc in "${kubeconfigs[@]}"; do
	e2e_exec test -e "$kc" || continue
	e2e_check "kubectl with the renewed ${kc#/etc/kubernetes/} authenticates to it" kubectl_ok "$kc"
done
e2e_check "real etcd was restarted (a new process)" \
	eq "$(gt "$(restarts etcd)" "$etcd_starts" && echo y)$(ne "$(e2e_exec cat /run/static-pods/etcd.pid)" "$etcd_pid" && echo y)" yy
e2e_check "... and runs with the renewed etcd/ca.crt" runs_with etcd $pki/etcd/ca.crt
e2e_check "... is healthy to the apiserver's etcd client" e2e_wait_for 30 etcd_healthy apiserver-etcd-client
e2e_check "... which can put and get" etcd_put_get apiserver-etcd-client /cert-rotator-e2e/after two
e2e_check "... and read what was there before" etcd_get_is apiserver-etcd-client /cert-rotator-e2e/before one
e2e_check "... and to the healthcheck client" etcd_healthy healthcheck-client
e2e_check "the kubelet was restarted" ne "$(e2e_exec systemctl show -P InvocationID kubelet.service)" "$kubelet_run"
serials=$(serial_of $pki/ca.crt; serial_of $pki/etcd/ca.crt)
e2e_check "a second ca renew succeeds" e2e_exec cert-rotator ca renew
e2e_check "... and renews nothing" eq "$(serial_of $pki/ca.crt; serial_of $pki/etcd/ca.crt)" "$serials"

e2e_teardown
e2e_summary
