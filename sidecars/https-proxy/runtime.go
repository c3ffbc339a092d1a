package main

import "github.com/outrigger-dev/outrigger/internal/gcdefaults"

// Go runtime defaults. The proxy's live heap is small (about 2 MB with 64 busy keep-alive
// connections), so with Go's default GOGC=100 the collector ran some 50 times a second under load and
// took about 5% of the CPU (8% with a TLS handshake per request). A larger GOGC lets the heap grow
// further between collections; the memory limit keeps it below the catalog's 64 Mi container limit
// (near the limit the collector runs as often as it must, whatever GOGC says). Both are the Go
// runtime's own variables: GOGC or GOMEMLIMIT in the environment wins over these defaults.
const (
	defaultGOGC        = 400
	defaultMemoryLimit = 48 << 20 // bytes: GOMEMLIMIT=48MiB
)

// tuneRuntime applies these defaults where the environment does not set GOGC or GOMEMLIMIT and returns
// the values in effect (for the start-up log).
func tuneRuntime(lookupEnv func(string) (string, bool)) (gogc string, memoryLimit int64) {
	return gcdefaults.Apply(lookupEnv, defaultGOGC, defaultMemoryLimit)
}
