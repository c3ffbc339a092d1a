// Command https-proxy is a sidecar that puts HTTPS in front of an app serving plain HTTP on localhost.
//
// It terminates TLS (HTTP/1.1 and HTTP/2 by ALPN) on LISTEN_PORT and reverse-proxies to 127.0.0.1:PROXY_PORT,
// streaming bodies and passing WebSocket upgrades through. The certificate is reloaded without a restart
// when its files change (including Kubernetes' ..data symlink swap) or on SIGHUP; a failed reload keeps the
// previous certificate. With CLIENT_CA_PATH it requires client certificates (optionally allow-listed by
// name). STATUS_PORT serves /healthz, /readyz and /metrics. SIGTERM drains in-flight requests.
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

// version is set at build time (-ldflags '-X main.version=...').
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
			fmt.Fprintf(os.Stderr, "https-proxy: %s\n", line)
		}
		os.Exit(2)
	}
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "https-proxy: %v\n", err)
		os.Exit(1)
	}
}
