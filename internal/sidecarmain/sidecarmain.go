// Package sidecarmain is the main function the sidecars share: settings parsed and checked once, then
// run(ctx, cfg) until SIGTERM, so that every image starts, refuses bad settings and stops the same way
// (exit codes, one error line per bad setting) and a fix to that lands in all five at once.
package sidecarmain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// LoadFunc parses a sidecar's settings from its flags and environment into its config, writing -h's
// help to help (then returning flag.ErrHelp). An error's lines each name one invalid setting.
type LoadFunc[C any] func(args []string, lookupEnv func(string) (string, bool), help io.Writer) (C, error)

// RunFunc runs the sidecar until ctx is done (SIGTERM or an interrupt) or it fails.
type RunFunc[C any] func(ctx context.Context, cfg C) error

// Main is a sidecar's main: it exits 0 after -h, 2 when the settings are invalid (one line per problem
// on stderr, each starting with the sidecar's name, before anything starts), 1 when run fails, and 0
// when run returns without an error (after SIGTERM).
func Main[C any](name string, load LoadFunc[C], run RunFunc[C]) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := exitCode(ctx, name, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, load, run)
	stop()
	os.Exit(code)
}

func exitCode[C any](ctx context.Context, name string, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer, load LoadFunc[C], run RunFunc[C]) int {
	cfg, err := load(args, lookupEnv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", name, line)
		}
		return 2
	}
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
