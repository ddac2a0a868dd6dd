# shellcheck shell=bash
# tests/k8s/csr_cfssl.sh - sourced by tests/k8s/csr.sh: a [[signer]] whose CA is a cfssl
# server. The seed's workflow with the administrator's `cfssl sign` replaced by the signer:
# a real `cfssl serve` (Debian's golang-cfssl, copied into the container: its network is
# private) holds the seed's CA (ca.pem, made with `cfssl gencert -initca` by csr.sh) and a
# config with the seed's server-signing-config.json profile as its default plus a
# "server" profile of one year behind an auth key; cert-rotator's signer sends each approved
# CSR's request to it over HTTPS (authsign) and checks what comes back.
#   - cfssl genkey, kubectl apply (example.com/cfssl-serving), kubectl certificate approve:
#     `kubectl get csr` shows Approved,Issued within seconds; the certificate verifies
#     against the CA, carries the profile's usages, the request's subject, SANs and key;
#   - client auth under the server profile: Failed, naming the usage;
#   - spec.expirationSeconds 3600 under the one-year profile: Failed (cfssl cannot be asked
#     for a lifetime; a longer certificate is never written);
#   - the seed's literal profile (876000h, 100 years) under the 5-year CA: Failed, the
#     certificate would outlive its CA;
#   - cfssl stopped: an approved CSR stays pending (no Failed), the journal names the
#     server; cfssl started again: it is issued;
#   - cfssl hung (a socket nothing accepts on, three tries configured): asked within the
#     Lease's term only, then resting; the Lease stays renewed, a kubelet-serving CSR is
#     decided within 4 s; cfssl back: the CSR is issued.
# Uses csr.sh's helpers (kubectl_in, apply_csr, issued, failed_with, forge, denied_with,
# certificate, condition, seconds) and its host-side directory (the current directory,
# with ca.pem and ca-key.pem).
# Leaves the signer's configuration as it found it.

