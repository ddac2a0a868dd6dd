#!/bin/bash
# fake-kubeadm-node.sh: lay out a throwaway kubeadm control-plane node
# (certificates, kubeconfigs, static pod manifests, kubelet PKI) with openssl,
# for e2e tests. Run INSIDE the e2e container. Mimics kubeadm (v1.29+) file
# names, subjects, SANs, key usages and PEM types (RSA 2048, PKCS#1 keys).
#
# Environment:
#   NODE_NAME   node/host name          (default: hostname)
#   NODE_IP     advertise address       (default 127.0.0.1)
#   DAYS        leaf certificate validity in days  (default 365)
#   CA_DAYS     CA validity in days                 (default 3650)
#   K8S_DIR     (default /etc/kubernetes)
#   KUBELET_DIR (default /var/lib/kubelet)
#   KUBE_HOME   where .kube/config goes (default /root)
# Options:
#   --leaves-only   keep existing CAs and keys-of-CAs, re-issue leaves only
set -euo pipefail
umask 022

NODE_NAME=${NODE_NAME:-$(hostname)}
NODE_IP=${NODE_IP:-127.0.0.1}
DAYS=${DAYS:-365}
CA_DAYS=${CA_DAYS:-3650}
K8S=${K8S_DIR:-/etc/kubernetes}
KUBELET=${KUBELET_DIR:-/var/lib/kubelet}
KUBE_HOME=${KUBE_HOME:-/root}
PKI=$K8S/pki
SERVER="https://$NODE_IP:6443"
leaves_only=0
[[ ${1:-} == --leaves-only ]] && leaves_only=1

mkdir -p "$PKI/etcd" "$K8S/manifests" "$KUBELET/pki" "$KUBE_HOME/.kube"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey() { # FILE
	(umask 077 && openssl genrsa -traditional -out "$1" 2048 2>/dev/null)
}

serial() { echo "0x$(openssl rand -hex 16)"; }

ca() { # BASE CN
	[[ $leaves_only == 1 && -s $1.crt && -s $1.key ]] && return 0
	newkey "$1.key"
	openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days "$CA_DAYS" \
		-set_serial "$(serial)" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
		-out "$1.crt"
}

# leaf BASE CA_BASE SUBJECT EKU [SAN]
leaf() {
	local base=$1 cab=$2 subj=$3 eku=$4 san=${5:-}
	newkey "$base.key"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		echo "authorityKeyIdentifier=keyid"
		[[ -n $san ]] && echo "subjectAltName=$san"
	} >"$tmp/ext.cnf"
	openssl req -new -key "$base.key" -subj "$subj" -out "$tmp/req.csr"
	openssl x509 -req -in "$tmp/req.csr" -CA "$cab.crt" -CAkey "$cab.key" \
		-set_serial "$(serial)" -days "$DAYS" -extfile "$tmp/ext.cnf" \
		-out "$base.crt" 2>/dev/null
}

b64() { base64 -w0 <"$1"; }

# kubeconfig FILE USER CN O  (client cert embedded, like kubeadm)
kubeconfig() {
	local file=$1 user=$2 cn=$3 o=${4:-} subj
	subj="/CN=$cn"
	[[ -n $o ]] && subj="/O=$o/CN=$cn"
	leaf "$tmp/client" "$PKI/ca" "$subj" clientAuth
	cat >"$file.tmp" <<KCFG
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: $(b64 "$PKI/ca.crt")
    server: $SERVER
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: $user
  name: $user@kubernetes
current-context: $user@kubernetes
kind: Config
preferences: {}
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$tmp/client.crt")
    client-key-data: $(b64 "$tmp/client.key")
KCFG
	chmod 600 "$file.tmp"
	mv -f "$file.tmp" "$file"
}

# --- CAs
ca "$PKI/ca" kubernetes
ca "$PKI/front-proxy-ca" front-proxy-ca
ca "$PKI/etcd/ca" etcd-ca
if [[ $leaves_only == 0 || ! -s $PKI/sa.key ]]; then
	newkey "$PKI/sa.key"
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi

# --- leaves in /etc/kubernetes/pki
leaf "$PKI/apiserver" "$PKI/ca" "/CN=kube-apiserver" serverAuth \
	"DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:$NODE_IP"
leaf "$PKI/apiserver-kubelet-client" "$PKI/ca" "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" clientAuth
leaf "$PKI/front-proxy-client" "$PKI/front-proxy-ca" "/CN=front-proxy-client" clientAuth
etcd_san="DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
leaf "$PKI/etcd/server" "$PKI/etcd/ca" "/CN=$NODE_NAME" serverAuth,clientAuth "$etcd_san"
leaf "$PKI/etcd/peer" "$PKI/etcd/ca" "/CN=$NODE_NAME" serverAuth,clientAuth "$etcd_san"
leaf "$PKI/etcd/healthcheck-client" "$PKI/etcd/ca" "/CN=kube-etcd-healthcheck-client" clientAuth
leaf "$PKI/apiserver-etcd-client" "$PKI/etcd/ca" "/CN=kube-apiserver-etcd-client" clientAuth

