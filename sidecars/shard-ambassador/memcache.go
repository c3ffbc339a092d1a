package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// The memcache ASCII protocol: retrievals (get, gets) with any number of keys are split per shard and
// merged back in key order; storage (set, add, replace, append, prepend, cas), delete, incr, decr and
// touch go to their key's shard untouched. "noreply" is honoured by the proxy: the shard is asked for a
// reply (so replies still match requests one for one) and the proxy drops it.

const (
	kindLine      byte = iota + 1 // the reply is one line
	kindRetrieval                 // VALUE blocks, then END
)

const maxMemcacheLine = 8 << 10

// parseMemcacheReply is the memcache replyParser. A retrieval's VALUE blocks already scanned are not
// scanned again when more bytes arrive (scan.pos is where the next block starts).
func parseMemcacheReply(buf []byte, req *request, scan *replyScan) (int, error) {
	if req.kind != kindRetrieval {
		return lineLen(buf)
	}
	pos := scan.pos
	for {
		n, err := lineLen(buf[pos:])
		if err != nil || n == 0 {
			scan.pos = pos
			return 0, err
		}
		line := buf[pos : pos+n]
		if !bytes.HasPrefix(line, []byte("VALUE ")) {
			scan.pos = 0
			return pos + n, nil // END, or an error line that ends the reply
		}
		size, err := valueSize(line)
		if err != nil {
			scan.pos = 0
			return 0, err
		}
		if pos+n+size+2 > len(buf) {
			scan.pos = pos
			return 0, nil
		}
		pos += n + size + 2
	}
}

func lineLen(buf []byte) (int, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > maxMemcacheLine {
			return 0, fmt.Errorf("protocol error: reply line longer than %d bytes", maxMemcacheLine)
		}
		return 0, nil
	}
	return i + 1, nil
}

// valueSize reads <bytes> from "VALUE <key> <flags> <bytes> [<cas>]\r\n".
func valueSize(line []byte) (int, error) {
	var f [6][]byte
	n := fields(line, f[:])
	if n < 4 {
		return 0, fmt.Errorf("protocol error: bad VALUE line %.60q", line)
	}
	size, err := strconv.Atoi(string(f[3]))
	if err != nil || size < 0 {
		return 0, fmt.Errorf("protocol error: bad VALUE line %.60q", line)
	}
	return size, nil
}

// fields splits line on spaces into out, as memcached's own tokenizer does, after dropping the line's end
// ("\n" and a "\r" before it), and returns how many fields there were, which may exceed len(out). A "\r"
// anywhere else is part of a field, as it is for memcached: splitting on it too would make the proxy
// read another command than the shard (another key, another data length) and lose the reply stream.
func fields(line []byte, out [][]byte) int {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	n, i := 0, 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		start := i
		for i < len(line) && line[i] != ' ' {
			i++
		}
		if i > start {
			if n < len(out) {
				out[n] = line[start:i]
			}
			n++
		}
	}
	return n
}

// memcacheSession serves one memcache client.
type memcacheSession struct {
	session
	m       *metrics
	args    [][]byte
	slots   []memcacheSlot
	local   []byte
	subs    []*request
	keySub  []int32
	keys    [][]byte // the keys of split retrievals, aliasing the read buffer until the replies are written
	scratch []byte
	owners  []int
}

type memcacheSlot struct {
	req      *request
	noreply  bool
	lo, hi   int
	klo, khi int
	split    bool
}

// refusedMemcacheLabel is the label a refused memcache command counts under: its name for memcached's
// own commands the proxy refuses (stats, flush_all, gat, the meta commands…), "other" for any other name,
// so that made-up names cannot grow the series without bound.
func refusedMemcacheLabel(name []byte) string {
	switch n := string(name); n {
	case "stats", "flush_all", "verbosity", "gat", "gats", "cache_memlimit", "shutdown", "misbehave",
		"watch", "lru_crawler", "slabs", "lru", "mg", "ms", "md", "ma", "mn", "me":
		return n
	}
	return "other"
}

// memcacheCommandIDs are the commands parse forwards to shards, each with its metrics' id.
var memcacheCommandIDs = func() map[string]int {
	m := map[string]int{}
	for _, n := range []string{"get", "gets", "set", "add", "replace", "append", "prepend", "cas", "delete", "incr", "decr", "touch"} {
		m[n] = commandID(n)
	}
	return m
}()

