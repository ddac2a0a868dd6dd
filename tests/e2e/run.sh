#!/bin/bash
# tests/e2e/run.sh - cert-rotator end to end on a real booted systemd.
#
# Boots a debootstrapped Debian with systemd-nspawn, installs the .deb built by
# packaging/build.sh with dpkg, lays down a kubeadm node with the fixture builder
# (`cert-rotator demo --build-only --keep /`: apiserver in its last 20%, a 91-day
# kubelet client certificate with 25 days left, scheduler.conf expired), starts the
# stand-ins (kubelet.service serving kubelet.crt on :10250; a static-pod stand-in
# that restarts, when a manifest's content changes, the real etcd run from
# etcd.yaml's flags, an `openssl s_server` for apiserver.crt on :6443 that requires
# client certificates of ca.crt, and /healthz servers for the controller manager
# and scheduler), then drives the real units and checks the outcome, with the real
# clients too (clients.sh): etcdctl with the renewed etcd client certificates,
# kubectl with every renewed kubeconfig, node_exporter serving the agent's
# textfile. Prints "N passed, N failed"; tears the container down even on failure
# and prints its journal then. Needs root, debootstrap, systemd-container, and on
# the host promtool (Debian package prometheus), etcd and etcdctl (etcd-server,
# etcd-client), prometheus-node-exporter and kubectl, bound read-only into the
# container (e2e_bind_host_binary).
#
# Stand-ins: the apiserver (`openssl s_server`), controller-manager and scheduler
# (/healthz servers) and the kubelet (a script) are imitations. What they stand for
# is proven on the real components in tests/k8s: a pass renewing everything on a
# running kubeadm control plane, which components restart, kubectl with every
# renewed kubeconfig, and the revive of a node whose certificates all expired
# (controlplane.sh). Kept here for what the real node cannot give: the fixture's
# node shapes (a 91-day kubelet client certificate, an expired scheduler.conf,
# extras), node_exporter and the metrics, and a run without the Go-built components.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
# shellcheck source-path=SCRIPTDIR source=clients.sh
. "$here/clients.sh"
e2e_trap_exit

deb=$(ls -t "$repo"/target/packages/cert-rotator_*_amd64.deb 2>/dev/null | head -n1)
if [[ -z $deb ]]; then
	e2e_check "a .deb from packaging/build.sh exists" false
	e2e_summary
	exit 1
fi
if ! e2e_clients_bind; then
	e2e_check "etcd, etcdctl, kubectl and prometheus-node-exporter are installed on the host" false
	e2e_summary
	exit 1
fi
if ! e2e_rootfs >/dev/null || ! e2e_boot; then
	e2e_check "container boots to running/degraded" false
	e2e_summary
	exit 1
fi
e2e_check "container boots to running/degraded" true

