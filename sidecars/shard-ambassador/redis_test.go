package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecars/shard-ambassador/ring"
)

// threeRedis starts three redis shards and an ambassador over them with extra settings.
func threeRedis(t *testing.T, extra map[string]string) ([]*peer, *Config, string) {
	shards, cfg, addr, _ := threeRedisStoppable(t, extra)
	return shards, cfg, addr
}

func threeRedisStoppable(t *testing.T, extra map[string]string) ([]*peer, *Config, string, func()) {
	t.Helper()
	shards := []*peer{startRedis(t), startRedis(t), startRedis(t)}
	env := map[string]string{"SHARDS": shards[0].addr + ":1," + shards[1].addr + ":1," + shards[2].addr + ":1"}
	for k, v := range extra {
		env[k] = v
	}
	cfg := configFor(t, env)
	// Keep shards in the ring's (twemproxy's sorted) order, so shards[i] is ring index i.
	byAddr := map[string]*peer{}
	for _, s := range shards {
		byAddr[s.addr] = s
	}
	for i, s := range cfg.Servers {
		shards[i] = byAddr[s.Addr()]
	}
	addr, stop := startAmbassadorStoppable(t, cfg)
	return shards, cfg, addr, stop
}

func ringOf(t *testing.T, cfg *Config) *ring.Ring {
	r, err := ring.New(cfg.Servers, nil, cfg.hashFunc, cfg.Distribution, cfg.HashTag)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedisPipelineOf1000MixedCommandsComesBackInOrder(t *testing.T) {
	_, _, addr := threeRedis(t, nil)
	c := dial(t, addr)
	var buf []byte
	var want []string
	counters := map[string]int{}
	for i := 0; i < 1000; i++ {
		k := "key:" + strconv.Itoa(i)
		switch i % 6 {
		case 0:
			buf = append(buf, resp("SET", k, "v"+strconv.Itoa(i))...)
			want = append(want, "+OK")
		case 1:
			buf = append(buf, resp("GET", "key:"+strconv.Itoa(i-1))...)
			want = append(want, "$v"+strconv.Itoa(i-1))
		case 2:
			ck := "counter:" + strconv.Itoa(i%7)
			counters[ck]++
			buf = append(buf, resp("INCR", ck)...)
			want = append(want, ":"+strconv.Itoa(counters[ck]))
		case 3:
			buf = append(buf, resp("MGET", "key:"+strconv.Itoa(i-3), "missing:"+strconv.Itoa(i), "key:"+strconv.Itoa(i-9))...)
			prev := "$nil"
			if i >= 9 {
				prev = "$v" + strconv.Itoa(i-9)
			}
			want = append(want, "*[$v"+strconv.Itoa(i-3)+" $nil "+prev+"]")
		case 4:
			buf = append(buf, resp("PING")...)
			want = append(want, "+PONG")
		case 5:
			if i%30 == 5 {
				buf = append(buf, resp("KEYS", "*")...)
				want = append(want, "-ERR shard-ambassador: command 'KEYS' cannot be sharded (not key-based, blocking or unknown), refused")
			} else {
				buf = append(buf, resp("EXISTS", "key:"+strconv.Itoa(i-5), "key:"+strconv.Itoa(i-11), "nope")...)
				n := 1
				if i >= 11 {
					n = 2
				}
				want = append(want, ":"+strconv.Itoa(n))
			}
		}
	}
	c.send(buf)
	for i, w := range want {
		if got := c.readReply(); got != w {
			t.Fatalf("reply %d = %q, want %q", i, got, w)
		}
	}
}

func TestRedisMultiKeyCommandsAcrossShards(t *testing.T) {
	shards, cfg, addr := threeRedis(t, map[string]string{"HASH_TAG": "{}"})
	r := ringOf(t, cfg)
	c := dial(t, addr)
	// twemproxy's fnv1a_64 puts similar short keys close together: take keys until every shard has some.
	args := []string{"MSET"}
	perShard := map[int]int{}
	for i := 0; len(args) < 61; i++ {
		k := "mk:" + strconv.Itoa(i)
		if s := r.Pick([]byte(k)); perShard[s] < 10 {
			perShard[s]++
			args = append(args, k, "val"+strconv.Itoa(i))
		}
	}
	if got := c.do(args...); got != "+OK" {
		t.Fatalf("MSET across shards = %s", got)
	}
	direct := []*conn{dial(t, shards[0].addr), dial(t, shards[1].addr), dial(t, shards[2].addr)}
	mget := []string{"MGET"}
	want := []string{}
	for j := 1; j < len(args); j += 2 {
		k, v := args[j], args[j+1]
		if got := direct[r.Pick([]byte(k))].do("GET", k); got != "$"+v {
			t.Errorf("%s on its shard = %s", k, got)
		}
		mget = append(mget, k, "none:"+k)
		want = append(want, "$"+v, "$nil")
	}
	if got := c.do(mget...); got != "*["+strings.Join(want, " ")+"]" {
		t.Errorf("MGET across shards = %s", got)
	}
	if got := c.do("EXISTS", args[1], args[3], "none", args[59]); got != ":3" {
		t.Errorf("EXISTS = %s", got)
	}
	if got := c.do("DEL", args[1], args[3], "none", args[57], args[59]); got != ":4" {
		t.Errorf("DEL = %s", got)
	}
	// Commands whose keys must share a shard: refused across shards, served with a hash tag.
	var a, b string
	for i := 0; a == "" || b == ""; i++ {
		k := "s" + strconv.Itoa(i)
		if r.Pick([]byte(k)) == 0 && a == "" {
			a = k
		} else if r.Pick([]byte(k)) == 1 && b == "" {
			b = k
		}
	}
	if got := c.do("SINTER", a, b); !strings.HasPrefix(got, "-ERR shard-ambassador: the keys of 'SINTER' live on different shards") {
		t.Errorf("SINTER across shards = %s", got)
	}
	c.do("SADD", "{team}:a", "x", "y")
	c.do("SADD", "{team}:b", "y", "z")
	if got := c.do("SINTER", "{team}:a", "{team}:b"); got != "*[$y]" {
		t.Errorf("SINTER with a hash tag = %s", got)
	}
	if got := c.do("EVAL", "return redis.call('GET', KEYS[1])", "1", "mk:9"); got != "$val9" {
		t.Errorf("EVAL = %s", got)
	}
	if got := c.do("FLUSHALL"); !strings.Contains(got, "cannot be sharded") {
		t.Errorf("FLUSHALL = %s", got)
	}
	if got := c.do("BLPOP", "q", "0"); !strings.Contains(got, "cannot be sharded") {
		t.Errorf("BLPOP (would block a shared connection) = %s", got)
	}
}

func TestRedisShardKilledUnderLoadFailsOnlyItsKeys(t *testing.T) {
	shards, cfg, addr := threeRedis(t, map[string]string{"TIMEOUT": "500ms"})
	r := ringOf(t, cfg)
	// Load from several clients while the shard dies.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c := dial(t, addr)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c.do("SET", fmt.Sprintf("load:%d:%d", g, i%100), "x")
			}
		}(g)
	}
	time.Sleep(100 * time.Millisecond)
	shards[1].stop()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()

	c := dial(t, addr)
	for i := 0; i < 300; i++ {
		k := "after:" + strconv.Itoa(i)
		got := c.do("SET", k, "x")
		if r.Pick([]byte(k)) == 1 {
			if !strings.HasPrefix(got, "-ERR shard-ambassador: shard "+cfg.Servers[1].String()+": ") {
				t.Fatalf("SET %s (dead shard) = %q, want an error naming the shard", k, got)
			}
		} else if got != "+OK" {
			t.Fatalf("SET %s (live shard) = %q", k, got)
		}
	}
}

