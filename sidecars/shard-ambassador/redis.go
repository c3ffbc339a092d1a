package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// redisSession serves one redis client (RESP2).
type redisSession struct {
	session
	m       *metrics
	args    [][]byte
	slots   []redisSlot
	local   []byte     // replies made by the proxy in this batch
	subs    []*request // sub-requests of split commands
	keySub  []int32    // for each key of a split command, which of its sub-requests holds it
	scratch []byte     // encoding of one sub-command
	owners  []int      // shard → sub-request position while splitting one command
}

type redisSlot struct {
	req      *request // single command (nil for local or split)
	lo, hi   int      // local reply: c.local[lo:hi]; split: c.subs[lo:hi]
	klo, khi int      // split: c.keySub[klo:khi]
	merge    mergeKind
	shards   []int // split: shard of each sub (for error messages), aliases a per-slot slice
}

func serveRedis(b *backend, m *metrics, s session) error {
	c := &redisSession{session: s, m: m, owners: make([]int, len(s.p.shards))}
	c.errLine = redisErrorLine
	defer c.settle() // a direct reply in flight refers to this session
	for {
		if c.refreshPool() {
			c.owners = make([]int, len(c.p.shards))
		}
		c.slots, c.local, c.subs, c.keySub = c.slots[:0], c.local[:0], c.subs[:0], c.keySub[:0]
		for len(c.slots) < maxBatch {
			args, n, err := parseCommand(c.rbuf[c.r:c.w], c.args, c.b.cfg.MaxCommandSize)
			c.args = args
			if err != nil {
				return c.refuse(err)
			}
			if n == 0 {
				break
			}
			if len(args) > 0 {
				c.start()
				c.dispatch(args, c.rbuf[c.r:c.r+n])
			}
			c.r += n
			if c.quit {
				break
			}
		}
		if len(c.slots) == 0 {
			if err := c.fill(); err != nil {
				if errors.As(err, new(errCommandTooLarge)) {
					return c.refuse(err)
				}
				return err
			}
			continue
		}
		c.end()
		if len(c.slots) == 1 && c.slots[0].req != nil && c.sendDirect(c.slots[0].req) {
			c.slots[0].req = nil
			continue
		}
		c.wait()
		if err := c.writeReplies(); err != nil {
			return err
		}
		if c.quit {
			return nil
		}
	}
}

// refuse answers the error that ends the client's connection (a protocol error, a command over
// MAX_COMMAND_SIZE) and returns it.
func (c *redisSession) refuse(err error) error {
	c.settle()
	c.local = appendError(c.local[:0], "ERR "+err.Error())
	c.out.Write(c.local)
	c.out.Flush()
	return err
}

// redisErrorLine is the reply for a request that failed at its shard.
func redisErrorLine(dst []byte, err error) []byte {
	return appendError(dst, "ERR shard-ambassador: "+err.Error())
}

func (c *redisSession) localReply(b []byte) {
	lo := len(c.local)
	c.local = append(c.local, b...)
	c.slots = append(c.slots, redisSlot{lo: lo, hi: len(c.local)})
}

func (c *redisSession) localError(format string, a ...any) {
	lo := len(c.local)
	c.local = appendError(c.local, fmt.Sprintf(format, a...))
	c.slots = append(c.slots, redisSlot{lo: lo, hi: len(c.local)})
}

// dispatch routes one command (args[0] is its name). raw is the command as the client sent it: it is
// forwarded untouched unless the command is split or was sent inline.
func (c *redisSession) dispatch(args [][]byte, raw []byte) {
	if raw[0] != '*' {
		raw = c.encode(args)
	}
	cmd, ok := lookupCommand(args[0])
	if !ok {
		c.m.refused.WithLabelValues(refusedLabel(args[0])).Inc()
		c.localError("ERR shard-ambassador: command '%s' cannot be sharded (not key-based, blocking or unknown), refused", args[0])
		return
	}
	c.cmd = c.m.command(cmd.id)
	if len(args) < cmd.minArgs {
		c.localError("ERR wrong number of arguments for '%s' command", bytes.ToLower(args[0]))
		return
	}
	switch cmd.route {
	case routeLocal:
		c.local1(args)
	case routeKey:
		c.single(raw, args[1])
	case routeSameShard:
		last := len(args) - 1
		if cmd.lastKey > 0 {
			last = cmd.lastKey
		}
		c.sameShard(raw, args, args[1:last+1])
	case routeNumKeys, routeStore:
		const first = 3 // EVAL script numkeys key...; ZUNIONSTORE dest numkeys key...
		n, err := strconv.Atoi(string(args[2]))
		if err != nil || n < 1 || first+n > len(args) {
			c.localError("ERR shard-ambassador: '%s' needs at least one key and a valid key count to be sharded", args[0])
			return
		}
		keys := args[first : first+n]
		if cmd.route == routeStore {
			keys = append([][]byte{args[1]}, keys...)
		}
		c.sameShard(raw, args, keys)
	case routeSplit:
		c.split(raw, args, cmd.merge, 1)
	case routeSplitKV:
		if (len(args)-1)%2 != 0 {
			c.localError("ERR wrong number of arguments for '%s' command", bytes.ToLower(args[0]))
			return
		}
		c.split(raw, args, cmd.merge, 2)
	}
}

