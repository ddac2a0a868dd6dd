#!/bin/bash
# tests/k8s/csr.sh - `cert-rotator signer` on a real kubeadm control plane (issue 19, part
# 1): the seed's "Manage TLS Certificates in a Cluster" workflow replayed literally, with
# the packaged signer unit playing the signer the seed's administrator plays by hand.
#   1. cfssl genkey the seed's request; kubectl apply it as a certificates.k8s.io/v1 CSR
#      for signer example.com/serving; kubectl certificate approve; `kubectl get csr`
#      shows Approved,Issued within seconds; the certificate verifies against the CA made
#      with `cfssl gencert -initca` (openssl verify), carries the profile's usages, the
#      request's SANs and key, and ends no later than the CA; `kubectl create secret tls`
#      takes it with the key.
#   2. never signed: an unapproved CSR, a denied one; failed with a reason: client auth
#      under the server-only profile, an Ed25519 key the profile does not allow, an
#      RSA-1024 key; left pending with the reason in the journal: a signer whose CA file
#      is missing. spec.expirationSeconds is honoured.
#   2b. a [[signer]] whose CA is a cfssl server (tests/k8s/csr_cfssl.sh): the seed's
#      workflow issued through a real `cfssl serve`; a certificate the checks refuse
#      fails the CSR with the reason; cfssl down, the CSR waits and is issued once it is back.
#   3. one signer at a time: two signer processes share the Lease, one holds it, each
#      CSR gets exactly one certificate; the holder stopped, the other takes over; a CSR
#      approved while no signer runs is signed when one starts; two signers forced to
#      lead at once (two Leases) on the same CSRs: the API server refuses one write
#      (409) and each CSR gets exactly one certificate (the status write is conditional
#      on resourceVersion).
#   4. the API server restarts: the signer keeps running and signs what is approved next.
#   5. csr.approve_kubelet_serving with the real kubelet (serverTLSBootstrap: true): its
#      serving CSR approved by cert-rotator, signed by the controller-manager; the API
#      server with --kubelet-certificate-authority reaches the kubelet (it could not with
#      the self-signed kubelet.crt); a kubelet-serving CSR from an administrator, and the
#      node's own for a foreign IP, are denied with the reason.
#   5a. [kubelet] serving: "cluster-ca" re-issues the self-signed kubelet.crt from the
#       cluster CA at the next pass (not due by its dates), the kubelet reloads it, the
#       verifying API server reaches it; "csr" gets it through the certificates API with
#       kubelet.conf's credentials (approved by the approver, signed by the
#       controller-manager), key made on the node; with the API server stopped (end of
#       6) the pass fails kubelet.crt within serving_timeout_seconds, changes nothing of
#       it and renews the rest; so it does when nobody approves (the CSR named, left
#       pending) and when the API server hangs (SIGSTOP).
#   5b. the shipped RBAC manifest: a signer with only that identity signs.
#   6. [events]: a pass that renews and restarts leaves Events on the Node (kubectl get
#      events); with the API server stopped the pass succeeds, at most the timeout slower.
#   7. [events] node_summary: after a pass, `kubectl get node -L` shows the labels
#      cert-rotator.io/next-expiry (the date of the earliest notAfter `status --json`
#      shows) and cert-rotator.io/due (its count of due certificates), and the annotation
#      cert-rotator.io/certificates is JSON naming every certificate; set with
#      kubelet.conf's credentials through NodeRestriction (which refuses the same node a
#      kubernetes.io label, and any label on another Node); with the API server stopped
#      the pass succeeds, at most the timeout slower.
#   8. the approver's kubelet_serving_dns_patterns and kubelet_serving_ip_prefixes: the
#      node's own CSR for a name of the pattern and an address of the prefix is approved
#      and issued; one for another node's name under the pattern, or an address outside
#      the prefixes, is denied naming the SAN.
# cfssl runs on the host (the requester's and the administrator's machine in the seed);
# kubectl, the API server and the signer in the container. Prints "N passed, N failed";
# the seconds from approval to Issued go to $K8S_RESULTS.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../e2e/lib.sh
. "$repo/tests/e2e/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
k8s_trap_exit
results=${K8S_RESULTS:-$repo/target/k8s-results.txt}
mkdir -p "$(dirname "$results")"
eq() { [[ -n $1 && $1 == "$2" ]]; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
for t in cfssl cfssljson jq; do
	command -v "$t" >/dev/null || { e2e_log "$t missing on the host (apt-get install golang-cfssl jq)"; exit 1; }
done

if ! k8s_boot; then
	e2e_check "kubeadm init makes a control-plane node on the real components" false
	e2e_summary
	exit 1
fi
e2e_check "kubeadm init makes a control-plane node on the real components; the Node is Ready" true

# The host side's files (the seed's requester and administrator): removed with the machine.
work=$E2E_DIR/host-side
mkdir -p "$work" && cd "$work" || exit 1

# --- the CA, as the seed's administrator makes it, and the signer's configuration -----
cat <<EOC | cfssl gencert -initca - 2>/dev/null | cfssljson -bare ca
{
  "CN": "My Example Signer",
  "key": {
    "algo": "rsa",
    "size": 2048
  }
}
EOC
e2e_exec mkdir -p /etc/example-ca
e2e_copy_in ca.pem /etc/example-ca/ca.pem
e2e_copy_in ca-key.pem /etc/example-ca/ca-key.pem
e2e_exec chmod 0600 /etc/example-ca/ca-key.pem
# The seed's server-signing-config.json profile: usages signing, key encipherment,
# server auth; expiry 876000h (100 years: the CA's own end caps it).
e2e_exec sh -c 'cat >/etc/cert-rotator/config.d/60-signer.toml' <<'EOC'
[csr]
poll_seconds = 1
lease_duration_seconds = 6
approve_kubelet_serving = true
timeout_seconds = 4

[[signer]]
name = "example.com/serving"
ca_cert = "/etc/example-ca/ca.pem"
ca_key = "/etc/example-ca/ca-key.pem"
usages = ["signing", "key encipherment", "server auth"]
max_duration_seconds = 3153600000

[[signer]]
name = "example.com/no-ca"
ca_cert = "/etc/example-ca/missing.pem"
ca_key = "/etc/example-ca/missing-key.pem"
usages = ["server auth"]
EOC
e2e_check "cert-rotator config check accepts the [[signer]] tables" \
	e2e_exec sh -c 'cert-rotator config check >/dev/null'
e2e_check "the signer unit is shipped disabled" \
	eq "$(e2e_exec systemctl is-enabled cert-rotator-signer.service)" disabled
e2e_exec systemctl start cert-rotator-signer.service
e2e_check "cert-rotator-signer.service runs" \
	e2e_wait_for 10 eval '[[ $(e2e_exec systemctl is-active cert-rotator-signer.service) == active ]]'

# --- 1. the seed's workflow ----------------------------------------------------------
cat <<EOC | cfssl genkey - 2>/dev/null | cfssljson -bare server
{
  "hosts": [
    "my-svc.my-namespace.svc.cluster.local",
    "my-pod.my-namespace.pod.cluster.local",
    "192.0.2.24",
    "10.0.34.2"
  ],
  "CN": "my-pod.my-namespace.pod.cluster.local",
  "key": {
    "algo": "ecdsa",
    "size": 256
  }
}
EOC
kubectl_in() { e2e_exec kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"; }
cat <<EOC | kubectl_in apply -f - >/dev/null
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: my-svc.my-namespace
spec:
  request: $(cat server.csr | base64 | tr -d '\n')
  signerName: example.com/serving
  usages:
  - digital signature
  - key encipherment
  - server auth
EOC
condition() { kubectl_in get csr "$1" --no-headers -o custom-columns=C:.status.conditions[*].type 2>/dev/null; }
certificate() { kubectl_in get csr "$1" -o jsonpath='{.status.certificate}' 2>/dev/null; }
sleep 3
e2e_check "kubectl get csr: my-svc.my-namespace is Pending before approval, unsigned" \
	eval '[[ -z $(certificate my-svc.my-namespace) && $(kubectl_in get csr my-svc.my-namespace --no-headers) == *Pending* ]]'
approved_at=$(date +%s.%N)
kubectl_in certificate approve my-svc.my-namespace >/dev/null
issued() { [[ $(kubectl_in get csr "$1" --no-headers 2>/dev/null) == *Approved,Issued* ]]; }
e2e_check "kubectl get csr shows Approved,Issued within 10 s of kubectl certificate approve" \
	e2e_wait_for 10 issued my-svc.my-namespace
printf 'csr_issued_seconds %s\n' "$(seconds "$approved_at" "$(date +%s.%N)")" | tee -a "$results" >&2
kubectl_in get csr my-svc.my-namespace -o jsonpath='{.status.certificate}' | base64 --decode >server.crt
e2e_check "the certificate verifies against the CA (openssl verify -CAfile ca.pem)" \
	eval 'openssl verify -no-CApath -no-CAstore -CAfile ca.pem server.crt >/dev/null'
text=$(openssl x509 -in server.crt -noout -text 2>/dev/null)
e2e_check "it carries the profile's usages: Digital Signature, Key Encipherment; TLS Web Server Authentication; CA:FALSE" \
	eval '[[ $text == *"Digital Signature, Key Encipherment"* && $text == *"TLS Web Server Authentication"* && $text != *"Client Authentication"* && $text == *"CA:FALSE"* ]]'
e2e_check "it carries the request's subject and SANs" \
	eval '[[ $text == *"CN = my-pod.my-namespace.pod.cluster.local"* && $text == *"DNS:my-svc.my-namespace.svc.cluster.local"* && $text == *"DNS:my-pod.my-namespace.pod.cluster.local"* && $text == *"IP Address:192.0.2.24"* && $text == *"IP Address:10.0.34.2"* ]]'
e2e_check "it is for the request's key (server-key.pem)" \
	eq "$(openssl x509 -in server.crt -noout -pubkey)" "$(openssl pkey -in server-key.pem -pubout)"
end_of() { date -u -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
e2e_check "the 100-year profile is capped at the CA's end" eq "$(end_of server.crt)" "$(end_of ca.pem)"
e2e_exec sh -c 'cat >/tmp/server.crt' <server.crt
e2e_exec sh -c 'cat >/tmp/server-key.pem' <server-key.pem
e2e_check "kubectl create secret tls server --cert server.crt --key server-key.pem" \
	kubectl_in create secret tls server --cert /tmp/server.crt --key /tmp/server-key.pem

# --- 2. what is never signed -----------------------------------------------------------
# apply_csr NAME KEY USAGES [EXPIRATION]: an openssl request (KEY: ec for P-256, else
# openssl req -newkey's argument) for $SIGNER (default example.com/serving).
apply_csr() {
	local name=$1 usages=$3 exp=${4:-} newkey=(-newkey "$2")
	[[ $2 == ec ]] && newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
	openssl req -new "${newkey[@]}" -nodes -keyout "$name.key" -subj "/CN=$name" -out "$name.csr" 2>/dev/null || return 1
	{
		printf 'apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: %s\nspec:\n' "$name"
		printf '  request: %s\n  signerName: %s\n  usages: [%s]\n' "$(base64 -w0 "$name.csr")" "${SIGNER:-example.com/serving}" "$usages"
		if [[ -n $exp ]]; then printf '  expirationSeconds: %s\n' "$exp"; fi
	} | kubectl_in apply -f - >/dev/null
}
failed_with() { # failed_with NAME WORDS: condition Failed, its message has WORDS, no certificate
	local msg
	msg=$(kubectl_in get csr "$1" -o jsonpath='{.status.conditions[?(@.type=="Failed")].message}' 2>/dev/null)
	[[ -n $msg && $msg == *"$2"* && -z $(certificate "$1") ]] || return 1
	e2e_log "$1: Failed: $msg"
}
# forge NAME KUBECONFIG SAN: a kubelet-serving CSR for this node's name, created with
# KUBECONFIG's credentials; denied_with NAME WORDS: Denied, its message has WORDS.
forge() { # forge NAME KUBECONFIG SAN
	e2e_exec sh -euc '
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /tmp/$1.key \
			-subj "/O=system:nodes/CN=system:node:$4" -addext "subjectAltName=$3" -out /tmp/$1.csr 2>/dev/null
		cat <<EOC | kubectl --kubeconfig "$2" create -f - >/dev/null
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: $1
spec:
  request: $(base64 -w0 /tmp/$1.csr)
  signerName: kubernetes.io/kubelet-serving
  usages: [digital signature, server auth]
EOC' _ "$1" "$2" "$3" "$K8S_NODE"
}
denied_with() {
	local msg
	msg=$(kubectl_in get csr "$1" -o jsonpath='{.status.conditions[?(@.type=="Denied")].message}' 2>/dev/null)
	[[ -n $msg && $msg == *"$2"* && -z $(certificate "$1") ]] || return 1
	e2e_log "$1: Denied: $msg"
}
ec=ec
apply_csr unapproved "$ec" '"digital signature", "server auth"'
apply_csr denied "$ec" '"digital signature", "server auth"'
kubectl_in certificate deny denied >/dev/null
apply_csr wants-client-auth "$ec" '"digital signature", "key encipherment", "client auth"'
apply_csr ed25519-key ed25519 '"digital signature", "server auth"'
apply_csr rsa-1024 rsa:1024 '"digital signature", "key encipherment", "server auth"'
apply_csr one-hour "$ec" '"digital signature", "server auth"' 3600
SIGNER=example.com/no-ca apply_csr no-ca "$ec" '"server auth"'
for n in wants-client-auth ed25519-key rsa-1024 one-hour no-ca; do kubectl_in certificate approve "$n" >/dev/null; done
e2e_check "client auth under the server-only profile: Failed, naming the usage" \
	e2e_wait_for 10 failed_with wants-client-auth "client auth are not allowed"
e2e_check "an Ed25519 key the profile does not allow: Failed, naming the key" \
	e2e_wait_for 10 failed_with ed25519-key "Ed25519"
e2e_check "an RSA-1024 key: Failed, naming the key size" \
	e2e_wait_for 10 failed_with rsa-1024 "RSA-1024"
e2e_check "kubectl get csr shows Approved,Failed" \
	eval '[[ $(kubectl_in get csr wants-client-auth --no-headers) == *Approved,Failed* ]]'
e2e_check "spec.expirationSeconds 3600 is honoured" e2e_wait_for 10 issued one-hour
certificate one-hour | base64 -d >one-hour.crt
life=$(($(end_of one-hour.crt) - $(date +%s)))
e2e_check "... the certificate ends in an hour ($life s)" eval '((life > 3500 && life <= 3600))'
sleep 3
e2e_check "the unapproved CSR stays unsigned and without a condition" \
	eval '[[ -z $(certificate unapproved) && $(condition unapproved) == "<none>" ]]'
e2e_check "the denied CSR stays unsigned, Denied only" \
	eval '[[ -z $(certificate denied) && $(condition denied) == Denied ]]'
e2e_check "the signer whose CA file is missing leaves its CSR unsigned and pending" \
	eval '[[ -z $(certificate no-ca) && $(condition no-ca) == Approved ]]'
e2e_check "... and says why in the journal, naming the file" \
	eval 'e2e_exec journalctl -u cert-rotator-signer.service --no-pager -o cat | grep -q "cannot sign: the CA cannot be used: /etc/example-ca/missing.pem"'
e2e_check "the signer is still running after all of that" \
	eq "$(e2e_exec systemctl is-active cert-rotator-signer.service)" active

# --- 2b. a [[signer]] through a cfssl server ------------------------------------------
# shellcheck source-path=SCRIPTDIR source=csr_cfssl.sh
. "$here/csr_cfssl.sh"
csr_cfssl_section

# --- 3. one signer at a time -----------------------------------------------------------
# issued_by CSR: how many "issued" records all signer processes wrote for CSR.
issued_by() {
	e2e_exec journalctl --no-pager -o json SYSLOG_IDENTIFIER=cert-rotator 2>/dev/null |
		jq -r --arg c "$1" 'select(.MESSAGE == "issued" and .CSR == $c) | .CSR' | wc -l
}
e2e_exec systemd-run --quiet --unit=signer-b /usr/bin/cert-rotator signer
sleep 2
holder() { kubectl_in -n kube-system get lease cert-rotator-signer -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
first=$(holder)
e2e_check "two signers share the Lease: one holds it ($first)" eval '[[ -n $first ]]'
for i in 1 2 3 4 5; do apply_csr "pair-$i" "$ec" '"digital signature", "server auth"'; done
for i in 1 2 3 4 5; do kubectl_in certificate approve "pair-$i" >/dev/null; done
all_issued() { local i; (($#)) || return 1; for i in "$@"; do issued "$i" || return 1; done; }
e2e_check "five CSRs approved with two signers running are all issued" \
	e2e_wait_for 15 all_issued pair-1 pair-2 pair-3 pair-4 pair-5
once() { local i; (($#)) || return 1; for i in "$@"; do [[ $(issued_by "$i") == 1 ]] || { e2e_log "$i: issued $(issued_by "$i") times"; return 1; }; done; }
e2e_check "... each exactly once (one \"issued\" record per CSR across both signers)" once pair-1 pair-2 pair-3 pair-4 pair-5
# The holder stops; the other takes the Lease over once it has seen it unrenewed for
# lease_duration_seconds.
if [[ $first == *_"$(e2e_exec systemctl show -P MainPID cert-rotator-signer.service)" ]]; then
	e2e_exec systemctl stop cert-rotator-signer.service
else
	e2e_exec systemctl stop signer-b.service
fi
apply_csr failover "$ec" '"digital signature", "server auth"'
kubectl_in certificate approve failover >/dev/null
e2e_check "the holder stopped, the other signer takes the Lease over and signs" \
	e2e_wait_for 30 eval 'issued failover && [[ $(holder) != "$first" ]]'
e2e_exec systemctl stop cert-rotator-signer.service signer-b.service 2>/dev/null
apply_csr while-down "$ec" '"digital signature", "server auth"'
kubectl_in certificate approve while-down >/dev/null
sleep 2
e2e_check "a CSR approved while no signer runs stays unsigned" eval '[[ -z $(certificate while-down) ]]'
e2e_exec systemctl start cert-rotator-signer.service
e2e_check "... and is signed once a signer starts again" e2e_wait_for 30 issued while-down
# Two signers forced to lead at once, each on a fresh Lease of its own, started together on
# the same approved CSRs: both sign, and the API server refuses the second status write of
# each CSR (409, resourceVersion). Each signer runs one round. Repeated (fresh CSRs and
# Leases) until a conflict was seen, at most three times: when one signer happens to finish
# before the other lists, there is no race to judge.
e2e_exec systemctl stop cert-rotator-signer.service signer-b.service 2>/dev/null
race_conflicts=0 race_names=()
race() { # race N: one attempt; the CSRs race-N-1..24 (enough writes for the two to overlap)
	local n=$1 x i names=()
	for x in a b; do
		e2e_exec sh -c 'sed "s/^lease_duration_seconds = 6\$/&\nlease_name = \"$1\"/" /etc/cert-rotator/config.d/60-signer.toml >"/etc/cert-rotator/$1.toml"' _ "race-$x-$n"
	done
	for i in $(seq 1 24); do apply_csr "race-$n-$i" "$ec" '"digital signature", "server auth"' && names+=("race-$n-$i"); done
	kubectl_in certificate approve "${names[@]}" >/dev/null
	race_names+=("${names[@]}")
	e2e_exec sh -c 'for x in a b; do systemd-run --quiet --no-block --unit="race-$x-$1" /usr/bin/cert-rotator --config "/etc/cert-rotator/race-$x-$1.toml" signer --rounds 1; done' _ "$n"
	# Both have run once every CSR is issued and neither unit is active any more.
	e2e_wait_for 30 all_issued "${names[@]}"
	e2e_wait_for 30 eval "! e2e_exec systemctl is-active --quiet race-a-$n race-b-$n"
	race_conflicts=$(e2e_exec journalctl --no-pager -o cat -u "race-a-$n" -u "race-b-$n" | grep -c "changed before our write")
	e2e_log "race $n: $race_conflicts status writes refused with 409"
}
for n in 1 2 3; do
	race "$n"
	((race_conflicts > 0)) && break
done
printf 'csr_race_conflicts %s\n' "$race_conflicts" | tee -a "$results" >&2
e2e_check "two signers leading at once on the same CSRs: the API server refused a status write (409)" \
	eval '((race_conflicts > 0))'
e2e_check "... every CSR issued" all_issued "${race_names[@]}"
e2e_check "... each exactly once: the status write is conditional on resourceVersion" once "${race_names[@]}"

# --- 4. an API server restart ----------------------------------------------------------
# The API server restarts (its manifest changes: the flag section 5 needs); the signer
# keeps running and signs what is approved afterwards.
e2e_exec systemctl start cert-rotator-signer.service
e2e_exec sed -i 's|^    - kube-apiserver$|&\n    - --kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt|' /etc/kubernetes/manifests/kube-apiserver.yaml
apiserver_ready() { kubectl_in --request-timeout=2s get --raw /readyz >/dev/null 2>&1; }
sleep 3
e2e_check "the API server restarted (--kubelet-certificate-authority) and is ready again" e2e_wait_for 120 apiserver_ready
apply_csr after-restart "$ec" '"digital signature", "server auth"'
kubectl_in certificate approve after-restart >/dev/null
e2e_check "after the API server restart the signer signs a newly approved CSR" e2e_wait_for 30 issued after-restart
e2e_check "... without having been restarted itself" \
	eval '[[ $(e2e_exec systemctl show -P NRestarts cert-rotator-signer.service) == 0 && $(e2e_exec systemctl is-active cert-rotator-signer.service) == active ]]'

# --- 5. the kubelet's serving certificate (csr.approve_kubelet_serving) -------------------
# The real kubelet with serverTLSBootstrap: true asks for its serving certificate; the
# signer's approver approves it (the node's own name and addresses), the controller-manager
# signs it, and the API server, now verifying the kubelet against ca.crt, reaches it.
proxy_healthz() { [[ $(kubectl_in --request-timeout=5s get --raw "/api/v1/nodes/$K8S_NODE/proxy/healthz" 2>/dev/null) == ok ]]; }
e2e_check "with the self-signed kubelet.crt, the verifying API server cannot reach the kubelet" \
	eval '! proxy_healthz'

# --- 5a. kubelet.crt issued by the cluster ([kubelet] serving) --------------------------
# cluster-ca: the next pass re-issues the self-signed kubelet.crt (not due by its dates:
# reason serving-issuer) from the cluster CA for the node's name and address; the kubelet
# reloads it by itself and the verifying API server reaches it. csr: with a fresh
# self-signed kubelet.crt, the pass asks the certificates API with kubelet.conf's
# credentials; the signer's approver approves, the controller-manager signs.
kcrt=/var/lib/kubelet/pki/kubelet.crt kkey=/var/lib/kubelet/pki/kubelet.key
serving_mode() { printf '[kubelet]\nserving = "%s"\nserving_timeout_seconds = %s\n' "$1" "${2:-60}" | e2e_exec sh -c 'cat >/etc/cert-rotator/config.d/65-serving.toml'; }
kubelet_pid() { e2e_exec systemctl show -P MainPID kubelet.service; }
kcrt_text() { e2e_exec openssl x509 -in "$kcrt" -noout -subject -ext subjectAltName,keyUsage,extendedKeyUsage 2>/dev/null; }
from_cluster_ca() { # the file holds one certificate, verifying against ca.crt, for this node
	local t
	t=$(kcrt_text)
	e2e_exec openssl verify -no-CApath -no-CAstore -CAfile /etc/kubernetes/pki/ca.crt "$kcrt" >/dev/null 2>&1 &&
		[[ $(e2e_exec grep -c 'BEGIN CERTIFICATE' "$kcrt") == 1 ]] &&
		[[ $t == *"O = system:nodes, CN = system:node:$K8S_NODE"* && $t == *"DNS:$K8S_NODE"* && $t == *"IP Address:$K8S_ADDRESS"* ]] &&
		[[ $t == *"Digital Signature, Key Encipherment"* && $t == *"TLS Web Server Authentication"* ]] || {
		e2e_log "kubelet.crt: $t"
		return 1
	}
}
serves_verifiably() { e2e_exec sh -c 'openssl s_client -connect 127.0.0.1:10250 -CAfile /etc/kubernetes/pki/ca.crt -verify_return_error </dev/null >/dev/null 2>&1'; }
serving_mode cluster-ca
pid=$(kubelet_pid)
plan_line=$(e2e_exec cert-rotator plan 2>&1 | grep kubelet.crt)
e2e_check "serving = \"cluster-ca\": cert-rotator plan has the self-signed kubelet.crt due, although not by its dates (serving-issuer)" \
	eval '[[ $plan_line == *serving-issuer* ]] || { e2e_log "plan: $plan_line"; false; }'
e2e_exec systemctl start cert-rotator.service
e2e_check "serving = \"cluster-ca\": the next pass succeeds" \
	eq "$(e2e_exec systemctl show -P Result cert-rotator.service)" success
e2e_check "... kubelet.crt re-issued by the cluster CA: O=system:nodes, CN=system:node:$K8S_NODE, DNS:$K8S_NODE, IP:$K8S_ADDRESS, server auth" from_cluster_ca
e2e_check "... kubelet.key 0600" eq "$(e2e_exec stat -c %a "$kkey")" 600
e2e_check "... the kubelet serves it, verifiable with ca.crt, without having been restarted" \
	eval 'e2e_wait_for 10 serves_verifiably && [[ $(kubelet_pid) == "$pid" ]]'
e2e_check "... and the API server verifying the kubelet reaches it (nodes/NODE/proxy/healthz)" \
	e2e_wait_for 30 proxy_healthz
# The kubelet's names change: an operator gives it --hostname-override in
# /etc/default/kubelet. The next plan finds kubelet.crt no longer names it (serving-sans,
# though not due by its dates nor by its issuer) and the pass re-issues it with the new
# name beside the old ones. The file goes again before the kubelet is next restarted.
wrote_default=no
e2e_exec sh -c 'test ! -e /etc/default/kubelet && printf "KUBELET_EXTRA_ARGS=--hostname-override=%s\n" "$1" >/etc/default/kubelet' _ "$K8S_NODE-alt" && wrote_default=yes
plan_line=$(e2e_exec cert-rotator plan 2>&1 | grep kubelet.crt)
e2e_check "serving = \"cluster-ca\", --hostname-override added: cert-rotator plan has kubelet.crt due for its names (serving-sans)" \
	eval '[[ $plan_line == *serving-sans* ]] || { e2e_log "plan: $plan_line"; false; }'
e2e_exec systemctl start cert-rotator.service
e2e_check "... the next pass succeeds; kubelet.crt from the cluster CA names $K8S_NODE-alt beside $K8S_NODE and $K8S_ADDRESS" \
	eval '[[ $(e2e_exec systemctl show -P Result cert-rotator.service) == success && $(kcrt_text) == *"DNS:$K8S_NODE-alt"* && $(kubelet_pid) == "$pid" ]] && from_cluster_ca'
plan_line=$(e2e_exec cert-rotator plan 2>&1 | grep kubelet.crt)
e2e_check "... and it is not due again" \
	eval '[[ $plan_line != *serving-sans* && $plan_line != *serving-issuer* ]] || { e2e_log "plan: $plan_line"; false; }'
[[ $wrote_default == yes ]] && e2e_exec rm -f /etc/default/kubelet
# Back to a kubelet.crt the kubelet makes itself, self-signed.
e2e_exec sh -c "rm -f $kcrt $kkey && systemctl restart kubelet.service"
e2e_wait_for 60 eval 'e2e_exec test -s "$kcrt" && ! serves_verifiably'
e2e_check "the kubelet made itself a new self-signed kubelet.crt: the API server cannot verify it" \
	e2e_wait_for 30 eval '! proxy_healthz'
serving_mode csr
e2e_exec systemctl start cert-rotator.service
e2e_check "serving = \"csr\": the next pass succeeds" \
	eq "$(e2e_exec systemctl show -P Result cert-rotator.service)" success
kcsr=$(kubectl_in get csr --no-headers 2>/dev/null | awk '$1 ~ /^cert-rotator-kubelet-serving-/ { print $1 }' | tail -n1)
e2e_check "... its CSR ($kcsr) for kubernetes.io/kubelet-serving was requested as system:node:$K8S_NODE (kubelet.conf) and issued" \
	eval '[[ -n $kcsr && $(kubectl_in get csr "$kcsr" -o jsonpath="{.spec.signerName} {.spec.username}") == "kubernetes.io/kubelet-serving system:node:$K8S_NODE" ]] && issued "$kcsr"'
e2e_check "... approved by cert-rotator's approver" \
	eq "$(kubectl_in get csr "$kcsr" -o jsonpath='{.status.conditions[?(@.type=="Approved")].reason}')" CertRotatorApproved
e2e_check "... for the key installed as kubelet.key (0600), made on the node: only its public half was sent" \
	eval '[[ $(kubectl_in get csr "$kcsr" -o jsonpath="{.spec.request}" | base64 -d | openssl req -noout -pubkey) == "$(e2e_exec openssl pkey -in "$kkey" -pubout)" && $(e2e_exec stat -c %a "$kkey") == 600 ]]'
e2e_check "... kubelet.crt is the certificate the controller-manager signed with the cluster CA, for this node" \
	eval 'from_cluster_ca && [[ $(kubectl_in get csr "$kcsr" -o jsonpath="{.status.certificate}" | base64 -d | openssl x509 -noout -serial) == "$(e2e_exec openssl x509 -in "$kcrt" -noout -serial)" ]]'
e2e_check "... and the API server verifying the kubelet reaches it" e2e_wait_for 30 proxy_healthz
e2e_exec rm -f /etc/cert-rotator/config.d/65-serving.toml
e2e_exec sh -c 'grep -q "^serverTLSBootstrap:" /var/lib/kubelet/config.yaml && sed -i "s/^serverTLSBootstrap:.*/serverTLSBootstrap: true/" /var/lib/kubelet/config.yaml || echo "serverTLSBootstrap: true" >>/var/lib/kubelet/config.yaml'
e2e_exec systemctl restart kubelet.service
serving_csr() { kubectl_in get csr --no-headers 2>/dev/null | awk '$3 == "kubernetes.io/kubelet-serving" && $4 == "system:node:'"$K8S_NODE"'" { print $1 }' | tail -n1; }
e2e_check "the kubelet's serving CSR is approved by cert-rotator and issued" \
	e2e_wait_for 60 eval 'c=$(serving_csr); [[ -n $c ]] && issued "$c"'
c=$(serving_csr)
e2e_check "... approved with cert-rotator's reason" \
	eq "$(kubectl_in get csr "$c" -o jsonpath='{.status.conditions[?(@.type=="Approved")].reason}')" CertRotatorApproved
e2e_check "the API server verifying the kubelet against ca.crt reaches it (nodes/NODE/proxy/healthz)" \
	e2e_wait_for 60 proxy_healthz
e2e_check "the kubelet serves a certificate that verifies against ca.crt" \
	e2e_exec sh -c 'openssl s_client -connect 127.0.0.1:10250 -CAfile /etc/kubernetes/pki/ca.crt -verify_return_error </dev/null >/dev/null 2>&1'
# Forged: an administrator asking for the node's serving certificate, and the node itself
# asking for a foreign IP address.
forge forged-by-admin /etc/kubernetes/admin.conf "DNS:$K8S_NODE,IP:$K8S_ADDRESS"
forge forged-ip /etc/kubernetes/kubelet.conf "DNS:$K8S_NODE,IP:203.0.113.9"
e2e_check "a kubelet-serving CSR requested by an administrator is denied" \
	e2e_wait_for 15 denied_with forged-by-admin "not by a node"
e2e_check "the node's own CSR for a foreign IP address is denied, naming it" \
	e2e_wait_for 15 denied_with forged-ip "IP SAN 203.0.113.9 is not one of node $K8S_NODE's addresses"
e2e_exec journalctl --no-pager -u cert-rotator-signer.service -u signer-b.service >"$E2E_DIR/signer.journal" 2>/dev/null

# --- 5b. the shipped RBAC: a signer with an identity of its own ------------------------
# The packaged manifest applied; a client certificate CN=cert-rotator-signer from the
# cluster CA; a signer with only that identity (and a Lease of its own) signs.
e2e_check "the shipped RBAC manifest applies" \
	kubectl_in apply -f /usr/share/cert-rotator/kubernetes/cert-rotator-signer-rbac.yaml
e2e_exec systemctl stop cert-rotator-signer.service
e2e_exec sh -euc '
	cd /tmp
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rbac.key \
		-subj /CN=cert-rotator-signer -out rbac.csr 2>/dev/null
	printf "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n" >rbac.ext
	openssl x509 -req -in rbac.csr -CA /etc/kubernetes/pki/ca.crt -CAkey /etc/kubernetes/pki/ca.key \
		-CAcreateserial -days 1 -extfile rbac.ext -out rbac.crt 2>/dev/null
	install -m 0600 /etc/kubernetes/admin.conf /etc/cert-rotator/rbac.conf
	kubectl --kubeconfig /etc/cert-rotator/rbac.conf config set-credentials kubernetes-admin \
		--client-certificate=/tmp/rbac.crt --client-key=/tmp/rbac.key --embed-certs >/dev/null
	sed "s|^poll_seconds = 1\$|&\nkubeconfig = \"/etc/cert-rotator/rbac.conf\"\nlease_name = \"rbac-lease\"|" \
		/etc/cert-rotator/config.d/60-signer.toml >/etc/cert-rotator/rbac.toml
	systemd-run --quiet --unit=signer-rbac /usr/bin/cert-rotator --config /etc/cert-rotator/rbac.toml signer'
e2e_check "... kubectl auth whoami: the signer's identity is cert-rotator-signer, not an admin" \
	eval '[[ $(e2e_exec kubectl --kubeconfig /etc/cert-rotator/rbac.conf auth whoami -o jsonpath="{.status.userInfo.username}") == cert-rotator-signer ]]'
apply_csr rbac-signed "$ec" '"digital signature", "server auth"'
kubectl_in certificate approve rbac-signed >/dev/null
e2e_check "... and with only the shipped RBAC it leads and signs" e2e_wait_for 30 issued rbac-signed
e2e_check "... without a refusal from the API server in its journal" \
	eval '! e2e_exec journalctl --no-pager -o cat -u signer-rbac.service | grep -qi "forbidden\|HTTP 403"'
e2e_exec systemctl stop signer-rbac.service

# --- 6. Events on the Node ([events]) -------------------------------------------------
# A pass of the packaged unit that renews admin.conf and scheduler.conf (due by their own
# window) and restarts kube-scheduler leaves Events on the Node, sent with kubelet.conf's
# credentials; with the API server stopped the same pass still succeeds, at most
# events.timeout_seconds slower than without Events.
e2e_exec sh -c 'cat >/etc/cert-rotator/config.d/70-events.toml' <<'EOC'
[events]
enabled = true
timeout_seconds = 5

[run]
min_restart_gap_seconds = 5

[targets."admin.conf"]
remaining_days = 4000

[targets."scheduler.conf"]
remaining_days = 4000
EOC
e2e_exec systemctl start cert-rotator.service
e2e_check "a pass renewing admin.conf and scheduler.conf succeeds" \
	eq "$(e2e_exec systemctl show -P Result cert-rotator.service)" success
node_events() { kubectl_in get events -n default --field-selector "involvedObject.kind=Node,involvedObject.name=$K8S_NODE,reason=$1" -o jsonpath='{.items[*].message}' 2>/dev/null; }
e2e_check "kubectl get events: CertificateRenewed on the Node for admin.conf and scheduler.conf" \
	e2e_wait_for 10 eval '[[ $(node_events CertificateRenewed) == *"renewed admin.conf"* && $(node_events CertificateRenewed) == *"renewed scheduler.conf"* ]]'
e2e_check "kubectl get events: ComponentRestarted on the Node for kube-scheduler" \
	eval '[[ $(node_events ComponentRestarted) == *kube-scheduler* ]]'
e2e_exec sh -c 'kubectl --kubeconfig /etc/kubernetes/admin.conf get events -n default --field-selector involvedObject.kind=Node -o wide' >&2
# The API server stopped (its manifest moved away), scheduler.conf no longer due: each
# pass renews admin.conf and has an Event to tell.
e2e_exec sed -i '/^\[targets."scheduler.conf"\]$/,$d' /etc/cert-rotator/config.d/70-events.toml
e2e_exec mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/kube-apiserver.yaml
e2e_wait_for 30 eval '! apiserver_ready'
timed_pass() { # timed_pass: seconds of one pass of the packaged unit; fails unless it succeeded
	local a b
	a=$(date +%s.%N)
	e2e_exec systemctl start cert-rotator.service
	b=$(date +%s.%N)
	[[ $(e2e_exec systemctl show -P Result cert-rotator.service) == success ]] || return 1
	seconds "$a" "$b"
}
e2e_exec sed -i 's/^enabled = true$/enabled = false/' /etc/cert-rotator/config.d/70-events.toml
without=$(timed_pass)
e2e_exec sed -i 's/^enabled = false$/enabled = true/' /etc/cert-rotator/config.d/70-events.toml
with=$(timed_pass)
printf 'events_pass_seconds_without %s\nevents_pass_seconds_with_apiserver_down %s\n' "${without:-?}" "${with:-?}" | tee -a "$results" >&2
e2e_check "with the API server stopped, a pass with Events enabled succeeds (${with:-failed} s; ${without:-failed} s without Events)" \
	eval '[[ -n $with && -n $without ]] && awk -v a="$with" -v b="$without" "BEGIN { exit !(a <= b + 5) }"'
# serving = "csr" with the API server stopped: kubelet.crt (made due) fails within the
# bound with a message naming it and the API server, nothing of it changes on disk, and
# the pass renews the rest (admin.conf).
serving_mode csr 10
e2e_exec sh -c 'printf "\n[targets.\"kubelet.crt\"]\nremaining_days = 4000\n" >>/etc/cert-rotator/config.d/65-serving.toml'
before=$(e2e_exec sha256sum "$kcrt" "$kkey")
admin_before=$(e2e_exec sha256sum /etc/kubernetes/admin.conf)
a=$(date +%s.%N)
e2e_exec systemctl start cert-rotator.service
took=$(seconds "$a" "$(date +%s.%N)")
printf 'serving_csr_pass_seconds_with_apiserver_down %s\n' "$took" | tee -a "$results" >&2
e2e_check "serving = \"csr\" with the API server stopped: the pass fails, within the bound ($took s: 10 s for the CSR, 5 s for Events)" \
	eval '[[ $(e2e_exec systemctl show -P Result cert-rotator.service) != success ]] && awk -v t="$took" "BEGIN { exit !(t < 30) }"'
failed_line=$(e2e_exec journalctl -u cert-rotator.service --no-pager -o cat -n 200 | grep 'kubelet.crt: \[kubelet\] serving = "csr": /etc/kubernetes/kubelet.conf: ' | tail -n1)
e2e_log "journal: $failed_line"
e2e_check "... naming kubelet.crt, serving = \"csr\" and what failed" eval '[[ -n $failed_line ]]'
e2e_check "... kubelet.crt and kubelet.key unchanged" eq "$(e2e_exec sha256sum "$kcrt" "$kkey")" "$before"
e2e_check "... and the rest of the pass went on: admin.conf renewed" \
	eval '[[ $(e2e_exec sha256sum /etc/kubernetes/admin.conf) != "$admin_before" ]]'
e2e_exec mv /root/kube-apiserver.yaml /etc/kubernetes/manifests/kube-apiserver.yaml
# csr_pass_fails WORDS: a pass with kubelet.crt due under serving = "csr" (5 s) fails
# within the bound, its journal says WORDS about kubelet.crt, and kubelet.crt and
# kubelet.key are unchanged.
csr_pass_fails() {
	local before took line
	serving_mode csr 5
	e2e_exec sh -c 'printf "\n[targets.\"kubelet.crt\"]\nremaining_days = 4000\n" >>/etc/cert-rotator/config.d/65-serving.toml'
	before=$(e2e_exec sha256sum "$kcrt" "$kkey")
	a=$(date +%s.%N)
	e2e_exec systemctl start cert-rotator.service
	took=$(seconds "$a" "$(date +%s.%N)")
	line=$(e2e_exec journalctl -u cert-rotator.service --no-pager -o cat -n 200 | grep "renewal failed: kubelet.crt: .*$1" | tail -n1)
	e2e_log "pass: $took s; journal: $line"
	[[ $(e2e_exec systemctl show -P Result cert-rotator.service) != success && -n $line ]] &&
		awk -v t="$took" 'BEGIN { exit !(t < 20) }' &&
		[[ $(e2e_exec sha256sum "$kcrt" "$kkey") == "$before" ]]
}
e2e_wait_for 120 apiserver_ready
# Nobody approves (the signer service stopped): the CSR is left pending, named.
e2e_exec systemctl stop cert-rotator-signer.service
e2e_check "serving = \"csr\", no approver: the pass fails kubelet.crt after 5 s (serving_timeout_seconds), naming the CSR left pending; nothing changed" \
	csr_pass_fails 'CSR cert-rotator-kubelet-serving-[a-z0-9]*: not approved within 5 s'
e2e_check "... the CSR is there, Pending, for an approver" \
	eval '[[ $(kubectl_in get csr --no-headers | awk "/^cert-rotator-kubelet-serving-/ && /Pending/" | wc -l) -ge 1 ]]'
# An API server that accepts connections and never answers (stopped with SIGSTOP): the
# same bound holds.
apiserver_pid=$(e2e_exec pgrep -o -x kube-apiserver)
e2e_exec kill -STOP "$apiserver_pid"
e2e_check "serving = \"csr\", the API server hanging: the pass fails kubelet.crt within the bound, nothing changed" \
	csr_pass_fails 'serving = "csr": /etc/kubernetes/kubelet.conf: GET /api/v1/nodes/'
e2e_exec kill -CONT "$apiserver_pid"
e2e_exec rm -f /etc/cert-rotator/config.d/65-serving.toml

# --- 7. the summary on the Node ([events] node_summary) ---------------------------------
# Its own section: the passes of section 6's configuration (admin.conf due by its window),
# Events off, the summary on.
summary_section() {
	local want_expiry want_due names labels annotation without with refused
	e2e_check "the API server is back (section 6 stopped it)" e2e_wait_for 120 apiserver_ready
	e2e_exec sh -c 'cat >/etc/cert-rotator/config.d/75-summary.toml' <<'EOC'
[events]
enabled = false
node_summary = true
timeout_seconds = 5
EOC
	e2e_exec systemctl start cert-rotator.service
	e2e_check "a pass with node_summary succeeds" \
		eq "$(e2e_exec systemctl show -P Result cert-rotator.service)" success
	# What the node holds, as `status --json` reads it right after the pass.
	e2e_exec cert-rotator status --json >"$E2E_DIR/summary-status.json" 2>/dev/null
	want_expiry=$(jq -r '[.certificates[] | .not_after | select(. != null)] | min | .[0:10]' "$E2E_DIR/summary-status.json")
	want_due=$(jq -r '[.certificates[] | select(.due)] | length' "$E2E_DIR/summary-status.json")
	labels=$(kubectl_in get node "$K8S_NODE" --no-headers -L cert-rotator.io/next-expiry -L cert-rotator.io/due 2>/dev/null)
	kubectl_in get node "$K8S_NODE" -L cert-rotator.io/next-expiry -L cert-rotator.io/due >&2
	e2e_check "kubectl get node -L: next-expiry $want_expiry (the earliest notAfter) and due $want_due, as status --json says" \
		eval '[[ -n $want_expiry && $(awk "{ print \$(NF-1), \$NF }" <<<"$labels") == "$want_expiry $want_due" ]]'
	annotation=$(kubectl_in get node "$K8S_NODE" -o jsonpath='{.metadata.annotations.cert-rotator\.io/certificates}' 2>/dev/null)
	names=$(jq -r '[.certificates[].name] | sort | join(" ")' "$E2E_DIR/summary-status.json")
	e2e_check "the annotation cert-rotator.io/certificates is JSON with an entry for each of the node's certificates" \
		eval '[[ -n $names && $(jq -r "[.certificates[].name] | sort | join(\" \")" <<<"$annotation" 2>/dev/null) == "$names" ]]'
	e2e_check "... each with notAfter, state and who renews it (kubelet-client-current.pem: the kubelet)" \
		eval '[[ $(jq -r ".certificates[] | select(.name == \"kubelet-client-current.pem\") | .renewedBy" <<<"$annotation") == kubelet && $(jq -r ".certificates[] | select(.name == \"apiserver\") | .state + \" \" + .notAfter" <<<"$annotation") == ok\ 20* ]]'
	e2e_log "annotation: $(head -c 300 <<<"$annotation")..."
	e2e_check "... sent with kubelet.conf's credentials (the journal of the pass says so)" \
		eval 'e2e_exec journalctl --no-pager -o cat -u cert-rotator.service | grep -q "events: summary on Node $K8S_NODE: next expiry $want_expiry, $want_due due"'
	# NodeRestriction is at work: the node's credentials may not set a kubernetes.io label
	# on their own Node, yet took cert-rotator.io's.
	e2e_check "NodeRestriction refuses the node a kubernetes.io label on its own Node (it is enforced)" \
		eval '! e2e_exec kubectl --kubeconfig /etc/kubernetes/kubelet.conf label node "$K8S_NODE" node-restriction.kubernetes.io/x=y >/dev/null 2>&1'
	# No node overwrites another's summary: a second Node object (made by the admin), the
	# same merge patch with this node's credentials is refused.
	kubectl_in create -f - >/dev/null <<<'{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "summary-other-node"}}'
	# The PATCH itself, raw (kubectl patch would GET the Node first, which the Node
	# authorizer refuses before NodeRestriction is asked), with kubelet.conf's certificate.
	refused=$(e2e_exec sh -c '
		body="{\"metadata\":{\"labels\":{\"cert-rotator.io/due\":\"0\"}}}"
		server=$(sed -n "s|^ *server: https://||p" /etc/kubernetes/kubelet.conf | head -n1)
		pem=/var/lib/kubelet/pki/kubelet-client-current.pem
		printf "PATCH /api/v1/nodes/summary-other-node HTTP/1.1\r\nHost: %s\r\nContent-Type: application/merge-patch+json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s" "$server" "${#body}" "$body" |
			timeout 10 openssl s_client -quiet -connect "$server" -cert $pem -key $pem -CAfile /etc/kubernetes/pki/ca.crt 2>/dev/null' | tr -d '\r')
	e2e_log "the node patching another Node: $(grep -o '"message":"\([^"\\]\|\\.\)*"' <<<"$refused")"
	e2e_check "... and refuses this node's credentials the summary labels on another Node (PATCH: 403)" \
		eval '[[ $refused == "HTTP/1.1 403"* && -n $(kubectl_in get node summary-other-node -o name) && -z $(kubectl_in get node summary-other-node -o jsonpath="{.metadata.labels.cert-rotator\.io/due}") ]]'
	kubectl_in delete node summary-other-node >/dev/null 2>&1
	# The API server stopped: the pass still succeeds, at most events.timeout_seconds slower.
	e2e_exec mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/kube-apiserver.yaml
	e2e_wait_for 30 eval '! apiserver_ready'
	e2e_exec sed -i 's/^node_summary = true$/node_summary = false/' /etc/cert-rotator/config.d/75-summary.toml
	without=$(timed_pass)
	e2e_exec sed -i 's/^node_summary = false$/node_summary = true/' /etc/cert-rotator/config.d/75-summary.toml
	with=$(timed_pass)
	printf 'summary_pass_seconds_without %s\nsummary_pass_seconds_with_apiserver_down %s\n' "${without:-?}" "${with:-?}" | tee -a "$results" >&2
	e2e_check "with the API server stopped, a pass with node_summary succeeds (${with:-failed} s; ${without:-failed} s without)" \
		eval '[[ -n $with && -n $without ]] && awk -v a="$with" -v b="$without" "BEGIN { exit !(a <= b + 5) }"'
	e2e_exec mv /root/kube-apiserver.yaml /etc/kubernetes/manifests/kube-apiserver.yaml
	e2e_exec rm -f /etc/cert-rotator/config.d/75-summary.toml
}
summary_section

# --- 8. the approver's DNS patterns and IP prefixes -------------------------------------
approver_rules_section() {
	local dns=$K8S_NODE.nodes.example.internal
	e2e_check "the API server is back (section 7 stopped it)" e2e_wait_for 120 apiserver_ready
	e2e_exec sh -c 'cat >/etc/cert-rotator/config.d/65-approver-rules.toml' <<'EOC'
[csr]
kubelet_serving_dns_patterns = ["{node}.nodes.example.internal", "*.lb.example.internal"]
kubelet_serving_ip_prefixes = ["10.96.0.0/12", "fd00::/8"]
EOC
	e2e_check "config check accepts the patterns and prefixes" e2e_exec sh -c 'cert-rotator config check >/dev/null'
	e2e_exec systemctl restart cert-rotator-signer.service
	forge rules-in /etc/kubernetes/kubelet.conf "DNS:$K8S_NODE,DNS:$dns,DNS:api.lb.example.internal,IP:$K8S_ADDRESS,IP:10.96.0.7,IP:fd00::7"
	forge rules-other-node /etc/kubernetes/kubelet.conf "DNS:other.nodes.example.internal,IP:10.96.0.8"
	forge rules-two-labels /etc/kubernetes/kubelet.conf "DNS:a.b.lb.example.internal"
	forge rules-ip-out /etc/kubernetes/kubelet.conf "DNS:$dns,IP:10.112.0.1"
	e2e_check "the node's CSR for $dns, api.lb.example.internal, 10.96.0.7 and fd00::7 is approved by cert-rotator and issued" \
		e2e_wait_for 30 eval 'issued rules-in && [[ $(kubectl_in get csr rules-in -o jsonpath="{.status.conditions[?(@.type==\"Approved\")].reason}") == CertRotatorApproved ]]'
	e2e_check "... for another node's name under {node}: denied, naming it" \
		e2e_wait_for 15 denied_with rules-other-node "DNS SAN other.nodes.example.internal is neither node $K8S_NODE's name nor one of its DNS addresses nor a configured pattern"
	e2e_check "... two labels where the pattern has one '*': denied" \
		e2e_wait_for 15 denied_with rules-two-labels "DNS SAN a.b.lb.example.internal"
	e2e_check "... an address outside the prefixes: denied, naming it" \
		e2e_wait_for 15 denied_with rules-ip-out "IP SAN 10.112.0.1 is not one of node $K8S_NODE's addresses nor in a configured prefix"
	e2e_exec systemctl stop cert-rotator-signer.service
	e2e_exec rm -f /etc/cert-rotator/config.d/65-approver-rules.toml
}
approver_rules_section

e2e_summary