func TestRedisEjectedAfterFailureLimitAndBackAfterRetryTimeout(t *testing.T) {
	shards, cfg, addr := threeRedis(t, map[string]string{
		"AUTO_EJECT_HOSTS": "true", "SERVER_FAILURE_LIMIT": "2", "SERVER_RETRY_TIMEOUT": "500ms", "TIMEOUT": "300ms",
	})
	r := ringOf(t, cfg)
	var key string
	for i := 0; key == ""; i++ {
		if k := "owned:" + strconv.Itoa(i); r.Pick([]byte(k)) == 2 {
			key = k
		}
	}
	c := dial(t, addr)
	if got := c.do("SET", key, "before"); got != "+OK" {
		t.Fatalf("SET = %s", got)
	}
	shards[2].stop()
	// Failures until the limit, then the key moves to a live shard.
	var replies []string
	for i := 0; i < 50; i++ {
		got := c.do("SET", key, "during")
		replies = append(replies, got)
		if got == "+OK" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last := replies[len(replies)-1]; last != "+OK" {
		t.Fatalf("the dead shard was never ejected; replies: %v", replies)
	}
	if len(replies) < 2 || !strings.HasPrefix(replies[0], "-ERR shard-ambassador: shard ") {
		t.Errorf("before ejection the client should see the shard's error; replies: %v", replies)
	}
	if m := metricsText(t, cfg); !strings.Contains(m, `shard_ambassador_shard_ejections_total{shard="`+cfg.Servers[2].String()+`"} 1`) {
		t.Errorf("metrics lack the ejection:\n%s", grep(m, "ejections"))
	}
	// The shard comes back: after the retry timeout its keys go to it again.
	shards[2].start(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.do("SET", key, "after")
		if got := dial(t, shards[2].addr).do("GET", key); got == "$after" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shard never came back into the ring")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTimeoutAnswersWithAnErrorInsteadOfHanging(t *testing.T) {
	// A shard that accepts connections and reads but never answers.
	silent := startSilentServer(t)
	cfg := configFor(t, map[string]string{"SHARDS": silent + ":1", "TIMEOUT": "200ms"})
	c := dial(t, startAmbassador(t, cfg))
	if got := c.do("GET", "k"); !strings.Contains(got, "no reply within the timeout of 200ms") {
		t.Fatalf("GET from a silent shard = %q", got)
	}
	if got := c.do("PING"); got != "+PONG" {
		t.Fatalf("the client connection should survive: PING = %q", got)
	}
}

func TestServerConnectionsArePooledAndNothingLeaks(t *testing.T) {
	shards, _, addr, stopAmbassador := threeRedisStoppable(t, map[string]string{"SERVER_CONNECTIONS": "2"})
	clientsOn := func(p *peer) int {
		d := dial(t, p.addr)
		defer d.c.Close()
		info := d.do("INFO", "clients")
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
				n, _ := strconv.Atoi(v)
				return n - 1 // our INFO connection
			}
		}
		t.Fatalf("no connected_clients in %q", info)
		return 0
	}
	var wg sync.WaitGroup
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c := dial(t, addr)
			for i := 0; i < 50; i++ {
				c.do("SET", fmt.Sprintf("pool:%d:%d", g, i), "x")
			}
			c.c.Close()
		}(g)
	}
	wg.Wait()
	for i, s := range shards {
		if n := clientsOn(s); n > 2 {
			t.Errorf("shard %d has %d connections from 20 clients, want at most SERVER_CONNECTIONS=2", i, n)
		}
	}
	// Stop the ambassador (its cleanup) and check every shard connection is gone.
	stopAmbassador()
	for i, s := range shards {
		deadline := time.Now().Add(5 * time.Second)
		for clientsOn(s) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("shard %d still has %d connections after shutdown", i, clientsOn(s))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func metricsText(t *testing.T, cfg *Config) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.StatusPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
