package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// kvStore is the app side of the book's sharded cache: it speaks redis or memcache to one address, the
// shard-ambassador on localhost, and knows nothing of the shards behind it. Each request opens its own
// connection and sends one command: the test app needs GET and SET only, so a few lines of each protocol do
// (a client library would bring a pool and retries this app must not hide).
type kvStore struct {
	protocol, addr string
}

func (s kvStore) handle(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	var value string
	var err error
	switch r.Method {
	case http.MethodPut:
		body, rerr := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if rerr != nil {
			http.Error(w, rerr.Error(), http.StatusBadRequest)
			return
		}
		err = s.set(key, string(body))
		value = "stored\n"
	default:
		value, err = s.get(key)
	}
	switch {
	case errors.Is(err, errNotFound):
		http.Error(w, "not found", http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadGateway)
	default:
		fmt.Fprint(w, value)
	}
}

var errNotFound = errors.New("not found")

func (s kvStore) roundTrip(request string, read func(*bufio.Reader) (string, error)) (string, error) {
	conn, err := net.DialTimeout("tcp", s.addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		return "", err
	}
	return read(bufio.NewReader(conn))
}

func (s kvStore) get(key string) (string, error) {
	if s.protocol == "memcache" {
		return s.roundTrip("get "+key+"\r\n", func(br *bufio.Reader) (string, error) {
			line, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			if line == "END\r\n" {
				return "", errNotFound
			}
			f := strings.Fields(line)
			if len(f) != 4 || f[0] != "VALUE" {
				return "", fmt.Errorf("memcache: %q", strings.TrimSpace(line))
			}
			n, _ := strconv.Atoi(f[3])
			data := make([]byte, n+2)
			if _, err := io.ReadFull(br, data); err != nil {
				return "", err
			}
			return string(data[:n]), nil
		})
	}
	return s.roundTrip(resp("GET", key), func(br *bufio.Reader) (string, error) {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		switch {
		case line == "$-1\r\n":
			return "", errNotFound
		case strings.HasPrefix(line, "$"):
			n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
			data := make([]byte, n+2)
			if _, err := io.ReadFull(br, data); err != nil {
				return "", err
			}
			return string(data[:n]), nil
		}
		return "", fmt.Errorf("redis: %q", strings.TrimSpace(line))
	})
}

func (s kvStore) set(key, value string) error {
	var err error
	if s.protocol == "memcache" {
		_, err = s.roundTrip(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(value), value), expect("STORED\r\n"))
	} else {
		_, err = s.roundTrip(resp("SET", key, value), expect("+OK\r\n"))
	}
	return err
}

func expect(want string) func(*bufio.Reader) (string, error) {
	return func(br *bufio.Reader) (string, error) {
		line, err := br.ReadString('\n')
		if err == nil && line != want {
			err = fmt.Errorf("got %q, want %q", strings.TrimSpace(line), strings.TrimSpace(want))
		}
		return line, err
	}
}

// resp encodes a redis command as a RESP array of bulk strings.
func resp(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}
