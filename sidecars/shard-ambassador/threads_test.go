package main

import "testing"

func TestThreadsForOneThreadUnlessHTTPOrSetByTheOperator(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	four := func(k string) (string, bool) { return "4", k == "GOMAXPROCS" }
	for _, c := range []struct {
		protocol string
		env      func(string) (string, bool)
		n        int
		set      bool
	}{
		{"redis", none, 1, true},
		{"memcache", none, 1, true},
		{"http", none, 0, false},
		{"redis", four, 0, false}, // the runtime already honours GOMAXPROCS=4
	} {
		if n, set := threadsFor(c.protocol, c.env); n != c.n || set != c.set {
			t.Errorf("threadsFor(%s) = %d, %v; want %d, %v", c.protocol, n, set, c.n, c.set)
		}
	}
}
