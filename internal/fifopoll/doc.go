// Package fifopoll serves TCP connections from an epoll instance of its own and wakes their readers in the
// order the kernel reported them ready: first ready, first served. Go's runtime runs the goroutines one
// epoll_wait made ready in the reverse order, which under load serves the connection that waited longest
// last and widens the latency tail (fifopoll_linux.go says how, docs/performance.md by how much).
//
// Wrap is the whole API: it takes a *net.TCPConn and returns a net.Conn (conformant: x/net's nettest
// suite runs over it). Off Linux, or if the poller cannot start, it returns the connection as is.
// https-proxy (client and app connections) and shard-ambassador (client and shard connections) use it
// unless their FIFO_POLLER=false.
package fifopoll
