// Command shard-ambassador is the book's ambassador: a localhost proxy that makes several redis,
// memcache or HTTP servers look like one, sending each request to the shard that owns its key. Keys land
// exactly where twemproxy (nutcracker) puts them, so a nutcracker.yml can be dropped in unchanged.
package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"

	"github.com/outrigger-dev/outrigger/internal/sidecarmain"
)

var version = "dev"

func main() {
	sidecarmain.Main("shard-ambassador", loadConfig, func(ctx context.Context, cfg *Config) error {
		if n, set := threadsFor(cfg.Protocol, os.LookupEnv); set {
			runtime.GOMAXPROCS(n)
		}
		return run(ctx, cfg, slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("version", version))
	})
}
