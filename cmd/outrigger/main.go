// Command outrigger is Outrigger's CLI. `outrigger inject` injects sidecars into manifests, with the
// webhook's own injection core and config file (like istioctl kube-inject); `outrigger sidecars` prints the
// catalog with every parameter. For day two, against a cluster: `status` finds pods whose sidecars today's
// config would render otherwise, `restart` rolls their workloads, `explain` says why a pod got what it got.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

var version = "dev"

const usage = `Usage:
  outrigger inject -f FILE|- [--config FILE] [--namespace NS]   inject sidecars into manifests
  outrigger sidecars [--config FILE] [-o text|yaml]              print the catalog and its parameters
  outrigger status [-n NS|-A] [-v] [--fail-on stale,missing]     which pods' sidecars are stale or missing
  outrigger restart (--stale|--missing|KIND/NAME...) [-n NS|-A]  roll them, one workload at a time
  outrigger explain (pod NAME [-n NS] | -f FILE)                  why each sidecar was injected or not
  outrigger render --policy [--config FILE]                      injection as admission policies, no webhook
  outrigger version
Run "outrigger COMMAND --help" for a command's flags.
`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// run executes one command and returns the process exit code: 0 done, 1 refused or failed, 2 bad usage.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "status":
		return statusCommand(ctx, args[1:], stdout, stderr)
	case "restart":
		return restartCommand(ctx, args[1:], stdout, stderr)
	case "explain":
		return explainCommand(ctx, args[1:], stdin, stdout, stderr)
	case "render":
		return renderCommand(args[1:], stdout, stderr)
	case "inject":
		return injectCommand(args[1:], stdin, stdout, stderr)
	case "sidecars":
		return sidecarsCommand(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "outrigger: unknown command %q; accepted: inject, sidecars, status, restart, explain, render, version\n%s", args[0], usage)
	return 2
}
