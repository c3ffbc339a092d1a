//go:build !linux

package fifopoll

import "net"

// Wrap serves connections in readiness order on Linux only (fifopoll_linux.go); elsewhere conn is used
// as is.
func Wrap(conn net.Conn) net.Conn { return conn }
