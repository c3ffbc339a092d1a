// Command pause is the sandbox ("infra") container of the local node's pods (e2e/cluster, NodeOptions): the
// process that holds a pod's namespaces while its containers come and go. It blocks until SIGTERM or
// SIGINT and, as PID 1 of a pod with shareProcessNamespace: true, reaps the zombies the pod's other
// processes leave behind.
//
// Why our own: registry.k8s.io/pause cannot be pulled here (no registry), and the node must not pull
// anything. `make image-pause` builds it FROM scratch as localhost/outrigger/pause:0.1.0.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "pause: takes no arguments; it blocks until SIGTERM and reaps zombies")
		os.Exit(2)
	}
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking (one SIGCHLD may stand for several exits).
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
