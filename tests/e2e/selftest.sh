#!/bin/bash
# tests/e2e/selftest.sh - demonstrates and checks the e2e harness itself:
# boots a real systemd container, installs the kubeadm-node stand-ins and the
# hardened cert-rotator units (with a dummy /usr/bin/cert-rotator), checks
# that the stand-ins behave like a kubelet + static pods, tears down and
# prints "N passed, N failed". Needs root, debootstrap and systemd-container.
#
#   sudo tests/e2e/selftest.sh
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
e2e_trap_exit

t0=$SECONDS
if ! e2e_rootfs >/dev/null; then
	e2e_check "rootfs tarball built" false
	e2e_summary
	exit 1
fi
t_rootfs=$SECONDS
# shellcheck disable=SC2119 # no DIR: e2e_boot makes a temp dir
if ! e2e_boot; then
	e2e_check "container boots to running/degraded" false
	e2e_summary
	exit 1
fi
t_boot=$SECONDS
e2e_check "container boots to running/degraded" true

# --- helpers -----------------------------------------------------------------
# SHA-256 fingerprint of the certificate served on 127.0.0.1:PORT
served_fp() {
	e2e_exec sh -c "openssl s_client -connect 127.0.0.1:$1 </dev/null 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256" 2>/dev/null | cut -d= -f2
}
# ... of the first certificate in FILE (inside the container)
file_fp() {
	e2e_exec openssl x509 -in "$1" -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}
invocation() { e2e_exec systemctl show -P InvocationID "$1"; }
restarts() { e2e_exec cat "/run/static-pods/$1.restarts" 2>/dev/null || echo none; }
eq() { [[ -n $1 && $1 == "$2" ]]; }
ne() { [[ -n $1 && -n $2 && $1 != "$2" ]]; }
served_is() { eq "$(served_fp "$1")" "$2"; }
restarts_above() { [[ $(restarts "$1") =~ ^[0-9]+$ ]] && (($(restarts "$1") > $2)); }

# --- stand-ins -----------------------------------------------------------------
e2e_copy_in "$here/standins" /opt/standins
e2e_check "fake kubeadm node PKI generated" \
	e2e_exec /opt/standins/fake-kubeadm-node.sh
e2e_check "stand-ins installed and started" \
	e2e_exec /opt/standins/install.sh --now
e2e_check "kubelet stand-in serves kubelet.crt's leaf on :10250" \
	e2e_wait_for 10 served_is 10250 "$(file_fp /var/lib/kubelet/pki/kubelet.crt)"
e2e_check "kube-apiserver stand-in serves apiserver.crt on :6443" \
	e2e_wait_for 10 served_is 6443 "$(file_fp /etc/kubernetes/pki/apiserver.crt)"
e2e_check "etcd stand-in serves etcd/server.crt on :2379" \
	e2e_wait_for 10 served_is 2379 "$(file_fp /etc/kubernetes/pki/etcd/server.crt)"
e2e_check "controller-manager and scheduler stand-ins run" \
	e2e_wait_for 10 e2e_exec test -s /run/static-pods/kube-scheduler.pid -a \
	-s /run/static-pods/kube-controller-manager.pid

inv1=$(invocation kubelet.service)
e2e_exec systemctl restart kubelet.service
inv2=$(invocation kubelet.service)
e2e_check "systemctl restart kubelet changes its InvocationID" ne "$inv1" "$inv2"

old_api=$(served_fp 6443)
r0=$(restarts kube-apiserver)
e2e_exec env DAYS=30 /opt/standins/fake-kubeadm-node.sh --leaves-only >/dev/null
new_api=$(file_fp /etc/kubernetes/pki/apiserver.crt)
e2e_check "re-issued apiserver.crt differs from the served one" ne "$old_api" "$new_api"
e2e_check "kubelet restart picks up the new kubelet.crt" \
	e2e_exec systemctl restart kubelet.service
e2e_check "... and serves it" \
	e2e_wait_for 10 served_is 10250 "$(file_fp /var/lib/kubelet/pki/kubelet.crt)"

