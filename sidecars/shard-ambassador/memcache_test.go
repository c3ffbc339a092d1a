package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func threeMemcached(t *testing.T) ([]*peer, *Config, string) {
	t.Helper()
	shards := []*peer{startMemcached(t, "127.0.0.1", 0), startMemcached(t, "127.0.0.1", 0), startMemcached(t, "127.0.0.1", 0)}
	cfg := configFor(t, map[string]string{"PROTOCOL": "memcache", "SHARDS": shards[0].addr + ":1," + shards[1].addr + ":1," + shards[2].addr + ":1"})
	byAddr := map[string]*peer{}
	for _, s := range shards {
		byAddr[s.addr] = s
	}
	for i, s := range cfg.Servers {
		shards[i] = byAddr[s.Addr()]
	}
	return shards, cfg, startAmbassador(t, cfg)
}

func TestMemcacheCommands(t *testing.T) {
	shards, cfg, addr := threeMemcached(t)
	r := ringOf(t, cfg)
	c := dial(t, addr)
	line := func(cmd string) string { c.send([]byte(cmd + "\r\n")); return c.readLine() }

	// Keys on every shard, stored through the proxy, each found on its own shard.
	var keys []string
	perShard := map[int]int{}
	for i := 0; len(keys) < 15; i++ {
		k := "mc:" + strconv.Itoa(i)
		if s := r.Pick([]byte(k)); perShard[s] < 5 {
			perShard[s]++
			keys = append(keys, k)
		}
	}
	for i, k := range keys {
		v := "value-" + strconv.Itoa(i)
		if got := line(fmt.Sprintf("set %s %d 0 %d\r\n%s", k, i, len(v), v)); got != "STORED" {
			t.Fatalf("set %s = %q", k, got)
		}
		got, _, _ := dial(t, shards[r.Pick([]byte(k))].addr).mcGet("get " + k)
		if got[k] != v {
			t.Errorf("%s not on its shard: %v", k, got)
		}
	}
	// A multi-key get across shards comes back merged, in the client's key order, misses left out.
	req := "get " + keys[3] + " nope " + strings.Join(keys[5:12], " ")
	got, order, end := c.mcGet(req)
	if end != "END" || len(got) != 8 || order[0] != keys[3] || order[1] != keys[5] || order[7] != keys[11] {
		t.Errorf("%s → %v %v %s", req, order, got, end)
	}
	for i, k := range keys {
		v := "value-" + strconv.Itoa(i)
		if (i == 3 || (i >= 5 && i < 12)) && got[k] != v {
			t.Errorf("get %s = %q, want %q", k, got[k], v)
		}
	}
	// gets returns cas ids; cas with the right one stores.
	c.send([]byte("gets " + keys[0] + "\r\n"))
	f := strings.Fields(c.readLine())
	c.readLine()
	c.readLine()
	if len(f) != 5 {
		t.Fatalf("gets: %v", f)
	}
	steps := []struct{ cmd, want string }{
		{"cas " + keys[0] + " 0 0 1 " + f[4] + "\r\nX", "STORED"},
		{"cas " + keys[0] + " 0 0 1 " + f[4] + "\r\nY", "EXISTS"},
		{"add " + keys[1] + " 0 0 1\r\nZ", "NOT_STORED"},
		{"add newkey 0 0 1\r\nZ", "STORED"},
		{"replace newkey 0 0 2\r\nZZ", "STORED"},
		{"append newkey 0 0 1\r\n>", "STORED"},
		{"prepend newkey 0 0 1\r\n<", "STORED"},
		{"set n 0 0 2\r\n10", "STORED"},
		{"incr n 5", "15"},
		{"decr n 3", "12"},
		{"touch n 100", "TOUCHED"},
		{"delete n", "DELETED"},
		{"delete n", "NOT_FOUND"},
		{"stats", "CLIENT_ERROR shard-ambassador: command 'stats' cannot be sharded, refused"},
	}
	for _, s := range steps {
		if got := line(s.cmd); got != s.want {
			t.Errorf("%q → %q, want %q", s.cmd, got, s.want)
		}
	}
	if got, _, _ := c.mcGet("get newkey"); got["newkey"] != "<ZZ>" {
		t.Errorf("after append/prepend: %v", got)
	}
	// noreply: nothing comes back, and the next reply is the next command's.
	c.send([]byte("set quiet 0 0 1 noreply\r\nq\r\ndelete nope noreply\r\n"))
	if got, _, _ := c.mcGet("get quiet"); got["quiet"] != "q" {
		t.Errorf("set noreply did not store: %v", got)
	}
	// A pipeline of 1000 mixed commands, in order.
	var buf strings.Builder
	var want []string
	for i := 0; i < 1000; i++ {
		k := "p:" + strconv.Itoa(i)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&buf, "set %s 0 0 1\r\n%d\r\n", k, i%10)
			want = append(want, "STORED")
		case 1:
			fmt.Fprintf(&buf, "incr p:%d 1\r\n", i-1)
			want = append(want, strconv.Itoa((i-1)%10+1))
		case 2:
			fmt.Fprintf(&buf, "delete p:%d\r\n", i-2)
			want = append(want, "DELETED")
		}
	}
	c.send([]byte(buf.String()))
	for i, w := range want {
		if got := c.readLine(); got != w {
			t.Fatalf("pipelined reply %d = %q, want %q", i, got, w)
		}
	}
	// A dead shard: only its keys fail, with SERVER_ERROR naming it.
	shards[0].stop()
	for _, k := range keys {
		got, _, end := c.mcGet("get " + k)
		if r.Pick([]byte(k)) == 0 {
			if !strings.HasPrefix(end, "SERVER_ERROR shard-ambassador: shard "+cfg.Servers[0].String()) {
				t.Errorf("get %s on the dead shard → %q", k, end)
			}
		} else if end != "END" || len(got) != 1 {
			t.Errorf("get %s on a live shard → %v %q", k, got, end)
		}
	}
}

func TestMemcacheSetWhoseDataArrivesLateIsNotTimedOut(t *testing.T) {
	shard := startMemcached(t, "127.0.0.1", 0)
	cfg := configFor(t, map[string]string{"PROTOCOL": "memcache", "SHARDS": shard.addr + ":1", "TIMEOUT": "1s"})
	c := dial(t, startAmbassador(t, cfg))
	// The command line now, its data after more than the shard timeout: the request is sent (and its
	// timeout and latency start) only when it is complete.
	c.send([]byte("set late 0 0 5\r\n"))
	time.Sleep(1200 * time.Millisecond)
	c.send([]byte("hello\r\n"))
	if got := c.readLine(); got != "STORED" {
		t.Fatalf("set with late data = %q, want STORED", got)
	}
	if values, _, end := c.mcGet("get late"); values["late"] != "hello" || end != "END" {
		t.Fatalf("get late = %v %q", values, end)
	}
	// The shard latency metric measures the shard, not the client's pause.
	m := metricsText(t, cfg)
	name := `shard_ambassador_shard_request_duration_seconds_bucket{shard="` + cfg.Servers[0].String() + `",le=`
	under1s, all := grep(m, name+`"1"}`), grep(m, name+`"+Inf"}`)
	if under1s == "" || strings.Fields(under1s)[1] != strings.Fields(all)[1] {
		t.Errorf("a request took more than 1s by the metrics:\n%s", grep(m, "duration_seconds_bucket"))
	}
}
