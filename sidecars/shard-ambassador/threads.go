package main

// threadsFor returns how many threads (GOMAXPROCS) the proxy should run Go code on, and whether to set
// it at all: for redis and memcache one, as twemproxy's single event loop, unless the operator set
// GOMAXPROCS; for HTTP, Go's default.
//
// Measured (docs/performance.md): without pipelining, every request wakes a goroutine twice
// (client read, shard reply); with two or more Ps those wake-ups cross threads, which sleep and are woken
// again — about 25 % more CPU per request, and slower than nutcracker. With one P the proxy needs no more
// CPU per request than nutcracker and is still 1.4–2× faster when pipelined. Go sizes GOMAXPROCS from a
// container's CPU limit but never below 2, so a sidecar would not get one P by itself.
func threadsFor(protocol string, lookupEnv func(string) (string, bool)) (int, bool) {
	if _, set := lookupEnv("GOMAXPROCS"); set || protocol == "http" {
		return 0, false
	}
	return 1, true
}