# serial_served PORT|HOST:PORT (host default 127.0.0.1)
serial_served() {
	local at=$1
	[[ $at == *:* ]] || at=127.0.0.1:$at
	e2e_exec sh -c "openssl s_client -connect $at </dev/null 2>/dev/null | openssl x509 -noout -serial" | cut -d= -f2
}
serial_file() { e2e_exec openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
invocation() { e2e_exec systemctl show -P InvocationID "$1"; }
restarts() { e2e_exec cat "/run/static-pods/$1.starts" 2>/dev/null || echo 0; }
eq() { [[ -n $1 && $1 == "$2" ]]; }
served_is() { eq "$(serial_served "$1")" "$2"; }
due_count() { e2e_exec cert-rotator status --json | grep -c '"due": true'; }
ne() { [[ -n $1 && -n $2 && $1 != "$2" ]]; }
gt() { [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] && (($1 > $2)); }
fails() { ! "$@"; }
# grep reads all its input (no -q): under pipefail, an early exit of grep -q could
# fail the pipeline with the writer's SIGPIPE.
timer_listed() { e2e_exec systemctl list-timers --all --no-pager | grep cert-rotator.timer >/dev/null; }
manifests_clean() {
	[[ $(e2e_exec ls -A /etc/kubernetes/manifests | tr '\n' ' ') == 'etcd.yaml kube-apiserver.yaml kube-controller-manager.yaml kube-scheduler.yaml ' ]]
}
journal_fields() {
	e2e_exec journalctl -u cert-rotator -o json --no-pager | grep '"CERT_NAME":"apiserver"' |
		grep '"SERIAL"' | grep '"NOT_AFTER"' | grep '"ACTION":"renew"' | grep '"MESSAGE_ID":"6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a01"' >/dev/null
}
msg_has() { e2e_exec journalctl --no-pager -o cat "MESSAGE_ID=$1" | grep "$2" >/dev/null; }
promtool_ok() { promtool check metrics <"$1"; }
key_matches() {
	[[ $(e2e_exec openssl x509 -in /etc/kubernetes/pki/apiserver.crt -noout -pubkey) == "$(e2e_exec openssl pkey -in /etc/kubernetes/pki/apiserver.key -pubout)" ]]
}

# --- install and node --------------------------------------------------------
e2e_copy_in "$deb" /opt/cert-rotator.deb
e2e_copy_in "$here/standins" /opt/standins
e2e_check "dpkg -i installs the package" e2e_exec dpkg -i /opt/cert-rotator.deb
# cert-renew is the cert-rotator executable under another name (src/main.rs).
e2e_check "/usr/bin/cert-renew is a symlink to cert-rotator" \
	eq "$(e2e_exec readlink /usr/bin/cert-renew)" cert-rotator
e2e_check "cert-renew run through it is cert-renew" \
	e2e_exec sh -c 'cert-renew --help | grep -q "^Usage: cert-renew "'
# The unit caps its memory: a second line of defence behind the node gate's read cap.
e2e_check "the unit caps its memory (MemoryMax=256M)" \
	eq "$(e2e_exec systemctl show -P MemoryMax cert-rotator.service)" 268435456
e2e_check "installing starts no pass" \
	fails e2e_exec test -e /var/lib/cert-rotator/last-pass.json
e2e_check "fixture builder lays down a kubeadm node" \
	e2e_exec cert-rotator demo --build-only --keep /
# One pass may restart everything in this test; a short gap keeps it quick.
e2e_exec sh -c 'printf "[run]\nmax_restarts_per_pass = 5\nmin_restart_gap_seconds = 2\nverify_timeout_seconds = 60\n" >/etc/cert-rotator/config.d/50-e2e.toml'
# The metrics textfile where Debian's prometheus-node-exporter reads textfiles (the
# default one, in the 0700 state directory, is unreadable to node_exporter's own user).
textfile_dir=/var/lib/prometheus/node-exporter
e2e_exec mkdir -p "$textfile_dir"
e2e_exec sh -c "printf 'metrics_file = \"$textfile_dir/cert-rotator.prom\"\n' >/etc/cert-rotator/config.d/40-e2e-metrics.toml"
# No drop-in: the packaged unit's ReadWritePaths= lets it write there, which this proves.
# The fixture's advertise address, as a real node has it on an interface.
e2e_check "the node's advertise address 10.0.0.10 is up" e2e_exec ip addr add 10.0.0.10/32 dev lo
e2e_check "stand-ins installed and started" e2e_exec /opt/standins/install.sh --now
e2e_check "apiserver stand-in serves apiserver.crt" \
	e2e_wait_for 20 served_is 6443 "$(serial_file /etc/kubernetes/pki/apiserver.crt)"
e2e_check "kubelet stand-in serves kubelet.crt" \
	e2e_wait_for 20 served_is 10250 "$(serial_file /var/lib/kubelet/pki/kubelet.crt)"
e2e_check "three certificates are due before the pass" eq "$(due_count)" 3
e2e_check "real etcd serves etcd/server.crt" \
	e2e_wait_for 30 served_is 2379 "$(serial_file /etc/kubernetes/pki/etcd/server.crt)"
e2e_check "... answers etcdctl with healthcheck-client: healthy" e2e_wait_for 30 etcd_healthy healthcheck-client
e2e_check "... and apiserver-etcd-client can put and get" \
	etcd_put_get apiserver-etcd-client /cert-rotator-e2e/before-pass one
e2e_check "kubectl with admin.conf gets through the apiserver stand-in" kubectl_ok /etc/kubernetes/admin.conf
e2e_check "... which refuses the expired scheduler.conf" kubectl_refused /etc/kubernetes/scheduler.conf
# Every kubeconfig and etcd's certificates due too, so that the pass renews what the
# real clients check: the fixture's leaves have 334 of 365 days left.
e2e_exec sh -c 'for t in etcd/server etcd/healthcheck-client apiserver-etcd-client admin.conf controller-manager.conf /root/.kube/config; do
	printf "[targets.\"%s\"]\nremaining_days = 340\n" "$t"; done >/etc/cert-rotator/config.d/55-e2e-due.toml'
e2e_check "nine certificates are due with the clients' ones" eq "$(due_count)" 9

etcd_serial_before=$(serial_file /etc/kubernetes/pki/etcd/server.crt)
etcd_pid_before=$(e2e_exec cat /run/static-pods/etcd.pid)
etcd_starts_before=$(restarts etcd)
etcd_clients_before="$(serial_file /etc/kubernetes/pki/apiserver-etcd-client.crt) $(serial_file /etc/kubernetes/pki/etcd/healthcheck-client.crt)"

kubelet_before=$(invocation kubelet.service)
api_serial_before=$(serial_file /etc/kubernetes/pki/apiserver.crt)
api_starts_before=$(restarts kube-apiserver)

# --- the timer and the service ---------------------------------------------------
e2e_check "systemctl enable --now cert-rotator.timer" e2e_exec systemctl enable --now cert-rotator.timer
e2e_check "systemctl list-timers lists it" \
	timer_listed
e2e_check "systemctl start cert-rotator.service succeeds" e2e_exec systemctl start cert-rotator.service
e2e_check "nothing is due afterwards" eq "$(due_count)" 0
for f in /etc/kubernetes/pki/apiserver.crt; do
	e2e_check "renewed $f verifies with openssl" e2e_exec openssl verify -CAfile /etc/kubernetes/pki/ca.crt "$f"
done
e2e_check "renewed scheduler.conf client certificate verifies with openssl" \
	e2e_exec sh -c 'grep client-certificate-data /etc/kubernetes/scheduler.conf | awk "{print \$2}" | base64 -d >/tmp/s.pem && openssl verify -CAfile /etc/kubernetes/pki/ca.crt /tmp/s.pem'
e2e_check "renewed kubelet client certificate verifies, behind its symlink" \
	e2e_exec sh -c 'test -L /var/lib/kubelet/pki/kubelet-client-current.pem && openssl verify -CAfile /etc/kubernetes/pki/ca.crt /var/lib/kubelet/pki/kubelet-client-current.pem'
kubelet_after=$(invocation kubelet.service)
e2e_check "kubelet.service has a new InvocationID" ne "$kubelet_after" "$kubelet_before"
api_serial_after=$(serial_file /etc/kubernetes/pki/apiserver.crt)
e2e_check "apiserver.crt has a new serial" ne "$api_serial_after" "$api_serial_before"
e2e_check "the apiserver stand-in serves the new serial" served_is 6443 "$api_serial_after"
e2e_check "kube-apiserver.yaml carries the certs-hash annotation" \
	e2e_exec grep -q 'cert-rotator.k8s.io/certs-hash:' /etc/kubernetes/manifests/kube-apiserver.yaml
e2e_check "no stray file in the manifests directory" \
	manifests_clean
e2e_check "journal has structured fields (CERT_NAME, SERIAL, COMPONENT, ACTION, MESSAGE_ID)" \
	journal_fields
e2e_check "journalctl MESSAGE_ID= finds the restarts" \
	msg_has 6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a02 'restarted kube-apiserver'
e2e_check "journalctl MESSAGE_ID= finds the verifications" \
	msg_has 6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a03 'kube-apiserver serves serial'
metrics=$E2E_ROOT$textfile_dir/cert-rotator.prom
e2e_check "the metrics file exists" test -s "$metrics"
e2e_check "promtool check metrics accepts it" promtool_ok "$metrics"
e2e_check "metrics say the pass succeeded" grep -q '^cert_rotator_pass_success 1' "$metrics"

# --- the real clients after the pass -----------------------------------------------
etcd_serial_after=$(serial_file /etc/kubernetes/pki/etcd/server.crt)
e2e_check "etcd/server.crt has a new serial" ne "$etcd_serial_after" "$etcd_serial_before"
e2e_check "real etcd serves it on 127.0.0.1:2379" served_is 2379 "$etcd_serial_after"
e2e_check "... and on the advertise address 10.0.0.10:2379" served_is 10.0.0.10:2379 "$etcd_serial_after"
e2e_check "... without a restart (same etcd process, no new start)" \
	eq "$(e2e_exec cat /run/static-pods/etcd.pid) $(restarts etcd) $(e2e_exec cat "/proc/$etcd_pid_before/comm")" \
	"$etcd_pid_before $etcd_starts_before etcd"
e2e_check "apiserver-etcd-client and healthcheck-client have new serials" \
	ne "$(serial_file /etc/kubernetes/pki/apiserver-etcd-client.crt) $(serial_file /etc/kubernetes/pki/etcd/healthcheck-client.crt)" "$etcd_clients_before"
e2e_check "etcdctl with the renewed apiserver-etcd-client: endpoint health" etcd_healthy apiserver-etcd-client
e2e_check "... put and get" etcd_put_get apiserver-etcd-client /cert-rotator-e2e/after-pass two
e2e_check "... and what was put before the pass is there" etcd_get_is apiserver-etcd-client /cert-rotator-e2e/before-pass one
e2e_check "etcdctl with the renewed healthcheck-client: endpoint health" etcd_healthy healthcheck-client
e2e_check "... and get" etcd_get_is healthcheck-client /cert-rotator-e2e/after-pass two
for kc in /etc/kubernetes/{admin,super-admin,controller-manager,scheduler,kubelet}.conf /root/.kube/config; do
	[[ $kc == */super-admin.conf ]] && ! e2e_exec test -e "$kc" && continue # not on every node
	e2e_check "kubectl with the renewed ${kc#/etc/kubernetes/} authenticates to the apiserver stand-in" kubectl_ok "$kc"
done
foreign_kubeconfig /etc/kubernetes/admin.conf /tmp/foreign-ca.conf
e2e_check "... which refuses a client certificate of another CA" kubectl_refused /tmp/foreign-ca.conf

# --- node_exporter serves the textfile ----------------------------------------------
# Unprivileged, as Debian's unit runs it (User=prometheus); only the textfile
# collector (and its own process metrics), which is what is under test.
e2e_exec systemd-run --unit=node-exporter -p DynamicUser=yes \
	/usr/local/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:9100 \
	--collector.disable-defaults --collector.textfile \
	--collector.textfile.directory="$textfile_dir" >/dev/null
scraped=$E2E_DIR/node-exporter.prom
scrape_to() { scrape 127.0.0.1:9100 /metrics >"$scraped"; }
has_line() { grep -E "$1" "$scraped" >/dev/null; }
e2e_check "node_exporter serves /metrics" e2e_wait_for 20 scrape_to
e2e_check "... having read the agent's textfile without error" has_line '^node_textfile_scrape_error 0$'
e2e_check "... serving its pass result" has_line '^cert_rotator_pass_success 1$'
e2e_check "... and the apiserver certificate's expiry" \
	has_line '^cert_rotator_certificate_not_after_seconds\{.*name="apiserver".*\} [0-9.e+]+$'
e2e_check "... and x509-certificate-exporter's x509_cert_not_after for apiserver.crt" \
	has_line '^x509_cert_not_after\{.*filepath="/etc/kubernetes/pki/apiserver.crt".*subject_CN="kube-apiserver".*\} [0-9.e+]+$'
e2e_check "promtool check metrics accepts what node_exporter serves" promtool_ok "$scraped"

# --- a second pass does nothing ---------------------------------------------------
api_starts_mid=$(restarts kube-apiserver)
e2e_check "a second start succeeds" e2e_exec systemctl start cert-rotator.service
e2e_check "... and restarts no kubelet" eq "$(invocation kubelet.service)" "$kubelet_after"
e2e_check "... and no static pod" eq "$(restarts kube-apiserver)" "$api_starts_mid"
e2e_check "... and renews nothing" eq "$(serial_file /etc/kubernetes/pki/apiserver.crt)" "$api_serial_after"
e2e_check "the first pass restarted the apiserver stand-in" gt "$api_starts_mid" "$api_starts_before"

# --- rollback against a real process that does not reload ------------------------
# The static-pod stand-in stops; a plain s_server keeps serving the current
# apiserver.crt and never reloads. The apiserver becomes due through config.
e2e_exec systemctl stop static-pods.service
# It answers /readyz and /healthz "ok" as kube-apiserver does (`-WWW` serves ./readyz).
e2e_exec sh -c 'mkdir -p /run/stale-apiserver && printf ok >/run/stale-apiserver/readyz && printf ok >/run/stale-apiserver/healthz'
e2e_exec systemd-run --unit=stale-apiserver -p WorkingDirectory=/run/stale-apiserver \
	openssl s_server -quiet -WWW -accept 6443 \
	-cert /etc/kubernetes/pki/apiserver.crt -key /etc/kubernetes/pki/apiserver.key >/dev/null
e2e_wait_for 10 served_is 6443 "$api_serial_after" >/dev/null
# Stopping the static pods stopped etcd, where the restart lock lives: a healthy
# apiserver would wait for the lock (fail closed, tested in tests/coordination.rs);
# this section is about the rollback, so it runs without the lock.
# (etcd stays down to the end of this script, so the rest runs without the lock too.)
e2e_exec sh -c 'printf "[coordination]\nbackend = \"none\"\n" >/etc/cert-rotator/config.d/61-e2e-no-lock.toml'
e2e_exec sh -c 'printf "[targets.apiserver]\nremaining_days = 400\n[run]\nverify_timeout_seconds = 8\n" >/etc/cert-rotator/config.d/60-e2e-rollback.toml'
e2e_check "a pass whose apiserver keeps the old certificate fails" \
	fails e2e_exec systemctl start cert-rotator.service
e2e_check "... and restores the previous apiserver.crt" eq "$(serial_file /etc/kubernetes/pki/apiserver.crt)" "$api_serial_after"
e2e_check "... which is what is served" served_is 6443 "$api_serial_after"
e2e_check "... saying so in the journal (rolled back)" \
	msg_has 6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a04 'restored the previous certificates'
e2e_check "... with the key matching its certificate" \
	key_matches
e2e_exec rm -f /etc/cert-rotator/config.d/60-e2e-rollback.toml

# --- renew on request: advice by default, --restart through the same sequencer ---
kubelet_serial_before=$(serial_file /var/lib/kubelet/pki/kubelet.crt)
kubelet_run_before=$(invocation kubelet.service)
e2e_check "renew kubelet.crt says the kubelet must restart" \
	e2e_exec sh -c 'cert-rotator renew kubelet.crt | grep -q "^  kubelet (restart kubelet.service"'
e2e_check "... and restarts nothing itself" eq "$(invocation kubelet.service)" "$kubelet_run_before"
e2e_check "renew kubelet.crt --restart restarts and verifies the kubelet" \
	e2e_exec cert-rotator renew kubelet.crt --restart
e2e_check "... a new kubelet run" ne "$(invocation kubelet.service)" "$kubelet_run_before"
e2e_check "... serving the new kubelet.crt" \
	served_is 10250 "$(serial_file /var/lib/kubelet/pki/kubelet.crt)"
e2e_check "... which is not the one before" \
	ne "$(serial_file /var/lib/kubelet/pki/kubelet.crt)" "$kubelet_serial_before"

# --- cert-renew, the manual tool, through the packaged symlink -------------------
proxy_serial_before=$(serial_file /etc/kubernetes/pki/front-proxy-client.crt)
e2e_check "cert-renew renews front-proxy-client.crt from its CA" \
	e2e_exec cert-renew --ca-cert /etc/kubernetes/pki/front-proxy-ca.crt \
	--ca-key /etc/kubernetes/pki/front-proxy-ca.key /etc/kubernetes/pki/front-proxy-client.crt
e2e_check "... which has a new serial" \
	ne "$(serial_file /etc/kubernetes/pki/front-proxy-client.crt)" "$proxy_serial_before"
e2e_check "... and verifies with openssl" \
	e2e_exec openssl verify -CAfile /etc/kubernetes/pki/front-proxy-ca.crt /etc/kubernetes/pki/front-proxy-client.crt

# --- removal ----------------------------------------------------------------------
e2e_check "dpkg -r removes the package" e2e_exec dpkg -r cert-rotator
e2e_check "... and the cert-renew symlink" \
	fails e2e_exec test -L /usr/bin/cert-renew
e2e_check "... leaving the node's certificates in place" \
	e2e_exec openssl verify -CAfile /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/apiserver.crt
e2e_check "... and the state directory" e2e_exec test -d /var/lib/cert-rotator/backup

e2e_summary
