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
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/outrigger-dev/outrigger/internal/gcdefaults"
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
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(os.Stderr, "outrigger-webhook: %s\n", line)
		}
		os.Exit(2)
	}
	gogc, memoryLimit := gcdefaults.Apply(os.LookupEnv, server.DefaultGOGC, server.DefaultMemoryLimit)
	opts.Log = logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil)).WithValues("version", version)
	opts.Log.Info("starting", "gogc", gogc, "memoryLimitBytes", memoryLimit)
	ctrl.SetLogger(opts.Log)
	if err := server.Run(ctx, opts); err != nil {
		msg := "webhook stopped"
		if opts.CheckNamespace != "" {
			msg = "injection check failed"
		}
		opts.Log.Error(err, msg)
		os.Exit(1)
	}
}
