#!/bin/bash
# age-ca.sh BASE DAYS_LEFT [LIFETIME_DAYS]: make the CA BASE.crt (with BASE.key) one
# near its end, as on a cluster made LIFETIME_DAYS - DAYS_LEFT days ago: re-issue it
# with the same key, subject and subject key identifier (what kubeadm's CA has: the
# SHA-1 of the public key), a new serial, valid from then for LIFETIME_DAYS (default
# 3650, kubeadm's) so that DAYS_LEFT days remain, and put it into every kubeconfig
# under /etc/kubernetes and /root/.kube that embeds the old one. Leaves signed by
# the key keep verifying (same key, same identifiers). Run INSIDE the e2e container,
# on a node the fixture builder laid down, before its components start.
set -euo pipefail
base=$1 left=$2 lifetime=${3:-3650}
crt=$base.crt key=$base.key
[[ -s $crt && -s $key ]] || { echo "age-ca: $crt or $key missing" >&2; exit 1; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
now=$(date -u +%s)
start=$(date -u -d "@$((now - (lifetime - left) * 86400))" +%Y%m%d%H%M%SZ)
end=$(date -u -d "@$((now + left * 86400))" +%Y%m%d%H%M%SZ)
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
[any]
commonName = optional
organizationName = optional
[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign
subjectKeyIdentifier = hash
EOF
: >"$d/index.txt"
openssl rand -hex 16 >"$d/serial"
# The subject byte for byte (a PrintableString stays one): Go finds a leaf's issuer by
# the exact bytes of its issuer name.
openssl x509 -x509toreq -in "$crt" -signkey "$key" -out "$d/ca.csr" 2>/dev/null
openssl ca -batch -selfsign -preserveDN -notext -config "$d/ca.cnf" -keyfile "$key" -in "$d/ca.csr" \
	-startdate "${start:2}" -enddate "${end:2}" -extensions ext -out "$d/new.crt" 2>"$d/ca.log" ||
	{ cat "$d/ca.log" >&2; exit 1; }
old64=$(base64 -w0 <"$crt")
new64=$(base64 -w0 <"$d/new.crt")
for f in /etc/kubernetes/*.conf /root/.kube/config; do
	[[ -f $f ]] && grep -qF "certificate-authority-data: $old64" "$f" || continue
	sed -i "s|certificate-authority-data: $old64|certificate-authority-data: $new64|" "$f"
	echo "age-ca: $f"
done
cat "$d/new.crt" >"$crt"
echo "age-ca: $crt valid $start - $end ($left of $lifetime days left)"
