// Command coredns is the local cluster's DNS server: CoreDNS (github.com/coredns/coredns, from the Go
// module proxy) linked with only the plugins the cluster's Corefile uses, so that it builds in a minute
// and its image stays small. It runs as a pod behind the kube-dns Service (e2e/cluster/dns.go), answers
// for cluster.local from the API server (the kubernetes plugin), and forwards nothing: the cluster has no
// upstream network.
//
// It is its own module (see go.mod): CoreDNS's client-go version never meets the project's.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives is CoreDNS's own plugin order (core/dnsserver/zdirectives.go) reduced to the plugins linked
// above: the order a request passes through them is CoreDNS's, not ours.
var directives = []string{"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
