package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/outrigger-dev/outrigger/sidecars/shard-ambassador/ring"
)

// The compatibility proof: keys are written through a real nutcracker, then our ring (built from the
// same nutcracker.yml) says where each key lives, and each key is read directly from that shard.
// Every key must be there, and each shard must hold exactly the keys we predict.

type compatCase struct {
	name, hash, dist, hashTag string
	weights                   []int
	names                     []string
	keys                      int
}

// testKeys are plain keys, keys with bytes >= 0x80 (twemproxy sign-extends them) and hash-tagged keys.
func testKeys(n int) []string {
	keys := make([]string, 0, n)
	for i := 0; len(keys) < n; i++ {
		switch i % 5 {
		case 0, 1:
			keys = append(keys, "key:"+strconv.Itoa(i))
		case 2:
			keys = append(keys, "ключ:"+strconv.Itoa(i)+":\xff\x80")
		case 3:
			keys = append(keys, fmt.Sprintf("user:{%d}:profile:%d", i%97, i))
		case 4:
			keys = append(keys, fmt.Sprintf("k{}%d{x", i)) // empty tag: the whole key is hashed
		}
	}
	return keys
}

func nutcrackerYAML(listen string, c compatCase, redis bool, servers []*peer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pool:\n  listen: %s\n  hash: %s\n  distribution: %s\n  redis: %v\n  timeout: 2000\n", listen, c.hash, c.dist, redis)
	if c.hashTag != "" {
		fmt.Fprintf(&b, "  hash_tag: %q\n", c.hashTag)
	}
	b.WriteString("  servers:\n")
	for i, s := range servers {
		w := 1
		if c.weights != nil {
			w = c.weights[i]
		}
		fmt.Fprintf(&b, "   - %s:%d", s.addr, w)
		if c.names != nil {
			fmt.Fprintf(&b, " %s", c.names[i])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ringFromYAML loads the same file as nutcracker through CONFIG_FILE, as a user would.
func ringFromYAML(t *testing.T, yaml string) (*Config, *ring.Ring) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := configFor(t, map[string]string{"CONFIG_FILE": path})
	r, err := ring.New(cfg.Servers, nil, cfg.hashFunc, cfg.Distribution, cfg.HashTag)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, r
}

func TestNutcrackerCompatibilityRedis(t *testing.T) {
	shards := []*peer{startRedis(t), startRedis(t), startRedis(t)}
	cases := []compatCase{
		{name: "ketama-fnv1a_64", hash: "fnv1a_64", dist: "ketama", keys: 10000},
		{name: "ketama-md5", hash: "md5", dist: "ketama", keys: 10000},
		{name: "modula-fnv1a_64", hash: "fnv1a_64", dist: "modula", keys: 10000},
		{name: "ketama-weights", hash: "fnv1a_64", dist: "ketama", weights: []int{1, 2, 5}, keys: 10000},
		{name: "modula-weights", hash: "murmur", dist: "modula", weights: []int{3, 1, 2}, keys: 10000},
		{name: "ketama-hash-tag", hash: "fnv1a_64", dist: "ketama", hashTag: "{}", keys: 10000},
		{name: "ketama-names-crc32", hash: "crc32", dist: "ketama", names: []string{"redis-a", "redis-b", "redis-c"}, keys: 10000},
	}
	// Every other hash function, with modula (the hash alone decides) and ketama.
	for _, h := range ring.HashNames() {
		cases = append(cases, compatCase{name: "modula-" + h, hash: h, dist: "modula", keys: 2000})
		cases = append(cases, compatCase{name: "ketama-" + h, hash: h, dist: "ketama", hashTag: "{}", keys: 2000})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range shards {
				if got := dial(t, s.addr).do("FLUSHALL"); got != "+OK" {
					t.Fatalf("FLUSHALL: %s", got)
				}
			}
			listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			yaml := nutcrackerYAML(listen, c, true, shards)
			nc := startNutcracker(t, listen, yaml)
			defer nc.stop()
			cfg, r := ringFromYAML(t, yaml)
			keys := testKeys(c.keys)

			// Write every key through nutcracker, pipelined.
			client := dial(t, listen)
			var buf []byte
			for i, k := range keys {
				buf = append(buf, resp("SET", k, "v"+strconv.Itoa(i))...)
			}
			client.send(buf)
			for i := range keys {
				if got := client.readReply(); got != "+OK" {
					t.Fatalf("SET %q through nutcracker: %s", keys[i], got)
				}
			}

			// Read each key from the shard our ring names.
			byShard := make([][]int, len(shards))
			for i, k := range keys {
				s := r.Pick([]byte(k))
				byShard[s] = append(byShard[s], i)
			}
			mismatches := 0
			for s, idx := range byShard {
				direct := dial(t, cfg.Servers[s].Addr()) // ring indexes follow twemproxy's (sorted) order
				buf = buf[:0]
				for _, i := range idx {
					buf = append(buf, resp("GET", keys[i])...)
				}
				direct.send(buf)
				for _, i := range idx {
					if got := direct.readReply(); got != "$v"+strconv.Itoa(i) {
						if mismatches++; mismatches <= 5 {
							var where []string
							for j, o := range cfg.Servers {
								where = append(where, fmt.Sprintf("shard %d: %s", j, dial(t, o.Addr()).do("GET", keys[i])))
							}
							t.Errorf("key %q: our ring says shard %d, which answers %s (%s)", keys[i], s, got, strings.Join(where, ", "))
						}
					}
				}
				if got, want := direct.do("DBSIZE"), ":"+strconv.Itoa(len(idx)); got != want {
					t.Errorf("shard %d holds %s keys, our ring predicts %s", s, got, want)
				}
			}
			if mismatches > 0 {
				t.Fatalf("%d of %d keys are not where our ring puts them", mismatches, len(keys))
			}
		})
	}
}

