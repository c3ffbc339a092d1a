package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBothPollersServeASlowReaderWithoutStallingOthers: with FIFO_POLLER true (the default: client and
// shard connections served by internal/fifopoll) and false (Go's netpoller), through the proxy to a real
// redis: a client that asks for an 8 MB value and does not read for a while (its socket fills, the
// proxy's write to it waits) gets the value whole once it reads, while another client on the same shard
// connection is answered all along.
func TestBothPollersServeASlowReaderWithoutStallingOthers(t *testing.T) {
	for _, fifo := range []string{"true", "false"} {
		t.Run("FIFO_POLLER="+fifo, func(t *testing.T) {
			shard := startRedis(t)
			addr := startAmbassador(t, proxyFor(t, map[string]string{"SHARDS": shard.addr + ":1", "FIFO_POLLER": fifo}))
			big := strings.Repeat("0123456789abcdef", 512<<10)
			if got := dial(t, addr).do("SET", "big", big); got != "+OK" {
				t.Fatalf("SET big = %q", got)
			}
			slow := dial(t, addr)
			slow.send(resp("GET", "big"))
			other := dial(t, addr)
			began := time.Now()
			for i := 0; time.Since(began) < 300*time.Millisecond; i++ {
				k, v := "k"+strconv.Itoa(i%50), strconv.Itoa(i)
				other.send(append(resp("SET", k, v), resp("GET", k)...))
				if set, get := other.readReply(), other.readReply(); set != "+OK" || get != "$"+v {
					t.Fatalf("while the slow client does not read: SET %s %s → %q, GET → %q", k, v, set, get)
				}
			}
			if got := slow.readReply(); got != "$"+big {
				t.Fatalf("the slow client's GET big: %d bytes, want %d", len(got)-1, len(big))
			}
		})
	}
}