func serveMemcache(b *backend, m *metrics, s session) error {
	c := &memcacheSession{session: s, m: m, args: make([][]byte, 0, 32), owners: make([]int, len(s.p.shards))}
	c.errLine = memcacheErrorLine
	defer c.settle() // a direct reply in flight refers to this session
	for {
		if c.refreshPool() {
			c.owners = make([]int, len(c.p.shards))
		}
		c.slots, c.local, c.subs, c.keySub, c.keys = c.slots[:0], c.local[:0], c.subs[:0], c.keySub[:0], c.keys[:0]
		consumed := c.r
		for len(c.slots) < maxBatch && !c.quit {
			n, err := c.parse(c.rbuf[consumed:c.w])
			if err != nil {
				return c.refuse(err)
			}
			if n == 0 {
				break
			}
			consumed += n
		}
		if len(c.slots) == 0 && !c.quit {
			if err := c.fill(); err != nil {
				if errors.As(err, new(errCommandTooLarge)) {
					return c.refuse(err)
				}
				return err
			}
			continue
		}
		c.end()
		if len(c.slots) == 1 && c.slots[0].req != nil && !c.slots[0].noreply && !c.quit && c.sendDirect(c.slots[0].req) {
			c.slots[0].req = nil
			c.r = consumed
			continue
		}
		c.wait()
		if err := c.writeReplies(); err != nil {
			return err
		}
		c.r = consumed // the keys of split retrievals point into the buffer until now
		if c.quit {
			return nil
		}
	}
}

// memcacheErrorLine is the reply for a request that failed at its shard.
func memcacheErrorLine(dst []byte, err error) []byte {
	return append(append(append(dst, "SERVER_ERROR shard-ambassador: "...), oneLine(err.Error())...), '\r', '\n')
}

// Every command starts the batch (start) only once it is complete: a set's data may arrive later, and
// the batch's start time is when its requests count as sent.

func (c *memcacheSession) localLine(format string, a ...any) {
	c.start()
	lo := len(c.local)
	c.local = fmt.Appendf(c.local, format, a...)
	c.local = append(c.local, '\r', '\n')
	c.slots = append(c.slots, memcacheSlot{lo: lo, hi: len(c.local)})
}

// parse handles one command at the start of buf and returns its length (0: incomplete).
func (c *memcacheSession) parse(buf []byte) (int, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > maxMemcacheLine {
			return 0, fmt.Errorf("line too long")
		}
		return 0, nil
	}
	line := buf[:i+1]
	c.args = c.args[:cap(c.args)]
	n := fields(line, c.args)
	if n > len(c.args) {
		c.args = make([][]byte, n)
		fields(line, c.args)
	}
	args := c.args[:n]
	if n == 0 {
		c.localLine("ERROR")
		return len(line), nil
	}
	if bytes.IndexByte(line, 0) >= 0 {
		// memcached reads a command line only up to its first NUL (it tokenizes a C string), so it would
		// act on another command than the one the proxy parsed: "incr k 1 noreply\0x" gets no reply, which
		// would leave the request waiting on the shared shard connection until TIMEOUT and fail every
		// other client's requests behind it; "set a\0b 0 0 1" gets two. The line is refused here.
		c.localLine("CLIENT_ERROR bad command line format: a NUL byte")
		return len(line), nil
	}
	c.cmd = nil
	if id, ok := memcacheCommandIDs[string(args[0])]; ok {
		c.cmd = c.m.command(id)
	}
	switch string(args[0]) {
	case "get", "gets":
		if n < 2 {
			c.localLine("ERROR")
			return len(line), nil
		}
		if !keysOK(args[1:]) {
			// memcached answers a retrieval with a key over KEY_MAX_LENGTH with CLIENT_ERROR, but 1.6.18
			// also drops the reply of the command before it in the same read: on the shared shard
			// connection, another client's request would wait for a reply that never comes, and every
			// request behind it would fail at TIMEOUT (FuzzMemcacheClient's third finding). So the line is
			// answered here, as memcached answers it.
			c.localLine("CLIENT_ERROR bad command line format")
			return len(line), nil
		}
		c.retrieve(line, args)
		return len(line), nil
	case "set", "add", "replace", "append", "prepend", "cas":
		want := 5
		if string(args[0]) == "cas" {
			want = 6
		}
		if n != want && !(n == want+1 && string(args[want]) == "noreply") {
			c.localLine("CLIENT_ERROR bad command line format")
			return len(line), nil
		}
		if !storageLineOK(args, want) {
			// memcached answers this line with CLIENT_ERROR and then reads the data block as a command of
			// its own: two replies to one request, which would hand the second to the next client on the
			// shared shard connection. So the line is answered here, as memcached answers it.
			c.localLine("CLIENT_ERROR bad command line format")
			return len(line), nil
		}
		size, _ := strconv.Atoi(string(args[4])) // digits that fit, storageLineOK checked
		if int64(size) > c.b.cfg.MaxCommandSize {
			// memcached answers "object too large for cache" and skips the data; here the data is not read
			// (it could be anything up to 2 GB), so the connection is closed after the reply.
			return 0, errCommandTooLarge{c.b.cfg.MaxCommandSize}
		}
		total := len(line) + size + 2
		if total > len(buf) {
			return 0, nil
		}
		if buf[total-2] != '\r' || buf[total-1] != '\n' {
			return 0, fmt.Errorf("bad data chunk")
		}
		c.forward(args, n > want, buf[:total], buf[len(line):total])
		return total, nil
	case "delete", "incr", "decr", "touch":
		if n < 2 {
			c.localLine("ERROR")
			return len(line), nil
		}
		noreply := string(args[n-1]) == "noreply"
		if !keysOK(args[1:2]) {
			if !noreply {
				c.localLine("CLIENT_ERROR bad command line format") // memcached's answer, given here
			}
			return len(line), nil
		}
		c.forward(args, noreply, line, nil)
		return len(line), nil
	case "version":
		c.localLine("VERSION shard-ambassador-%s", version)
		return len(line), nil
	case "quit":
		c.start()
		c.quit = true
		return len(line), nil
	}
	c.m.refused.WithLabelValues(refusedMemcacheLabel(args[0])).Inc()
	c.localLine("CLIENT_ERROR shard-ambassador: command '%s' cannot be sharded, refused", args[0])
	return len(line), nil
}

