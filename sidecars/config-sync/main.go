// Command config-sync keeps a directory shared with the app in step with a ConfigMap (and optionally a
// Secret) and makes the app reload: the dynamic-configuration sidecar of Designing Distributed Systems.
//
// It watches the objects through the Kubernetes API (or, in volume mode, a mounted ConfigMap directory),
// writes every version with the kubelet's atomic layout (a timestamped directory, a ..data link swapped by
// rename, key -> ..data/key links) so a reader never sees half a file or a mix of versions, and then tells
// the app: a signal to its processes, an HTTP request, or a command. See README.md.
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
			fmt.Fprintf(os.Stderr, "config-sync: %s\n", line)
		}
		os.Exit(2)
	}
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "config-sync: %v\n", err)
		os.Exit(1)
	}
}