# --- kubeconfigs
kubeconfig "$K8S/admin.conf" kubernetes-admin kubernetes-admin kubeadm:cluster-admins
kubeconfig "$K8S/super-admin.conf" kubernetes-super-admin kubernetes-super-admin system:masters
kubeconfig "$K8S/controller-manager.conf" system:kube-controller-manager system:kube-controller-manager
kubeconfig "$K8S/scheduler.conf" system:kube-scheduler system:kube-scheduler
install -m 600 "$K8S/admin.conf" "$KUBE_HOME/.kube/config"

# --- kubelet: client cert (rotated by the kubelet itself on a real node)
leaf "$tmp/kc" "$PKI/ca" "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
stamp=$(date -u +%Y-%m-%d-%H-%M-%S)
cat "$tmp/kc.crt" "$tmp/kc.key" >"$KUBELET/pki/kubelet-client-$stamp.pem"
chmod 600 "$KUBELET/pki/kubelet-client-$stamp.pem"
ln -sfn "$KUBELET/pki/kubelet-client-$stamp.pem" "$KUBELET/pki/kubelet-client-current.pem"
cat >"$K8S/kubelet.conf" <<KCFG
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: $(b64 "$PKI/ca.crt")
    server: $SERVER
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:$NODE_NAME
  name: system:node:$NODE_NAME@kubernetes
current-context: system:node:$NODE_NAME@kubernetes
kind: Config
preferences: {}
users:
- name: system:node:$NODE_NAME
  user:
    client-certificate: $KUBELET/pki/kubelet-client-current.pem
    client-key: $KUBELET/pki/kubelet-client-current.pem
KCFG
chmod 600 "$K8S/kubelet.conf"

# --- kubelet serving cert: self-signed "<node>-ca@<ts>" CA + leaf, and the
# file holds the leaf followed by that CA (what the kubelet writes itself).
ts=$(date +%s)
ca "$tmp/kubelet-ca" "$NODE_NAME-ca@$ts"
leaf "$tmp/kubelet" "$tmp/kubelet-ca" "/CN=$NODE_NAME@$ts" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
cat "$tmp/kubelet.crt" "$tmp/kubelet-ca.crt" >"$KUBELET/pki/kubelet.crt"
install -m 600 "$tmp/kubelet.key" "$KUBELET/pki/kubelet.key"

cat >"$KUBELET/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  x509:
    clientCAFile: $PKI/ca.crt
cgroupDriver: systemd
rotateCertificates: true
staticPodPath: $K8S/manifests
YAML

# --- static pod manifests (trimmed kubeadm ones; only the cert flags matter)
manifest() { # NAME ARGS...
	local name=$1 f=$K8S/manifests/$1.yaml a
	shift
	{
		cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: $name
    tier: control-plane
  name: $name
  namespace: kube-system
spec:
  containers:
  - command:
    - $name
YAML
		for a in "$@"; do echo "    - $a"; done
		cat <<YAML
    image: registry.k8s.io/$name:v1.30.0
    name: $name
  hostNetwork: true
  priorityClassName: system-node-critical
YAML
	} >"$f.tmp"
	chmod 600 "$f.tmp"
	mv -f "$f.tmp" "$f"
}
if [[ $leaves_only == 0 ]]; then
	manifest etcd --cert-file="$PKI/etcd/server.crt" --key-file="$PKI/etcd/server.key" \
		--peer-cert-file="$PKI/etcd/peer.crt" --peer-key-file="$PKI/etcd/peer.key" \
		--trusted-ca-file="$PKI/etcd/ca.crt" --listen-client-urls=https://127.0.0.1:2379
	manifest kube-apiserver --advertise-address="$NODE_IP" --secure-port=6443 \
		--client-ca-file="$PKI/ca.crt" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--etcd-certfile="$PKI/apiserver-etcd-client.crt" --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
		--proxy-client-cert-file="$PKI/front-proxy-client.crt" \
		--proxy-client-key-file="$PKI/front-proxy-client.key"
	manifest kube-controller-manager --kubeconfig="$K8S/controller-manager.conf" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key"
	manifest kube-scheduler --kubeconfig="$K8S/scheduler.conf"
fi
echo "fake kubeadm node '$NODE_NAME' ($NODE_IP): leaves valid $DAYS days"