// forward sends a one-key command (raw: line and data) to its key's shard; with noreply the line is
// re-encoded without "noreply" and the shard's reply is dropped.
func (c *memcacheSession) forward(args [][]byte, noreply bool, raw, data []byte) {
	c.start()
	if noreply {
		c.scratch = bytes.Join(args[:len(args)-1], []byte(" "))
		c.scratch = append(c.scratch, '\r', '\n')
		c.scratch = append(c.scratch, data...)
		raw = c.scratch
	}
	i, err := pick(c.p, args[1])
	if err != nil {
		c.serverError(noreply, err)
		return
	}
	req := c.newRequest()
	req.kind = kindLine
	if err := c.send(i, req, raw); err != nil {
		c.serverError(noreply, err)
		return
	}
	c.slots = append(c.slots, memcacheSlot{req: req, noreply: noreply})
}

func (c *memcacheSession) serverError(noreply bool, err error) {
	if !noreply {
		c.localLine("SERVER_ERROR shard-ambassador: %s", oneLine(err.Error()))
	}
}

// retrieve sends get/gets: as is when every key is on one shard, else one sub-command per shard.
func (c *memcacheSession) retrieve(line []byte, args [][]byte) {
	c.start()
	r := c.p.ring
	keys := args[1:]
	first := r.Pick(keys[0])
	same := first >= 0
	for _, k := range keys[1:] {
		if !same {
			break
		}
		same = r.Pick(k) == first
	}
	if same {
		req := c.newRequest()
		req.kind = kindRetrieval
		if err := c.send(first, req, line); err != nil {
			c.serverError(false, err)
			return
		}
		c.slots = append(c.slots, memcacheSlot{req: req})
		return
	}
	for i := range c.owners {
		c.owners[i] = -1
	}
	var shards []int
	klo := len(c.keySub)
	for _, k := range keys {
		i := r.Pick(k)
		if i < 0 {
			c.keySub = c.keySub[:klo]
			c.serverError(false, errNoLiveShard)
			return
		}
		if c.owners[i] < 0 {
			c.owners[i] = len(shards)
			shards = append(shards, i)
		}
		c.keySub = append(c.keySub, int32(c.owners[i]))
		c.keys = append(c.keys, k)
	}
	lo := len(c.subs)
	for pos, i := range shards {
		c.scratch = append(c.scratch[:0], args[0]...)
		for k, o := range c.keySub[klo:] {
			if int(o) == pos {
				c.scratch = append(c.scratch, ' ')
				c.scratch = append(c.scratch, keys[k]...)
			}
		}
		c.scratch = append(c.scratch, '\r', '\n')
		req := c.newRequest()
		req.kind = kindRetrieval
		if err := c.send(i, req, c.scratch); err != nil {
			req.err = err
		}
		c.subs = append(c.subs, req)
	}
	c.slots = append(c.slots, memcacheSlot{split: true, lo: lo, hi: len(c.subs), klo: klo, khi: len(c.keySub)})
}

