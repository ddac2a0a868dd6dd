#!/bin/bash
# age-leaves.sh [DAYS_AGO_EXPIRED] [LIFETIME_DAYS]: make a kubeadm node's leaves expired, as
# on a node powered off for longer than their life. Test infrastructure only: run INSIDE
# the test container on a node kubeadm made, with its components stopped.
#
# Every leaf certificate under /etc/kubernetes/pki, every kubeconfig's embedded client
# certificate and the kubelet's client certificate (kubelet-client-current.pem) is re-signed
# by its own CA, with its own key, subject and extensions, valid for LIFETIME_DAYS (365)
# and expired DAYS_AGO_EXPIRED (35) days ago. The CAs are left alone; so is kubelet.crt,
# which the kubelet self-signed with a CA key it did not keep.
set -euo pipefail
ago=${1:-35} lifetime=${2:-365}
pki=/etc/kubernetes/pki
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
now=$(date -u +%s)
start=$(date -u -d "@$((now - (ago + lifetime) * 86400))" +%Y%m%d%H%M%SZ)
end=$(date -u -d "@$((now - ago * 86400))" +%Y%m%d%H%M%SZ)
cat >"$d/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
dir = $d
database = $d/index.txt
new_certs_dir = $d
serial = $d/serial
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
copy_extensions = copyall
[any]
organizationName = optional
commonName = optional
EOF
: >"$d/index.txt"

# resign CERT_IN KEY CA_BASE CERT_OUT
resign() {
	openssl rand -hex 16 >"$d/serial"
	openssl x509 -x509toreq -in "$1" -signkey "$2" -copy_extensions copyall -out "$d/req.pem" 2>/dev/null
	openssl ca -batch -preserveDN -notext -config "$d/ca.cnf" -cert "$3.crt" -keyfile "$3.key" \
		-in "$d/req.pem" -startdate "${start:2}" -enddate "${end:2}" -out "$d/new.pem" 2>"$d/ca.log" ||
		{ cat "$d/ca.log" >&2; return 1; }
	# openssl ca prints nothing but the certificate with -notext; keep the file's mode.
	cat "$d/new.pem" >"$4"
}

for leaf in apiserver:ca apiserver-kubelet-client:ca apiserver-etcd-client:etcd/ca \
	front-proxy-client:front-proxy-ca etcd/server:etcd/ca etcd/peer:etcd/ca \
	etcd/healthcheck-client:etcd/ca; do
	name=${leaf%%:*} ca=${leaf#*:}
	[[ -f $pki/$name.crt ]] || continue
	resign "$pki/$name.crt" "$pki/$name.key" "$pki/$ca" "$pki/$name.crt"
	echo "aged $pki/$name.crt"
done

for conf in /etc/kubernetes/{admin,super-admin,controller-manager,scheduler,kubelet}.conf /root/.kube/config; do
	[[ -f $conf ]] && grep -q 'client-certificate-data:' "$conf" || continue
	grep 'client-certificate-data:' "$conf" | head -n1 | sed 's/.*: *//' | base64 -d >"$d/c.pem"
	grep 'client-key-data:' "$conf" | head -n1 | sed 's/.*: *//' | base64 -d >"$d/k.pem"
	resign "$d/c.pem" "$d/k.pem" "$pki/ca" "$d/aged.pem"
	new=$(base64 -w0 <"$d/aged.pem")
	sed -i "s|^\([[:space:]]*client-certificate-data:\).*|\1 $new|" "$conf"
	echo "aged $conf"
done

pem=/var/lib/kubelet/pki/kubelet-client-current.pem
if [[ -e $pem ]]; then
	real=$(readlink -f "$pem")
	openssl x509 -in "$real" -out "$d/c.pem"
	openssl pkey -in "$real" -out "$d/k.pem"
	resign "$d/c.pem" "$d/k.pem" "$pki/ca" "$d/aged.pem"
	cat "$d/aged.pem" "$d/k.pem" >"$real"
	echo "aged $real"
fi
