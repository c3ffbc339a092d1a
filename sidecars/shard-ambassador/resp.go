package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// A hand-written RESP2 reader: the proxy never decodes values, it only needs where each command's
// arguments and each reply end, so it works on the raw bytes in its own buffers (no allocation per
// command) and forwards them untouched.

// maxArgs bounds a command's argument count (and so the slice that holds them) whatever its size.
const maxArgs = 1 << 20

var errIncomplete = errors.New("incomplete")

// readLineInt reads the integer of a "<prefix><int>\r\n" header starting at buf[1]. It returns the value
// and the length of the header, or n == 0 when the header is not complete yet.
func readLineInt(buf []byte) (v int64, n int, err error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > 64 {
			return 0, 0, fmt.Errorf("protocol error: header line too long")
		}
		return 0, 0, nil
	}
	if i < 2 || buf[i-1] != '\r' {
		return 0, 0, fmt.Errorf("protocol error: bad header %.20q", buf[:i+1])
	}
	v, err = strconv.ParseInt(string(buf[1:i-1]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("protocol error: bad number in %.20q", buf[:i+1])
	}
	return v, i + 1, nil
}

// parseCommand parses one client command at the start of buf: a RESP array of bulk strings, or an inline
// command (space-separated words on one line, as typed into telnet). args receives the arguments (slices
// of buf). It returns 0 consumed bytes when buf holds no complete command yet, and errCommandTooLarge as
// soon as a bulk string says it is longer than maxBulk (MAX_COMMAND_SIZE), before its bytes arrive.
func parseCommand(buf []byte, args [][]byte, maxBulk int64) ([][]byte, int, error) {
	args = args[:0]
	if len(buf) == 0 {
		return args, 0, nil
	}
	if buf[0] != '*' {
		// An inline line is bounded by 64 KiB, as redis bounds it, and by MAX_COMMAND_SIZE.
		limit := min(64<<10, int(maxBulk))
		i := bytes.IndexByte(buf, '\n')
		if i > limit || i < 0 && len(buf) > limit {
			return args, 0, fmt.Errorf("protocol error: inline command too long")
		}
		if i < 0 {
			return args, 0, nil
		}
		for _, f := range bytes.Fields(buf[:i]) {
			args = append(args, f)
		}
		return args, i + 1, nil
	}
	argc, pos, err := readLineInt(buf)
	if err != nil || pos == 0 {
		return args, 0, err
	}
	if argc > maxArgs {
		return args, 0, fmt.Errorf("protocol error: %d arguments is too many", argc)
	}
	for k := int64(0); k < argc; k++ {
		if pos >= len(buf) {
			return args, 0, nil
		}
		if buf[pos] != '$' {
			return args, 0, fmt.Errorf("protocol error: expected '$', got %q", buf[pos])
		}
		size, n, err := readLineInt(buf[pos:])
		if err != nil || n == 0 {
			return args, 0, err
		}
		if size < 0 {
			return args, 0, fmt.Errorf("protocol error: invalid bulk length %d", size)
		}
		if size > maxBulk {
			return args, 0, errCommandTooLarge{maxBulk}
		}
		start := pos + n
		end := start + int(size)
		if end+2 > len(buf) {
			return args, 0, nil
		}
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return args, 0, fmt.Errorf("protocol error: bulk string not terminated by CRLF")
		}
		args = append(args, buf[start:end:end])
		pos = end + 2
	}
	return args, pos, nil
}

// replyLen returns the length of the complete RESP reply at the start of buf, or 0 when incomplete.
func replyLen(buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	switch buf[0] {
	case '+', '-', ':':
		i := bytes.IndexByte(buf, '\n')
		return i + 1, nil // 0 when not found
	case '$':
		size, n, err := readLineInt(buf)
		if err != nil || n == 0 || size < 0 {
			return n, err
		}
		if n+int(size)+2 > len(buf) {
			return 0, nil
		}
		return n + int(size) + 2, nil
	case '*':
		count, pos, err := readLineInt(buf)
		if err != nil || pos == 0 || count < 0 {
			return pos, err
		}
		for k := int64(0); k < count; k++ {
			n, err := replyLen(buf[pos:])
			if err != nil || n == 0 {
				return 0, err
			}
			pos += n
		}
		return pos, nil
	}
	return 0, fmt.Errorf("protocol error: unexpected reply byte %q", buf[0])
}

// parseRedisReply is the redis replyParser: replies delimit themselves. It does what replyLen does, but
// resumably: an array's elements already scanned are not scanned again when more bytes arrive.
func parseRedisReply(buf []byte, _ *request, scan *replyScan) (int, error) {
	for {
		if scan.pos >= len(buf) {
			return 0, nil
		}
		b := buf[scan.pos:]
		var n int
		switch b[0] {
		case '+', '-', ':':
			n = bytes.IndexByte(b, '\n') + 1
			if n == 0 {
				return 0, nil
			}
		case '$':
			size, hn, err := readLineInt(b)
			if err != nil || hn == 0 {
				return 0, err
			}
			n = hn // a nil bulk string has no body
			if size >= 0 {
				if hn+int(size)+2 > len(b) {
					return 0, nil
				}
				n += int(size) + 2
			}
		case '*':
			count, hn, err := readLineInt(b)
			if err != nil || hn == 0 {
				return 0, err
			}
			if count > 0 {
				scan.pos += hn
				scan.open = append(scan.open, count)
				continue
			}
			n = hn // an empty or nil array is a complete element
		default:
			scan.pos, scan.open = 0, scan.open[:0]
			return 0, fmt.Errorf("protocol error: unexpected reply byte %q", b[0])
		}
		scan.pos += n
		// One element is complete: so are the arrays it completes, and maybe the whole reply.
		for {
			if len(scan.open) == 0 {
				n, scan.pos = scan.pos, 0
				return n, nil
			}
			last := len(scan.open) - 1
			if scan.open[last]--; scan.open[last] > 0 {
				break
			}
			scan.open = scan.open[:last]
		}
	}
}

// appendBulk appends a RESP bulk string.
func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// appendArrayHeader appends "*n\r\n".
func appendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// appendError appends a RESP error reply; line breaks in msg become spaces.
func appendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c == '\r' || c == '\n' {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, '\r', '\n')
}