func (c *memcacheSession) writeReplies() error {
	for i := range c.slots {
		sl := &c.slots[i]
		switch {
		case sl.req != nil:
			if sl.noreply {
				break
			}
			if sl.req.err != nil {
				c.out.Write(memcacheErrorLine(nil, sl.req.err))
			} else {
				c.out.Write(sl.req.reply)
			}
		case sl.split:
			c.writeMerged(sl)
		default:
			c.out.Write(c.local[sl.lo:sl.hi])
		}
		sl.req = nil
	}
	return c.out.Flush()
}

// writeMerged writes the VALUE blocks of every sub-reply in the client's key order, then END.
func (c *memcacheSession) writeMerged(sl *memcacheSlot) {
	subs := c.subs[sl.lo:sl.hi]
	for _, r := range subs {
		if r.err != nil {
			c.out.WriteString("SERVER_ERROR shard-ambassador: " + oneLine(r.err.Error()) + "\r\n")
			return
		}
		if !bytes.HasPrefix(r.reply, []byte("VALUE ")) && !bytes.Equal(r.reply, []byte("END\r\n")) {
			c.out.Write(r.reply)
			return
		}
	}
	cursor := make([]int, len(subs))
	for k, o := range c.keySub[sl.klo:sl.khi] {
		r := subs[o]
		rest := r.reply[cursor[o]:]
		if !bytes.HasPrefix(rest, []byte("VALUE ")) {
			continue
		}
		n, _ := lineLen(rest)
		var f [3][]byte
		fields(rest[:n], f[:])
		if !bytes.Equal(f[1], c.keys[sl.klo+k]) {
			continue // a miss: this key has no VALUE block
		}
		size, err := valueSize(rest[:n])
		if err != nil {
			continue
		}
		c.out.Write(rest[:n+size+2])
		cursor[o] += n + size + 2
	}
	c.out.WriteString("END\r\n")
}

func oneLine(s string) string {
	return string(bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, []byte(s)))
}

// maxMemcacheKey is memcached's KEY_MAX_LENGTH.
const maxMemcacheKey = 250

// keysOK reports whether every key is within memcached's KEY_MAX_LENGTH.
func keysOK(keys [][]byte) bool {
	for _, k := range keys {
		if len(k) > maxMemcacheKey {
			return false
		}
	}
	return true
}

// storageLineOK checks a storage command line ("set <key> <flags> <exptime> <bytes> [<cas>] [noreply]")
// as memcached does before it reads the data block, a little more strictly (digits only): a line memcached
// would refuse must never reach it, since it answers such a line twice.
func storageLineOK(args [][]byte, want int) bool {
	digits := func(b []byte, bits int) bool {
		if len(b) == 0 {
			return false
		}
		for _, c := range b {
			if c < '0' || c > '9' {
				return false
			}
		}
		_, err := strconv.ParseUint(string(b), 10, bits)
		return err == nil
	}
	exptime := args[3]
	if len(exptime) > 1 && exptime[0] == '-' {
		exptime = exptime[1:]
	}
	ok := len(args[1]) <= maxMemcacheKey && digits(args[2], 32) && digits(exptime, 63) && digits(args[4], 31)
	if want == 6 { // cas: its unique
		ok = ok && digits(args[5], 64)
	}
	return ok
}

// refuse answers the error that ends the client's connection, as memcached words it, and returns it.
func (c *memcacheSession) refuse(err error) error {
	c.settle()
	if errors.As(err, new(errCommandTooLarge)) {
		c.out.WriteString("SERVER_ERROR object too large for cache: " + err.Error() + "\r\n")
	} else {
		c.out.WriteString("CLIENT_ERROR " + err.Error() + "\r\n")
	}
	c.out.Flush()
	return err
}
