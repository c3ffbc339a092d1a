// Command outrigger-webhook is Outrigger's mutating admission webhook: it injects the catalog's sidecars
// into pods that ask for them. Every setting is an ENV variable with a mirroring flag (see --help).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/outrigger-dev/outrigger/webhook/server"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	opts, err := loadConfig(os.Args[1:], os.LookupEnv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "outrigger-webhook: %v\n", err)
		os.Exit(2)
	}
	opts.Log = logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil)).WithValues("version", version)
	ctrl.SetLogger(opts.Log)
	if err := server.Run(ctx, opts); err != nil {
		opts.Log.Error(err, "webhook stopped")
		os.Exit(1)
	}
}