func TestNutcrackerCompatibilityMemcache(t *testing.T) {
	// Port 11211 on three loopback addresses: twemproxy then names the servers by host alone.
	shards11211 := []*peer{startMemcached(t, "127.0.0.2", 11211), startMemcached(t, "127.0.0.3", 11211), startMemcached(t, "127.0.0.4", 11211)}
	shards := []*peer{startMemcached(t, "127.0.0.1", 0), startMemcached(t, "127.0.0.1", 0), startMemcached(t, "127.0.0.1", 0)}
	cases := []struct {
		compatCase
		servers []*peer
	}{
		{compatCase{name: "ketama-fnv1a_64", hash: "fnv1a_64", dist: "ketama", keys: 10000}, shards},
		{compatCase{name: "ketama-md5-port-11211", hash: "md5", dist: "ketama", keys: 10000}, shards11211},
		{compatCase{name: "modula-fnv1a_64", hash: "fnv1a_64", dist: "modula", keys: 10000}, shards},
		{compatCase{name: "ketama-weights-hash-tag", hash: "fnv1a_64", dist: "ketama", weights: []int{2, 1, 3}, hashTag: "{}", keys: 10000}, shards11211},
		{compatCase{name: "ketama-murmur-names", hash: "murmur", dist: "ketama", names: []string{"mc-0", "mc-1", "mc-2"}, keys: 10000}, shards},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// No flush_all between cases: memcached's flush has one-second resolution and would also drop
			// keys set just after it. Each case uses its own key prefix instead.
			listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			yaml := nutcrackerYAML(listen, c.compatCase, false, c.servers)
			nc := startNutcracker(t, listen, yaml)
			defer nc.stop()
			cfg, r := ringFromYAML(t, yaml)
			if cfg.Protocol != "memcache" {
				t.Fatalf("protocol from a file without redis: true = %q, want memcache", cfg.Protocol)
			}
			keys := testKeys(c.keys)
			for i := range keys {
				keys[i] = c.name + ":" + keys[i]
			}
			client := dial(t, listen)
			var buf []byte
			for i, k := range keys {
				v := "v" + strconv.Itoa(i)
				buf = fmt.Appendf(buf, "set %s 0 0 %d\r\n%s\r\n", k, len(v), v)
			}
			client.send(buf)
			for i := range keys {
				if got := client.readLine(); got != "STORED" {
					t.Fatalf("set %q through nutcracker: %s", keys[i], got)
				}
			}
			byShard := make([][]int, len(cfg.Servers))
			for i, k := range keys {
				s := r.Pick([]byte(k))
				byShard[s] = append(byShard[s], i)
			}
			mismatches := 0
			for s, idx := range byShard {
				direct := dial(t, cfg.Servers[s].Addr())
				for start := 0; start < len(idx); start += 100 {
					line := "get"
					for _, i := range idx[start:min(start+100, len(idx))] {
						line += " " + keys[i]
					}
					got, _, end := direct.mcGet(line)
					if end != "END" {
						t.Fatalf("get from shard %d: %s", s, end)
					}
					for _, i := range idx[start:min(start+100, len(idx))] {
						if got[keys[i]] != "v"+strconv.Itoa(i) {
							if mismatches++; mismatches <= 5 {
								t.Errorf("key %q: our ring says shard %d, which has %q", keys[i], s, got[keys[i]])
							}
						}
					}
				}
			}
			if mismatches > 0 {
				t.Fatalf("%d keys are not where our ring puts them", mismatches)
			}
		})
	}
}
