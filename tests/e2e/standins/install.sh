#!/bin/sh
# Install the kubeadm-node stand-ins. Run INSIDE the e2e container, from a
# copy of this directory:  /path/to/standins/install.sh [--now]
#   --now   also start them (kubelet.service needs
#           /var/lib/kubelet/pki/kubelet.{crt,key}; fake-kubeadm-node.sh
#           makes a complete throwaway node PKI)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
now=
case ${1:-} in
--now) now=--now ;;
"") ;;
*) echo "usage: $0 [--now]" >&2; exit 2 ;;
esac
install -m 0755 "$here/kubelet-standin" "$here/static-pods-standin" /usr/local/sbin/
install -m 0755 "$here/fake-kubeadm-node.sh" /usr/local/sbin/fake-kubeadm-node
install -m 0644 "$here/kubelet.service" "$here/static-pods.service" /etc/systemd/system/
mkdir -p /etc/kubernetes/manifests /etc/kubernetes/pki /var/lib/kubelet/pki
systemctl daemon-reload
systemctl enable $now kubelet.service static-pods.service
