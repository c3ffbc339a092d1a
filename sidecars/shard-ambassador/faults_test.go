package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAShardThatHangsFailsOnlyItsKeysAndNoReplyGoesAstray: 16 clients write and read back their own keys
// through the proxy, in pipelines of 8, while one of three real redis shards is stopped (SIGSTOP: it holds
// its connections open and answers nothing, as a hung server does) for 3 s and then resumed, when it
// answers everything it was sent meanwhile. Every reply is checked against what its client wrote: a GET
// must return a value that client could have left there (the last acknowledged SET, or one that failed
// and may yet have been applied), never another key's or another client's, never an answer of the wrong
// kind. Requests for the hung shard's keys get an error within TIMEOUT, the others keep succeeding, the
// proxy's heap stays bounded while requests pile up, and after the resume the shard's keys work again.
func TestAShardThatHangsFailsOnlyItsKeysAndNoReplyGoesAstray(t *testing.T) {
	shards, cfg, addr := threeRedis(t, map[string]string{"TIMEOUT": "1s"})
	r := ringOf(t, cfg)
	const clients, keysPerClient, pipeline = 16, 64, 8

	var hung atomic.Bool
	var okLive, okHung, errLive, errHung, errHungWhileHung, astray atomic.Int64
	var maxWait atomic.Int64
	var problems sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range clients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				problems.Store(g, err.Error())
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			possible := map[string]map[string]bool{} // key → values a GET may return ("" for none)
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				// A pipeline of SET k v, GET k pairs on distinct keys.
				type op struct{ key, value string }
				var ops []op
				var buf []byte
				for range pipeline / 2 {
					k := fmt.Sprintf("c%d:k%d", g, rng.IntN(keysPerClient))
					if slices.ContainsFunc(ops, func(o op) bool { return o.key == k }) {
						continue
					}
					v := fmt.Sprintf("c%d:%s:%d", g, k, seq)
					ops = append(ops, op{k, v})
					buf = append(buf, resp("SET", k, v)...)
					buf = append(buf, resp("GET", k)...)
				}
				began := time.Now()
				c.SetDeadline(began.Add(10 * time.Second)) // far past TIMEOUT: a hang fails the test
				if _, err := c.Write(buf); err != nil {
					problems.Store(g, "write: "+err.Error())
					return
				}
				for _, o := range ops {
					if possible[o.key] == nil {
						possible[o.key] = map[string]bool{"": true}
					}
					onHung := r.Pick([]byte(o.key)) == 1
					set, err1 := readRESP(br)
					get, err2 := readRESP(br)
					if err1 != nil || err2 != nil {
						problems.Store(g, fmt.Sprintf("reading replies after %s: %v %v", time.Since(began), err1, err2))
						return
					}
					if w := time.Since(began); int64(w) > maxWait.Load() && onHung {
						maxWait.Store(int64(w))
					}
					switch {
					case set == "+OK":
						possible[o.key] = map[string]bool{o.value: true}
					case strings.HasPrefix(set, "-ERR shard-ambassador: shard "):
						possible[o.key][o.value] = true // it may still be applied when the shard resumes
					default:
						astray.Add(1)
						problems.Store(fmt.Sprint(g, o.key), fmt.Sprintf("SET %s answered %q", o.key, set))
					}
					switch {
					case strings.HasPrefix(get, "$"):
						if v := strings.TrimPrefix(strings.TrimPrefix(get, "$"), "nil"); !possible[o.key][v] {
							astray.Add(1)
							problems.Store(fmt.Sprint(g, o.key), fmt.Sprintf("GET %s answered %q, not a value this client left there", o.key, get))
						}
					case strings.HasPrefix(get, "-ERR shard-ambassador: shard "):
					default:
						astray.Add(1)
						problems.Store(fmt.Sprint(g, o.key), fmt.Sprintf("GET %s answered %q", o.key, get))
					}
					failed := !strings.HasPrefix(set, "+") || strings.HasPrefix(get, "-")
					switch {
					case onHung && failed:
						errHung.Add(1)
						if hung.Load() {
							errHungWhileHung.Add(1)
						}
					case onHung:
						okHung.Add(1)
					case failed:
						errLive.Add(1)
					default:
						okLive.Add(1)
					}
				}
			}
		})
	}

	var heapBefore, heapMax uint64
	sample := func() uint64 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	time.Sleep(time.Second)
	heapBefore = sample()
	okHungBefore := okHung.Load()
	shards[1].cmd.Process.Signal(syscall.SIGSTOP)
	hung.Store(true)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		heapMax = max(heapMax, sample())
	}
	okLiveDuring := okLive.Load()
	shards[1].cmd.Process.Signal(syscall.SIGCONT)
	hung.Store(false)
	resumed := okHung.Load()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	problems.Range(func(k, v any) bool { t.Errorf("client %v: %v", k, v); return true })
	if astray.Load() > 0 {
		t.Fatalf("%d replies went astray", astray.Load())
	}
	if errHungWhileHung.Load() == 0 {
		t.Errorf("no request for the hung shard's keys failed while it hung")
	}
	if errLive.Load() > 0 {
		t.Errorf("%d requests for the live shards' keys failed: only the hung shard's keys may", errLive.Load())
	}
	if okHung.Load() == resumed {
		t.Errorf("after the resume the hung shard's keys never worked again (%d before the hang)", okHungBefore)
	}
	t.Logf("result: %d clients × pipelines of %d, shard 2 of 3 hung 3 s: live shards' keys %d ok, %d failed; the hung shard's keys %d failed (the longest wait for a pipeline with one %s, TIMEOUT 1s), %d ok before and after; 0 replies astray; heap %.1f MiB before, at most %.1f MiB while requests waited",
		clients, pipeline, okLive.Load(), errLive.Load(), errHung.Load(), time.Duration(maxWait.Load()).Round(time.Millisecond), okHung.Load(), float64(heapBefore)/(1<<20), float64(heapMax)/(1<<20))
	if okLiveDuring == 0 {
		t.Errorf("no request for the live shards' keys succeeded")
	}
}

// readRESP reads one reply as conn.readReply renders it ("+OK", "-ERR ...", "$value", "$nil"), with errors
// returned rather than failing the test (it runs in the load's goroutines).
func readRESP(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" || line[0] != '$' {
		return line, nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return "", fmt.Errorf("bulk header %q", line)
	}
	if n < 0 {
		return "$nil", nil
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	return "$" + string(buf[:n]), nil
}