func (c *redisSession) local1(args [][]byte) {
	switch upperName(args[0]) {
	case "PING":
		if len(args) > 1 {
			c.localReply(appendBulk(nil, args[1]))
		} else {
			c.localReply([]byte("+PONG\r\n"))
		}
	case "ECHO":
		if len(args) != 2 {
			c.localError("ERR wrong number of arguments for 'echo' command")
			return
		}
		c.localReply(appendBulk(nil, args[1]))
	case "QUIT":
		c.localReply([]byte("+OK\r\n"))
		c.quit = true
	case "SELECT":
		if len(args) == 2 && string(args[1]) == "0" {
			c.localReply([]byte("+OK\r\n"))
			return
		}
		c.localError("ERR shard-ambassador: only database 0 can be selected")
	case "COMMAND":
		c.localReply([]byte("*0\r\n"))
	case "AUTH":
		c.auth(args[1:])
	}
}

// auth answers a client's own AUTH as redis would, against the shards' credentials (the proxy has
// authenticated its shard connections itself; an app written for a password-protected redis keeps
// working). The proxy listens on the pod's loopback, so it does not require AUTH before other commands.
func (c *redisSession) auth(args [][]byte) {
	want, err := c.b.cfg.authArgs()
	switch {
	case len(args) < 1 || len(args) > 2:
		c.localError("ERR wrong number of arguments for 'auth' command")
	case err != nil:
		c.localError("ERR shard-ambassador: %v", err)
	case want == nil:
		c.localError("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	case len(args) == 1 && len(want) == 1 && string(args[0]) == want[0],
		len(args) == 2 && len(want) == 2 && string(args[0]) == want[0] && string(args[1]) == want[1],
		len(args) == 2 && len(want) == 1 && string(args[0]) == "default" && string(args[1]) == want[0]:
		c.localReply([]byte("+OK\r\n"))
	default:
		c.localError("WRONGPASS invalid username-password pair or user is disabled.")
	}
}

// encode appends args as a RESP array to c.scratch (reset) and returns it.
func (c *redisSession) encode(args [][]byte) []byte {
	c.scratch = appendArrayHeader(c.scratch[:0], len(args))
	for _, a := range args {
		c.scratch = appendBulk(c.scratch, a)
	}
	return c.scratch
}

// single forwards a one-key command to the key's shard.
func (c *redisSession) single(raw []byte, key []byte) {
	i, err := pick(c.p, key)
	if err != nil {
		c.localError("ERR shard-ambassador: %v", err)
		return
	}
	req := c.newRequest()
	if err := c.send(i, req, raw); err != nil {
		c.localError("ERR shard-ambassador: %v", err)
		return
	}
	c.slots = append(c.slots, redisSlot{req: req})
}

// sameShard forwards a command whose keys must share a shard, or refuses it.
func (c *redisSession) sameShard(raw []byte, args, keys [][]byte) {
	r := c.p.ring
	first := r.Pick(keys[0])
	for _, k := range keys[1:] {
		if r.Pick(k) != first {
			c.localError("ERR shard-ambassador: the keys of '%s' live on different shards; give them a common hash tag (HASH_TAG) to keep them together", args[0])
			return
		}
	}
	c.single(raw, keys[0])
}

// split sends a multi-key command as one sub-command per shard (keys grouped in their order) and keeps
// which sub-request holds each key, so that the replies can be merged back in the client's key order.
// step is 1 for keys, 2 for key/value pairs.
func (c *redisSession) split(raw []byte, args [][]byte, merge mergeKind, step int) {
	r := c.p.ring
	// Fast path: every key on one shard → forward the command as it is.
	first := r.Pick(args[1])
	same := first >= 0
	for k := 1 + step; same && k < len(args); k += step {
		same = r.Pick(args[k]) == first
	}
	if same {
		c.single(raw, args[1])
		return
	}
	for i := range c.owners {
		c.owners[i] = -1
	}
	var shards []int
	klo := len(c.keySub)
	for k := 1; k < len(args); k += step {
		i := r.Pick(args[k])
		if i < 0 {
			c.keySub = c.keySub[:klo]
			c.localError("ERR shard-ambassador: %v", errNoLiveShard)
			return
		}
		if c.owners[i] < 0 {
			c.owners[i] = len(shards)
			shards = append(shards, i)
		}
		c.keySub = append(c.keySub, int32(c.owners[i]))
	}
	lo := len(c.subs)
	for pos, i := range shards {
		n := 0
		for _, o := range c.keySub[klo:] {
			if int(o) == pos {
				n++
			}
		}
		c.scratch = appendArrayHeader(c.scratch[:0], 1+n*step)
		c.scratch = appendBulk(c.scratch, args[0])
		for k, o := range c.keySub[klo:] {
			if int(o) == pos {
				for j := 0; j < step; j++ {
					c.scratch = appendBulk(c.scratch, args[1+k*step+j])
				}
			}
		}
		req := c.newRequest()
		if err := c.send(i, req, c.scratch); err != nil {
			req.err = err // answered below, at merge time
		}
		c.subs = append(c.subs, req)
	}
	c.slots = append(c.slots, redisSlot{lo: lo, hi: len(c.subs), klo: klo, khi: len(c.keySub), merge: merge, shards: shards})
}

// writeReplies writes the batch's replies in command order and flushes once.
func (c *redisSession) writeReplies() error {
	for i := range c.slots {
		sl := &c.slots[i]
		switch {
		case sl.req != nil:
			if sl.req.err != nil {
				c.scratch = redisErrorLine(c.scratch[:0], sl.req.err)
				c.out.Write(c.scratch)
			} else {
				c.out.Write(sl.req.reply)
			}
		case sl.merge != 0:
			c.writeMerged(sl)
		default:
			c.out.Write(c.local[sl.lo:sl.hi])
		}
		sl.req, sl.shards = nil, nil
	}
	return c.out.Flush()
}

func (c *redisSession) writeMerged(sl *redisSlot) {
	subs := c.subs[sl.lo:sl.hi]
	for _, r := range subs {
		if r.err != nil {
			c.out.Write(appendError(nil, "ERR shard-ambassador: "+r.err.Error()))
			return
		}
		if len(r.reply) > 0 && r.reply[0] == '-' {
			c.out.Write(r.reply)
			return
		}
	}
	switch sl.merge {
	case mergeOK:
		for _, r := range subs {
			if !bytes.Equal(r.reply, []byte("+OK\r\n")) {
				c.out.Write(r.reply)
				return
			}
		}
		c.out.WriteString("+OK\r\n")
	case mergeSum:
		var sum int64
		for _, r := range subs {
			v, _, err := readLineInt(r.reply)
			if err != nil || r.reply[0] != ':' {
				c.out.Write(appendError(nil, fmt.Sprintf("ERR shard-ambassador: unexpected reply %.40q from a shard", r.reply)))
				return
			}
			sum += v
		}
		c.out.WriteString(":" + strconv.FormatInt(sum, 10) + "\r\n")
	case mergeArray:
		// Each sub reply is an array of its keys' values in order: walk them with one cursor each.
		cursor := make([]int, len(subs))
		for k, r := range subs {
			_, n, err := readLineInt(r.reply)
			if err != nil || r.reply[0] != '*' {
				c.out.Write(appendError(nil, fmt.Sprintf("ERR shard-ambassador: unexpected reply %.40q from a shard", r.reply)))
				return
			}
			cursor[k] = n
		}
		keys := c.keySub[sl.klo:sl.khi]
		var hdr [16]byte
		c.out.Write(appendArrayHeader(hdr[:0], len(keys)))
		for _, o := range keys {
			r := subs[o]
			n, err := replyLen(r.reply[cursor[o]:])
			if err != nil || n == 0 {
				c.out.WriteString("$-1\r\n")
				continue
			}
			c.out.Write(r.reply[cursor[o] : cursor[o]+n])
			cursor[o] += n
		}
	}
}

func upperName(b []byte) string {
	if len(b) > 32 {
		b = b[:32]
	}
	return string(bytes.ToUpper(b))
}
