// Command topz is the book's modular sidecar: from a pod's shared PID namespace it serves /topz, a live
// table of every process it can see (PID, PPID, user, state, CPU% over a sampling window, RSS, memory %
// of the process's cgroup limit, threads, start time and the redacted command line) as aligned text, JSON
// or an auto-refreshing HTML page, next to /healthz and /metrics on one port. It reads /proc through
// github.com/prometheus/procfs and never writes anything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags '-X main.version=...'.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := loadConfig(os.Args[1:], os.LookupEnv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(os.Stderr, "topz: %s\n", line)
		}
		os.Exit(2)
	}
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "topz: %v\n", err)
		os.Exit(1)
	}
}
