#!/usr/bin/env bash
# Builds the real Kubernetes components the tests run (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubeadm, kubelet, kubectl, etcd, etcdctl, and the fake CRI runtime the kubelet
# talks to)
# from their Go modules at the versions pinned in tests/k8s/{kubernetes,etcd}/go.mod, the way
# upstream's hack/lib/golang.sh does: CGO_ENABLED=0, -trimpath, upstream's build tags,
# -ldflags "-s -w" plus the version variables.
#
# The binaries go to a cache directory outside the repository, keyed by the pinned versions
# and the go.sum files: a second run is a no-op, a new pin rebuilds. Binaries are never
# committed. Prints the directory holding them on its last line.
#
#   tests/k8s/build.sh          build if needed; print the bin directory
#   tests/k8s/build.sh --dir    print the bin directory it would use, build nothing
#
# Environment: CERT_ROTATOR_K8S_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/cert-rotator/k8s).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

module_version() { # module_version DIR MODULE: the version DIR/go.mod requires MODULE at
	sed -n "s#^[[:space:]]*\(require[[:space:]]\+\)\?$2[[:space:]]\+\(v[^[:space:]]*\).*#\2#p" "$1/go.mod" | head -n1
}
k8s_version="$(module_version "$here/kubernetes" k8s.io/kubernetes)"
etcd_version="$(module_version "$here/etcd" go.etcd.io/etcd/server/v3)"
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || {
	echo "build.sh: cannot read the pinned versions from tests/k8s/*/go.mod" >&2
	exit 2
}
key="$(cat "$here"/kubernetes/go.{mod,sum} "$here"/etcd/go.{mod,sum} "$here"/kubernetes/cmd/*/main.go "$0" |
	sha256sum | cut -c1-12)"
cache="${CERT_ROTATOR_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cert-rotator/k8s}"
bin="$cache/kubernetes-$k8s_version-etcd-$etcd_version-$key/bin"

if [ "${1:-}" = "--dir" ]; then
	echo "$bin"
	exit 0
fi
if [ -f "$bin/.complete" ]; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || {
	echo "build.sh: go is not installed (the tests build the Kubernetes components with Go)" >&2
	exit 1
}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$cache"
staging="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
started=$(date +%s)

minor="${k8s_version#v1.}"
minor="${minor%%.*}"
build_date="$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)"
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	version_flags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

echo "build.sh: building Kubernetes $k8s_version and etcd $etcd_version into $bin" >&2
(
	cd "$here/kubernetes"
	go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "-s -w$version_flags" -o "$staging/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubeadm \
		k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/cmd/kubectl \
		./cmd/fake-cri \
		./cmd/apiserver-poll
)
(
	cd "$here/etcd"
	go build -trimpath -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3
	go build -trimpath -ldflags "-s -w" -o "$staging/etcdctl" go.etcd.io/etcd/etcdctl/v3
)
"$staging/kube-apiserver" --version | grep -qx "Kubernetes $k8s_version" || {
	echo "build.sh: kube-apiserver does not report $k8s_version: $("$staging/kube-apiserver" --version)" >&2
	exit 1
}
echo "$(($(date +%s) - started))" >"$staging/.build-seconds"
touch "$staging/.complete"
rm -rf "$bin"
mkdir -p "$(dirname "$bin")"
mv "$staging" "$bin"
trap - EXIT
echo "build.sh: built in $(cat "$bin/.build-seconds") s" >&2
echo "$bin"
