// Command topz is the book's modular sidecar: from a pod's shared PID namespace it serves /topz, a live
// table of every process it can see (PID, PPID, user, state, CPU% over a sampling window, RSS, memory %
// of the process's cgroup limit, threads, start time and the redacted command line) as aligned text, JSON
// or an auto-refreshing HTML page, next to /healthz and /metrics on one port. It reads /proc through
// github.com/prometheus/procfs and never writes anything.
package main

import (
	"context"
	"os"

	"github.com/outrigger-dev/outrigger/internal/sidecarmain"
)

// version is set at build time with -ldflags '-X main.version=...'.
var version = "dev"

func main() {
	sidecarmain.Main("topz", loadConfig, func(ctx context.Context, cfg Config) error { return run(ctx, cfg, os.Stderr) })
}
