// Command config-sync keeps a directory shared with the app in step with a ConfigMap (and optionally a
// Secret) and makes the app reload: the dynamic-configuration sidecar of Designing Distributed Systems.
//
// It watches the objects through the Kubernetes API (or, in volume mode, a mounted ConfigMap directory),
// writes every version with the kubelet's atomic layout (a timestamped directory, a ..data link swapped by
// rename, key -> ..data/key links) so a reader never sees half a file or a mix of versions, and then tells
// the app: a signal to its processes, an HTTP request, or a command. See README.md.
package main

import (
	"github.com/outrigger-dev/outrigger/internal/sidecarmain"
)

// version is set at build time with -ldflags '-X main.version=...'.
var version = "dev"

func main() { sidecarmain.Main("config-sync", loadConfig, run) }