m=/etc/kubernetes/manifests/kube-apiserver.yaml
e2e_exec touch "$m"
e2e_exec sh -c "printf '\n# comment-only edit\n' >>$m"
sleep 3
e2e_check "touch / comment-only edit of the manifest: no restart" eq "$(restarts kube-apiserver)" "$r0"
e2e_check "... still serving the old certificate" served_is 6443 "$old_api"

e2e_exec sed -i 's/^  name: kube-apiserver$/  name: kube-apiserver\n  annotations:\n    cert-rotator\/renewed: "selftest"/' "$m"
e2e_check "manifest content change restarts kube-apiserver" \
	e2e_wait_for 10 restarts_above kube-apiserver "$r0"
e2e_check "... which now serves the new apiserver.crt" \
	e2e_wait_for 10 served_is 6443 "$new_api"
e2e_check "etcd was not restarted" eq "$(restarts etcd)" 0

# --- cert-rotator units with the dummy agent -------------------------------
e2e_copy_in "$here/dummy/cert-rotator" /usr/bin/cert-rotator
e2e_copy_in "$repo/systemd/cert-rotator.service" /etc/systemd/system/cert-rotator.service
e2e_copy_in "$repo/systemd/cert-rotator.timer" /etc/systemd/system/cert-rotator.timer
e2e_exec systemctl daemon-reload
e2e_check "systemd-analyze verify cert-rotator.{service,timer}" \
	e2e_exec systemd-analyze verify cert-rotator.service cert-rotator.timer
e2e_check "cert-rotator.timer enables and is scheduled" \
	e2e_exec sh -c 'systemctl enable --now cert-rotator.timer 2>/dev/null &&
		systemctl list-timers --no-legend cert-rotator.timer | grep -q cert-rotator.service'

inv1=$(invocation kubelet.service)
e2e_exec touch /run/cert-rotator-dummy.hold
e2e_exec systemctl start --no-block cert-rotator.service
status_seen() { e2e_exec systemctl show -P StatusText cert-rotator.service | grep -q 'dummy run finished, 0 failed'; }
e2e_check "sd_notify STATUS= from the oneshot shows in StatusText" e2e_wait_for 20 status_seen
e2e_exec rm -f /run/cert-rotator-dummy.hold
finished() { [[ $(e2e_exec systemctl show -P ActiveState cert-rotator.service) != activating ]]; }
e2e_wait_for 30 finished
result=$(e2e_exec systemctl show -P Result cert-rotator.service)
e2e_check "hardened cert-rotator.service runs the dummy successfully (Result=$result)" \
	eq "$result" success
if [[ $result != success ]]; then
	e2e_exec journalctl --no-pager -o cat -u cert-rotator.service >&2
fi
e2e_check "its D-Bus RestartUnit restarted kubelet (new InvocationID)" \
	ne "$inv1" "$(invocation kubelet.service)"

security=$(e2e_exec systemd-analyze security --no-pager cert-rotator.service 2>&1)
score=$(sed -n 's/.*Overall exposure level for cert-rotator.service: \([0-9.]*\).*/\1/p' <<<"$security")
e2e_log "systemd-analyze security exposure: ${score:-?}"
e2e_check "systemd-analyze security exposure ${score:-?} <= 3.0" \
	awk -v s="${score:-99}" 'BEGIN { exit !(s <= 3.0) }'

t_checks=$SECONDS
dir=$E2E_DIR nspawn=$E2E_NSPAWN_PID
e2e_teardown
t_end=$SECONDS
gone() { ! kill -0 "$1" 2>/dev/null && [[ ! -e $2 ]]; }
e2e_check "teardown stopped the container and removed its dir" gone "$nspawn" "$dir"
e2e_check "a second teardown is harmless" e2e_teardown
e2e_log "timing: rootfs $((t_rootfs - t0))s, boot $((t_boot - t_rootfs))s," \
	"checks $((t_checks - t_boot))s, teardown $((t_end - t_checks))s, total $((t_end - t0))s"
e2e_summary