csr_cfssl_section() {
	local cfg=/etc/cert-rotator/config.d/60-signer.toml lib auth_key pid approved_at text
	e2e_exec cp "$cfg" /root/60-signer.toml.before-cfssl
	# cfssl in the container, with the one library it links beyond libc.
	lib=$(readlink -f /usr/lib/x86_64-linux-gnu/libsqlite3.so.0)
	e2e_copy_in "$(command -v cfssl)" /usr/local/bin/cfssl
	e2e_copy_in "$lib" /usr/local/lib/libsqlite3.so.0
	e2e_exec ldconfig
	# The server's TLS certificate for 127.0.0.1, from a CA of its own.
	echo '{"CN": "cfssl TLS CA", "key": {"algo": "ecdsa", "size": 256}}' |
		cfssl gencert -initca - 2>/dev/null | cfssljson -bare cfssl-tls-ca
	echo '{"CN": "127.0.0.1", "hosts": ["127.0.0.1"], "key": {"algo": "ecdsa", "size": 256}}' |
		cfssl gencert -ca cfssl-tls-ca.pem -ca-key cfssl-tls-ca-key.pem - 2>/dev/null | cfssljson -bare cfssl-tls
	for f in cfssl-tls-ca.pem cfssl-tls.pem cfssl-tls-key.pem; do e2e_copy_in "$f" "/etc/example-ca/$f"; done
	auth_key=$(openssl rand -hex 16)
	e2e_exec sh -c 'umask 077; printf "%s\n" "$1" >/etc/cert-rotator/cfssl-auth.key' _ "$auth_key"
	# The seed's server-signing-config.json as the default profile, verbatim; "server": the
	# same usages for one year, reachable with the auth key only (authsign).
	e2e_exec sh -c 'cat >/etc/example-ca/cfssl-config.json' <<EOC
{
    "signing": {
        "default": {
            "usages": [
                "digital signature",
                "key encipherment",
                "server auth"
            ],
            "expiry": "876000h",
            "ca_constraint": {
                "is_ca": false
            }
        },
        "profiles": {
            "server": {
                "usages": ["digital signature", "key encipherment", "server auth"],
                "expiry": "8760h",
                "auth_key": "signer"
            }
        }
    },
    "auth_keys": {"signer": {"type": "standard", "key": "$auth_key"}}
}
EOC
	cfssl_start() {
		e2e_exec systemd-run --quiet --unit=cfssl-serve /usr/local/bin/cfssl serve \
			-address 127.0.0.1 -port 8888 -ca /etc/example-ca/ca.pem -ca-key /etc/example-ca/ca-key.pem \
			-config /etc/example-ca/cfssl-config.json \
			-tls-cert /etc/example-ca/cfssl-tls.pem -tls-key /etc/example-ca/cfssl-tls-key.pem
		e2e_wait_for 15 e2e_exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/8888' 2>/dev/null
	}
	e2e_check "cfssl serve (the seed's CA and profile, HTTPS, an auth key) runs in the container" cfssl_start
	# [[signer]] is an array: a drop-in would replace csr.sh's, so it is appended to them.
	e2e_exec sh -c 'cat >>"$1"' _ "$cfg" <<'EOC'

[[signer]]
name = "example.com/cfssl-serving"
ca_cert = "/etc/example-ca/ca.pem"
usages = ["digital signature", "key encipherment", "server auth"]

[signer.cfssl]
url = "https://127.0.0.1:8888"
profile = "server"
auth_key_file = "/etc/cert-rotator/cfssl-auth.key"
tls_ca_bundle = "/etc/example-ca/cfssl-tls-ca.pem"
attempts = 1
connect_timeout_seconds = 2
timeout_seconds = 4

[[signer]]
name = "example.com/cfssl-seed"
ca_cert = "/etc/example-ca/ca.pem"
usages = ["digital signature", "key encipherment", "server auth"]
max_duration_seconds = 3153600000

[signer.cfssl]
url = "https://127.0.0.1:8888"
tls_ca_bundle = "/etc/example-ca/cfssl-tls-ca.pem"
attempts = 1
connect_timeout_seconds = 2
timeout_seconds = 4
EOC
	e2e_check "cert-rotator config check accepts [[signer]] tables with a cfssl table" \
		e2e_exec sh -c 'cert-rotator config check >/dev/null'
	e2e_exec systemctl restart cert-rotator-signer.service
	pid=$(e2e_exec systemctl show -P MainPID cert-rotator-signer.service)
	lease_holder() { kubectl_in -n kube-system get lease cert-rotator-signer -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
	e2e_check "the restarted signer leads" e2e_wait_for 30 eval '[[ $(lease_holder) == *_"$pid" ]]'

	# The seed's request, literally, for the cfssl signer.
	cat <<EOC | cfssl genkey - 2>/dev/null | cfssljson -bare cfssl-server
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
	cat <<EOC | kubectl_in apply -f - >/dev/null
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: my-svc.cfssl
spec:
  request: $(base64 -w0 cfssl-server.csr)
  signerName: example.com/cfssl-serving
  usages:
  - digital signature
  - key encipherment
  - server auth
EOC
	approved_at=$(date +%s.%N)
	kubectl_in certificate approve my-svc.cfssl >/dev/null
	e2e_check "cfssl signer: kubectl get csr shows Approved,Issued within 10 s of kubectl certificate approve" \
		e2e_wait_for 10 issued my-svc.cfssl
	printf 'csr_cfssl_issued_seconds %s\n' "$(seconds "$approved_at" "$(date +%s.%N)")" | tee -a "$results" >&2
	certificate my-svc.cfssl | base64 -d >cfssl-server.crt
	e2e_check "... the certificate verifies against the CA cfssl signs with (openssl verify -CAfile ca.pem)" \
		eval 'openssl verify -no-CApath -no-CAstore -CAfile ca.pem cfssl-server.crt >/dev/null'
	text=$(openssl x509 -in cfssl-server.crt -noout -text 2>/dev/null)
	e2e_check "... it carries the profile's usages (Digital Signature, Key Encipherment; TLS Web Server Authentication), CA:FALSE" \
		eval '[[ $text == *"Digital Signature, Key Encipherment"* && $text == *"TLS Web Server Authentication"* && $text != *"Client Authentication"* && $text == *"CA:FALSE"* ]]'
	e2e_check "... the request's subject and SANs, and its key (cfssl-server-key.pem, never sent)" \
		eval '[[ $text == *"CN = my-pod.my-namespace.pod.cluster.local"* && $text == *"DNS:my-svc.my-namespace.svc.cluster.local"* && $text == *"IP Address:10.0.34.2"* && $(openssl x509 -in cfssl-server.crt -noout -pubkey) == "$(openssl pkey -in cfssl-server-key.pem -pubout)" ]]'
	e2e_check "... one year, the server profile's expiry" \
		eval '(( $(end_of cfssl-server.crt) - $(date +%s) > 364 * 86400 && $(end_of cfssl-server.crt) - $(date +%s) <= 365 * 86400 ))'

	# Refused with a reason.
	SIGNER=example.com/cfssl-serving apply_csr cfssl-client-auth ec '"digital signature", "key encipherment", "client auth"'
	SIGNER=example.com/cfssl-serving apply_csr cfssl-one-hour ec '"digital signature", "key encipherment", "server auth"' 3600
	SIGNER=example.com/cfssl-seed apply_csr cfssl-seed-profile ec '"digital signature", "key encipherment", "server auth"'
	kubectl_in certificate approve cfssl-client-auth cfssl-one-hour cfssl-seed-profile >/dev/null
	e2e_check "cfssl signer: client auth under the server profile: Failed, naming the usage" \
		e2e_wait_for 10 failed_with cfssl-client-auth "client auth are not allowed"
	e2e_check "cfssl signer: expirationSeconds 3600 under the one-year profile: Failed, never a longer certificate" \
		e2e_wait_for 10 failed_with cfssl-one-hour "spec.expirationSeconds"
	e2e_check "cfssl signer: the seed's 876000h profile under the 5-year CA: Failed, it would outlive its CA" \
		e2e_wait_for 10 failed_with cfssl-seed-profile "outlive its CA"

	# cfssl down: the CSR waits, the journal names the server; cfssl back: issued.
	e2e_exec systemctl stop cfssl-serve.service
	SIGNER=example.com/cfssl-serving apply_csr cfssl-down ec '"digital signature", "key encipherment", "server auth"'
	kubectl_in certificate approve cfssl-down >/dev/null
	sleep 5
	e2e_check "cfssl stopped: the approved CSR stays pending, unsigned and not Failed" \
		eval '[[ -z $(certificate cfssl-down) && $(condition cfssl-down) == Approved ]]'
	e2e_check "... the journal names the server" \
		eval 'e2e_exec journalctl -u cert-rotator-signer.service --no-pager -o cat | grep "cannot sign: cfssl https://127.0.0.1:8888/api/v1/cfssl/authsign" | tail -n1 | grep -q "the CSR waits"'
	e2e_check "cfssl started again: the CSR is issued" eval 'cfssl_start && e2e_wait_for 15 issued cfssl-down'
	e2e_check "... and verifies against the CA" \
		eval 'certificate cfssl-down | base64 -d | openssl verify -no-CApath -no-CAstore -CAfile ca.pem >/dev/null'
	e2e_check "the signer is still running" eq "$(e2e_exec systemctl is-active cert-rotator-signer.service)" active

	# cfssl hung: a socket that accepts connections and never answers, a stand-in (no real
	# cfssl does that; systemd holds the listening socket and the service behind it never
	# accepts), asked with three tries. The signer asks it within the Lease's term only
	# (6 s - 4 s: 2 s) and then lets it rest: the Lease stays renewed, and a
	# kubelet-serving CSR is decided within seconds meanwhile.
	e2e_exec systemctl stop cfssl-serve.service
	e2e_exec sed -i 's/^attempts = 1$/attempts = 3/' "$cfg"
	e2e_exec systemctl restart cert-rotator-signer.service
	pid=$(e2e_exec systemctl show -P MainPID cert-rotator-signer.service)
	e2e_wait_for 30 eval '[[ $(lease_holder) == *_"$pid" ]]'
	e2e_exec systemd-run --quiet --unit=cfssl-hung --socket-property=ListenStream=127.0.0.1:8888 sleep infinity
	SIGNER=example.com/cfssl-serving apply_csr cfssl-hung ec '"digital signature", "key encipherment", "server auth"'
	kubectl_in certificate approve cfssl-hung >/dev/null
	sleep 2
	forge hung-forged /etc/kubernetes/admin.conf "DNS:$K8S_NODE"
	e2e_check "cfssl hung (three tries configured): a kubelet-serving CSR is still decided within 4 s" \
		e2e_wait_for 4 denied_with hung-forged "not by a node"
	lease_fresh() { # renewed within its 6 s, by this signer
		local rt
		rt=$(kubectl_in -n kube-system get lease cert-rotator-signer -o jsonpath='{.spec.renewTime}' 2>/dev/null)
		[[ -n $rt && $(lease_holder) == *_"$pid" ]] && (($(date +%s) - $(date -d "$rt" +%s) < 6))
	}
	fresh=0
	for _ in 1 2 3 4 5 6 7 8; do lease_fresh && fresh=$((fresh + 1)); sleep 1.5; done
	e2e_check "... the signer's Lease is renewed within its term throughout 12 s ($fresh of 8 looks)" eq "$fresh" 8
	e2e_check "... the try stopped at the Lease's term, the server rests (journal)" \
		eval 'e2e_exec journalctl -u cert-rotator-signer.service --no-pager -o cat | grep "stopped after 1 attempt(s): the Lease" | tail -n1 | grep -q "are not sent to cfssl for"'
	e2e_check "... the CSR stays Approved, unsigned, not Failed" \
		eval '[[ -z $(certificate cfssl-hung) && $(condition cfssl-hung) == Approved ]]'
	e2e_exec systemctl stop cfssl-hung.socket cfssl-hung.service
	e2e_check "cfssl back: the CSR is issued once its rest is over (at most 60 s)" \
		eval 'cfssl_start && e2e_wait_for 70 issued cfssl-hung'

	e2e_exec systemctl stop cfssl-serve.service
	e2e_exec cp /root/60-signer.toml.before-cfssl "$cfg"
	e2e_exec systemctl restart cert-rotator-signer.service
	# The next sections start from a signer that leads.
	pid=$(e2e_exec systemctl show -P MainPID cert-rotator-signer.service)
	e2e_wait_for 30 eval '[[ $(lease_holder) == *_"$pid" ]]'
}
