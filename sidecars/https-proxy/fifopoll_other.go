//go:build !linux

package main

import "net"

// fifoWrap serves connections in readiness order on Linux only (fifopoll_linux.go); elsewhere conn is used
// as is.
func fifoWrap(conn net.Conn) net.Conn { return conn }
