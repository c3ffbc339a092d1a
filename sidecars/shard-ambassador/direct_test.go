package main

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// One shard, one shared connection to it: what one client does there is felt by every other client.
func oneRedis(t *testing.T) (*peer, string) {
	t.Helper()
	shard := startRedis(t)
	cfg := configFor(t, map[string]string{"SHARDS": shard.addr + ":1", "SERVER_CONNECTIONS": "1"})
	return shard, startAmbassador(t, cfg)
}

func TestRedisLargeMultiBulkReplyComesThroughWhole(t *testing.T) {
	shard, addr := oneRedis(t)
	const n = 200000
	direct := dial(t, shard.addr)
	var cmd []string
	for i := 0; i < n; i++ {
		cmd = append(cmd, "item-"+strconv.Itoa(i))
		if len(cmd) == 10000 {
			if got := direct.do(append([]string{"RPUSH", "biglist"}, cmd...)...); !strings.HasPrefix(got, ":") {
				t.Fatalf("RPUSH = %s", got)
			}
			cmd = cmd[:0]
		}
	}
	c := dial(t, addr)
	for round := 0; round < 2; round++ { // twice: the second reply reuses the grown buffers
		got := c.do("LRANGE", "biglist", "0", "-1")
		items := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(got, "*["), "]"))
		if len(items) != n || items[0] != "$item-0" || items[n-1] != "$item-"+strconv.Itoa(n-1) {
			t.Fatalf("LRANGE through the proxy: %d items (first %.20q), want %d", len(items), got, n)
		}
		if got := c.do("LLEN", "biglist"); got != ":"+strconv.Itoa(n) {
			t.Fatalf("LLEN after LRANGE = %s", got)
		}
	}
}

func TestRedisClientThatDoesNotReadDoesNotStallOthersOnTheSameShardConnection(t *testing.T) {
	_, addr := oneRedis(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB: more than the sockets can buffer
	setter := dial(t, addr)
	if got := setter.do("SET", "big", string(big)); got != "+OK" {
		t.Fatalf("SET big = %.40s", got)
	}
	// A client asks for the big value, alone on its connection (the reply goes straight to it), and does
	// not read it yet.
	slow := dial(t, addr)
	slow.send(resp("GET", "big"))
	// Meanwhile other clients of the same shard connection are served.
	other := dial(t, addr)
	for i := 0; i < 100; i++ {
		k := "k" + strconv.Itoa(i)
		if got := other.do("SET", k, "v"); got != "+OK" {
			t.Fatalf("SET %s while another client is not reading = %q", k, got)
		}
		if got := other.do("GET", k); got != "$v" {
			t.Fatalf("GET %s while another client is not reading = %q", k, got)
		}
	}
	// The slow client then gets its whole reply, and its connection still works.
	header, err := slow.r.ReadString('\n')
	if err != nil || header != "$"+strconv.Itoa(len(big))+"\r\n" {
		t.Fatalf("big reply header = %q, %v", header, err)
	}
	body := make([]byte, len(big)+2)
	if _, err := io.ReadFull(slow.r, body); err != nil || !bytes.Equal(body[:len(big)], big) || string(body[len(big):]) != "\r\n" {
		t.Fatalf("big reply body differs from what was stored (err %v)", err)
	}
	if got := slow.do("GET", "k1"); got != "$v" {
		t.Fatalf("GET after the big reply = %q", got)
	}
}

func TestRedisClientAlternatingSingleCommandsAndPipelinesKeepsOrder(t *testing.T) {
	_, _, addr := threeRedis(t, nil)
	c := dial(t, addr)
	for round := 0; round < 200; round++ {
		k := "alt:" + strconv.Itoa(round)
		// A lone command (answered directly by the shard reader), immediately followed by a pipeline
		// that must wait for it: the replies must come back in the order sent.
		c.send(resp("SET", k, "1"))
		var pipe []byte
		for i := 0; i < round%7; i++ {
			pipe = append(pipe, resp("INCR", k)...)
		}
		pipe = append(pipe, resp("GET", k)...)
		c.send(pipe)
		if got := c.readReply(); got != "+OK" {
			t.Fatalf("round %d: SET = %q", round, got)
		}
		for i := 0; i < round%7; i++ {
			if got := c.readReply(); got != ":"+strconv.Itoa(i+2) {
				t.Fatalf("round %d: INCR #%d = %q", round, i, got)
			}
		}
		if got := c.readReply(); got != "$"+strconv.Itoa(1+round%7) {
			t.Fatalf("round %d: GET = %q", round, got)
		}
	}
}
