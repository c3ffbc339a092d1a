package main

import (
	"strconv"
	"strings"
	"testing"
)

// TestCommandsAreCountedByCommandAndResult: requests through the proxy to two real redis shards count
// under their command's name with their result (an error reply counts as error) and latency, a split
// MSET or MGET once per shard it went to; a command the proxy refuses counts under its name when redis
// has such a command (KEYS) and as other when not: a client's made-up names never become labels.
func TestCommandsAreCountedByCommandAndResult(t *testing.T) {
	one, two := startRedis(t), startRedis(t)
	cfg := proxyFor(t, map[string]string{"SHARDS": one.addr + ":1," + two.addr + ":1"})
	c := dial(t, startAmbassador(t, cfg))
	c.do("SET", "k", "not-a-number")
	c.do("GET", "k")
	c.do("get", "k") // the same command, whatever its case
	if got := c.do("INCR", "k"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("INCR of a string = %q", got)
	}
	c.do("NOSUCHCOMMAND-"+strings.Repeat("x", 40), "k")
	c.do("KEYS", "*")
	// MSET and MGET of keys on both shards: one request to each shard.
	mset, mget := []string{"MSET"}, []string{"MGET"}
	for i := range 100 {
		k := "spread:" + strconv.Itoa(i*7919)
		mset, mget = append(mset, k, "v"), append(mget, k)
	}
	c.do(mset...)
	c.do(mget...)
	for _, s := range []*peer{one, two} {
		if got := dial(t, s.addr).do("DBSIZE"); got == ":0" || got == ":1" {
			t.Fatalf("a shard holds %s keys: the MSET did not spread over both", got)
		}
	}
	m := metricsText(t, cfg)
	for _, want := range []string{
		`shard_ambassador_commands_total{command="SET",result="ok"} 1`,
		`shard_ambassador_commands_total{command="GET",result="ok"} 2`,
		`shard_ambassador_commands_total{command="INCR",result="error"} 1`,
		`shard_ambassador_command_duration_seconds_count{command="GET"} 2`,
		`shard_ambassador_commands_total{command="MSET",result="ok"} 2`,
		`shard_ambassador_commands_total{command="MGET",result="ok"} 2`,
		`shard_ambassador_refused_commands_total{command="KEYS"} 1`,
		`shard_ambassador_refused_commands_total{command="other"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(m, "shard_ambassador_command"))
		}
	}
	if strings.Contains(m, "NOSUCHCOMMAND") {
		t.Errorf("a client's command name became a label:\n%s", grep(m, "NOSUCHCOMMAND"))
	}
}

// TestMemcacheCommandsAreCountedByCommandAndResult: the same for memcache against a real memcached: an
// incr of a non-number is memcached's CLIENT_ERROR, counted as error; refused commands count by name
// when memcached has them (stats) and as other when not.
func TestMemcacheCommandsAreCountedByCommandAndResult(t *testing.T) {
	shard := startMemcached(t, "127.0.0.1", 0)
	cfg := proxyFor(t, map[string]string{"PROTOCOL": "memcache", "SHARDS": shard.addr + ":1"})
	c := dial(t, startAmbassador(t, cfg))
	c.send([]byte("set k 0 0 1\r\nv\r\n"))
	if got := c.readLine(); got != "STORED" {
		t.Fatalf("set: %s", got)
	}
	c.send([]byte("incr k 1\r\n"))
	if got := c.readLine(); !strings.HasPrefix(got, "CLIENT_ERROR") {
		t.Fatalf("incr of a non-number: %s", got)
	}
	c.send([]byte("frobnicate k\r\nstats\r\n"))
	for _, cmd := range []string{"frobnicate", "stats"} {
		if got := c.readLine(); !strings.HasPrefix(got, "CLIENT_ERROR shard-ambassador: command '"+cmd+"' cannot be sharded") {
			t.Fatalf("%s: %s", cmd, got)
		}
	}
	m := metricsText(t, cfg)
	for _, want := range []string{
		`shard_ambassador_commands_total{command="set",result="ok"} 1`,
		`shard_ambassador_commands_total{command="incr",result="error"} 1`,
		`shard_ambassador_command_duration_seconds_count{command="set"} 1`,
		`shard_ambassador_refused_commands_total{command="stats"} 1`,
		`shard_ambassador_refused_commands_total{command="other"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(m, "shard_ambassador_command"))
		}
	}
	if strings.Contains(m, "frobnicate") {
		t.Errorf("a client's command name became a label:\n%s", grep(m, "frobnicate"))
	}
}
