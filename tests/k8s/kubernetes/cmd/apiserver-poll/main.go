// apiserver-poll: test infrastructure only. A client of the API server during a rotation
// pass (tests/k8s/controlplane.sh, check 3): every --interval it asks /readyz and gets the
// default namespace, each with its own short timeout, as client-go's clients do (one
// kept-alive connection, re-dialled when it breaks). On SIGTERM, or after --duration, it
// prints one JSON object: requests made, and those that failed, with the first errors.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type result struct {
	Requests int      `json:"requests"`
	Failed   int      `json:"failed"`
	Errors   []string `json:"errors"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", "/etc/kubernetes/admin.conf", "the client's kubeconfig")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between two rounds")
	duration := flag.Duration("duration", 10*time.Minute, "stop after this long at the latest")
	flag.Parse()
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "apiserver-poll: %v\n", err)
		os.Exit(2)
	}
	config.Timeout = 2 * time.Second
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "apiserver-poll: %v\n", err)
		os.Exit(2)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	deadline := time.After(*duration)
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	var r result
	record := func(what string, err error) {
		r.Requests++
		if err != nil {
			r.Failed++
			if len(r.Errors) < 20 {
				r.Errors = append(r.Errors, fmt.Sprintf("%s %s: %v", time.Now().UTC().Format(time.RFC3339Nano), what, err))
			}
		}
	}
	for {
		select {
		case <-stop:
			_ = json.NewEncoder(os.Stdout).Encode(r)
			return
		case <-deadline:
			_ = json.NewEncoder(os.Stdout).Encode(r)
			return
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			record("readyz", err)
			_, err = client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			record("get namespace default", err)
			cancel()
		}
	}
}
