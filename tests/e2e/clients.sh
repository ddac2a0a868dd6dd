# shellcheck shell=bash
# tests/e2e/clients.sh - the real clients of a kubeadm node, run inside the e2e
# container against what the stand-ins serve: etcdctl against the real etcd, kubectl
# against the apiserver stand-in (which requires a client certificate of ca.crt), a
# scrape of the real node_exporter. Source it after lib.sh; every function returns
# the client's exit status, so `e2e_check DESC FUNCTION ...` fails when the client
# does.
#
# The binaries are the host's (e2e_bind_host_binary, see e2e_clients_bind):
# Debian 12's etcd-server/etcd-client and prometheus-node-exporter, and the kubectl
# of the machine image (a static Go binary).

E2E_PKI=/etc/kubernetes/pki

# e2e_clients_bind: bind etcd, etcdctl, kubectl and prometheus-node-exporter from
# the host into the next container. Fails naming the first one missing.
e2e_clients_bind() {
	e2e_bind_host_binary etcd etcdctl kubectl prometheus-node-exporter
}

# etcdctl_as CLIENT ARGS...: etcdctl v3 on https://127.0.0.1:2379 with CLIENT's
# certificate, trusting etcd/ca.crt alone. CLIENT: apiserver-etcd-client (the
# apiserver's, pki/apiserver-etcd-client.*) or healthcheck-client (the probe's,
# pki/etcd/healthcheck-client.*).
etcdctl_as() {
	local client=$1 base
	shift
	case $client in
	apiserver-etcd-client) base=$E2E_PKI/apiserver-etcd-client ;;
	healthcheck-client) base=$E2E_PKI/etcd/healthcheck-client ;;
	*) _e2e_die "etcdctl_as: unknown client $client"; return 1 ;;
	esac
	e2e_exec env ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 \
		--cacert="$E2E_PKI/etcd/ca.crt" --cert="$base.crt" --key="$base.key" \
		--dial-timeout=5s --command-timeout=10s "$@"
}

# etcd_healthy CLIENT: `endpoint health` says healthy (exit 0 alone is not enough:
# etcdctl 3.4 exits 1 for an unhealthy endpoint, but say so in the output too).
etcd_healthy() {
	local out
	out=$(etcdctl_as "$1" endpoint health 2>&1) || { e2e_log "  $out"; return 1; }
	[[ $out == *"is healthy"* ]] || { e2e_log "  $out"; return 1; }
}

# etcd_put_get CLIENT KEY VALUE: put KEY=VALUE, then get it back (value only).
etcd_put_get() {
	etcdctl_as "$1" put "$2" "$3" >/dev/null || return 1
	etcd_get_is "$1" "$2" "$3"
}

# etcd_get_is CLIENT KEY VALUE: KEY holds VALUE.
etcd_get_is() {
	local got
	got=$(etcdctl_as "$1" get --print-value-only "$2") || return 1
	[[ $got == "$3" ]] || { e2e_log "  $2 is '$got', not '$3'"; return 1; }
}

# kubectl_ok KUBECONFIG: kubectl (its discovery cache in /tmp, not the node's
# /root/.kube) with KUBECONFIG's server, CA and client certificate
# gets /healthz. The stand-in's `s_server -www` answers 200 with an HTML page only
# after a TLS handshake in which the client certificate verified against ca.crt, so
# exit 0 means kubectl trusted the server by the kubeconfig's CA and the server
# accepted the kubeconfig's client certificate.
kubectl_ok() {
	local out
	out=$(e2e_exec kubectl --kubeconfig "$1" --cache-dir=/tmp/kubectl-cache --request-timeout=10s get --raw /healthz 2>&1) ||
		{ e2e_log "  $1: ${out:0:300}"; return 1; }
	[[ $out == *'<HTML>'* ]] || { e2e_log "  $1: unexpected answer ${out:0:200}"; return 1; }
}

# kubectl_refused KUBECONFIG: kubectl fails, in the TLS handshake (not for a missing
# file or a bad kubeconfig, which would make a refusal check pass for nothing).
kubectl_refused() {
	local out
	if out=$(e2e_exec kubectl --kubeconfig "$1" --cache-dir=/tmp/kubectl-cache --request-timeout=10s get --raw /healthz 2>&1); then
		e2e_log "  $1 was accepted"
		return 1
	fi
	[[ $out == *tls:* || $out == *certificate* ]] || { e2e_log "  $1: ${out:0:300}"; return 1; }
}

# foreign_kubeconfig FROM OUT: write OUT in the container, a copy of kubeconfig FROM
# whose client certificate (same subject) is signed by a throwaway CA, not ca.crt.
foreign_kubeconfig() {
	e2e_exec bash -euc '
		from=$1 out=$2 d=$(mktemp -d)
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" \
			-subj /CN=kubernetes -days 2 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -keyout "$d/c.key" -out "$d/c.csr" \
			-subj "/O=kubeadm:cluster-admins/CN=kubernetes-admin" 2>/dev/null
		openssl x509 -req -in "$d/c.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -days 1 \
			-set_serial 0x1234 -out "$d/c.crt" 2>/dev/null
		cp "$from" "$out"
		kubectl --kubeconfig "$out" config set-credentials "$(kubectl --kubeconfig "$out" config view -o jsonpath="{.users[0].name}")" \
			--client-certificate="$d/c.crt" --client-key="$d/c.key" --embed-certs=true >/dev/null
		rm -rf "$d"
	' _ "$1" "$2"
}

# scrape HOST:PORT PATH: an HTTP/1.0 GET from inside the container with bash's
# /dev/tcp (the rootfs has no curl or wget); prints the body, fails unless 200.
scrape() {
	e2e_exec bash -c '
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$1" >&3
		IFS= read -r status <&3
		[[ $status == "HTTP/1."?" 200"* ]] || { echo "$status" >&2; exit 1; }
		while IFS= read -r line <&3 && [[ $line != $'"'"'\r'"'"' ]]; do :; done
		cat <&3
	' _ "$1" "$2"
}
