//go:build tools

// The etcd commands tests/k8s/build.sh builds; importing them keeps `go mod tidy`
// from dropping their packages.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
