package main

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// replies builds RESP replies of every shape, back to back, including a multi-bulk reply large enough
// to arrive in many reads.
func testReplies() [][]byte {
	big := appendArrayHeader(nil, 50000)
	for i := 0; i < 50000; i++ {
		big = appendBulk(big, []byte("element-"+strconv.Itoa(i)))
	}
	nested := []byte("*3\r\n*2\r\n$1\r\na\r\n*0\r\n$-1\r\n*2\r\n:1\r\n*1\r\n+deep\r\n")
	return [][]byte{
		[]byte("+OK\r\n"), []byte("-ERR wrong type\r\n"), []byte(":42\r\n"), []byte("$-1\r\n"), []byte("$0\r\n\r\n"),
		[]byte("$5\r\nhello\r\n"), []byte("*0\r\n"), []byte("*-1\r\n"), nested, big,
	}
}

func TestRedisReplyParserResumesAcrossReadsAndAgreesWithReplyLen(t *testing.T) {
	replies := testReplies()
	stream := bytes.Join(replies, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	// Feed the stream the way a shard connection's reader sees it: in pieces of random size, each call
	// with the buffer starting at the first unfinished reply.
	var scan replyScan
	start, avail, got := 0, 0, 0
	for got < len(replies) {
		avail = min(len(stream), avail+1+rng.IntN(3000))
		for got < len(replies) {
			n, err := parseRedisReply(stream[start:avail], nil, &scan)
			if err != nil {
				t.Fatalf("reply %d: %v", got, err)
			}
			if n == 0 {
				break
			}
			if want, _ := replyLen(replies[got]); n != want || n != len(replies[got]) {
				t.Fatalf("reply %d: parsed length %d, want %d", got, n, len(replies[got]))
			}
			start += n
			got++
		}
	}
	// A reply cut anywhere is incomplete, and the state left behind does not confuse the next call.
	nested := replies[8]
	for cut := 0; cut < len(nested); cut++ {
		var s replyScan
		if n, err := parseRedisReply(nested[:cut], nil, &s); n != 0 || err != nil {
			t.Fatalf("cut at %d: n=%d err=%v, want incomplete", cut, n, err)
		}
		if n, err := parseRedisReply(nested, nil, &s); n != len(nested) || err != nil {
			t.Fatalf("resumed after a cut at %d: n=%d err=%v, want %d", cut, n, err, len(nested))
		}
	}
	if _, err := parseRedisReply([]byte("?what\r\n"), nil, &scan); err == nil {
		t.Errorf("a reply starting with '?' should be a protocol error")
	}
}

func TestMemcacheRetrievalParserResumesAcrossReads(t *testing.T) {
	var reply []byte
	for i := 0; i < 2000; i++ {
		v := bytes.Repeat([]byte{'x'}, i%50)
		reply = append(reply, "VALUE k"+strconv.Itoa(i)+" 0 "+strconv.Itoa(len(v))+"\r\n"...)
		reply = append(reply, v...)
		reply = append(reply, "\r\n"...)
	}
	reply = append(reply, "END\r\n"...)
	req := &request{kind: kindRetrieval}
	var scan replyScan
	for avail := 0; ; avail += 97 {
		n, err := parseMemcacheReply(reply[:min(avail, len(reply))], req, &scan)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			if n != len(reply) || avail < len(reply) {
				t.Fatalf("parsed %d bytes with %d available, want %d", n, avail, len(reply))
			}
			break
		}
	}
	if scan.pos != 0 {
		t.Errorf("scan state not reset after a complete reply: %+v", scan)
	}
}

// BenchmarkRedisReplyParserLargeArrayInPieces reads a 50,000-element reply 16 KiB at a time, as a shard
// connection does. Each piece costs only its own bytes (before resuming, every piece re-scanned the
// whole reply so far: quadratic).
func BenchmarkRedisReplyParserLargeArrayInPieces(b *testing.B) {
	big := testReplies()[9]
	b.SetBytes(int64(len(big)))
	for b.Loop() {
		var scan replyScan
		for avail := 16 << 10; ; avail += 16 << 10 {
			if n, _ := parseRedisReply(big[:min(avail, len(big))], nil, &scan); n != 0 {
				break
			}
		}
	}
}

// FuzzRedisCommand feeds arbitrary client bytes to the RESP command parser, whole and cut in two as reads
// cut them. It must not panic; it consumes nothing or a prefix of the input; its arguments are slices of
// what it consumed, none longer than the bound it was given; and the same bytes cut anywhere parse to the
// same first command once they are all there.
func FuzzRedisCommand(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "PING\r\n", "*1\r\n$-5\r\n", "*-3\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999\r\n",
		"*x\r\n", "*1\r\n$3\r\nabc", "*2\r\n$3\r\nGET\r\n$1\r\nkXY", "\r\n", "*0\r\n", "$3\r\nabc\r\n",
	} {
		f.Add([]byte(seed), uint8(3))
	}
	const maxBulk = 1 << 10
	f.Fuzz(func(t *testing.T, input []byte, cut uint8) {
		args, n, err := parseCommand(input, nil, maxBulk)
		if n < 0 || n > len(input) {
			t.Fatalf("consumed %d of %d bytes", n, len(input))
		}
		if err != nil {
			if n != 0 {
				t.Fatalf("an error (%v) after consuming %d bytes", err, n)
			}
			return
		}
		if n == 0 {
			return // incomplete: the arguments so far are scratch, which the caller ignores
		}
		for _, a := range args {
			if len(a) > maxBulk {
				t.Fatalf("an argument of %d bytes, over the bound of %d", len(a), maxBulk)
			}
			if len(a) > 0 && !bytes.Contains(input[:n], a) {
				t.Fatalf("argument %q is not in the consumed bytes", a)
			}
		}
		// Cut before the end of the first command: incomplete (no error, nothing consumed), then whole.
		k := int(cut) % n
		if _, m, err := parseCommand(input[:k], nil, maxBulk); m != 0 || err != nil {
			if err == nil || !strings.Contains(err.Error(), "too long") {
				t.Fatalf("the first %d of the command's %d bytes: consumed %d, %v", k, n, m, err)
			}
		}
		again, m, _ := parseCommand(input[:n], nil, maxBulk)
		if m != n || len(again) != len(args) {
			t.Fatalf("the command alone parses to %d bytes and %d args, in the stream to %d and %d", m, len(again), n, len(args))
		}
	})
}
