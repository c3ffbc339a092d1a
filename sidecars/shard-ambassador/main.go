// Command shard-ambassador is the book's ambassador: a localhost proxy that makes several redis,
// memcache or HTTP servers look like one, sending each request to the shard that owns its key. Keys land
// exactly where twemproxy (nutcracker) puts them, so a nutcracker.yml can be dropped in unchanged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

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
			fmt.Fprintln(os.Stderr, "shard-ambassador: "+line)
		}
		os.Exit(2)
	}
	if n, set := threadsFor(cfg.Protocol, os.LookupEnv); set {
		runtime.GOMAXPROCS(n)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("version", version)
	if err := run(ctx, cfg, log); err != nil {
		log.Error("stopped", "err", err)
		os.Exit(1)
	}
}
