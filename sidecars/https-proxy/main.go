// Command https-proxy is a sidecar that puts HTTPS in front of an app serving plain HTTP on localhost.
//
// It terminates TLS (HTTP/1.1 and HTTP/2 by ALPN) on LISTEN_PORT and reverse-proxies to 127.0.0.1:PROXY_PORT,
// streaming bodies and passing WebSocket upgrades through. The certificate is reloaded without a restart
// when its files change (including Kubernetes' ..data symlink swap) or on SIGHUP; a failed reload keeps the
// previous certificate. With CLIENT_CA_PATH it requires client certificates (optionally allow-listed by
// name). STATUS_PORT serves /healthz, /readyz and /metrics. SIGTERM drains in-flight requests.
package main

import (
	"github.com/outrigger-dev/outrigger/internal/sidecarmain"
)

// version is set at build time (-ldflags '-X main.version=...').
var version = "dev"

func main() { sidecarmain.Main("https-proxy", loadConfig, run) }
