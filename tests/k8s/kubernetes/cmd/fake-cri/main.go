// fake-cri: test infrastructure only. The real kubelet needs a CRI runtime; no container
// runtime runs static pods here, so the kubelet talks to upstream's in-memory fake
// (k8s.io/cri-client/pkg/fake). Sandboxes and containers exist only in its memory; the
// static pods' commands are run as processes by tests/k8s/static-pods.sh.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cri-client/pkg/fake"
)

func main() {
	endpoint := flag.String("endpoint", "unix:///run/fake-cri.sock", "the CRI socket to serve")
	flag.Parse()
	runtime := fake.NewFakeRemoteRuntime()
	if err := runtime.Start(*endpoint); err != nil {
		fmt.Fprintf(os.Stderr, "fake-cri: %v\n", err)
		os.Exit(1)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	runtime.Stop()
}
