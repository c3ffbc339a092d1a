package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Shard authentication: redis's AUTH, sent on every new shard connection before any request, with the
// password (or ACL username and password) of AUTH_FILE, a file of a mounted Secret read anew for each
// connection, or else CONFIG_FILE's redis_auth as twemproxy has it. Connections are shared by every
// client, so the proxy authenticates them itself; a client's own AUTH is answered locally (redis.go).

// authArgs returns AUTH's arguments (nil: no authentication). The file's content never appears in an
// error: only its path and what shape was wanted.
func (c *Config) authArgs() ([]string, error) {
	if c.AuthFile == "" {
		if c.redisAuth != "" {
			return []string{c.redisAuth}, nil
		}
		return nil, nil
	}
	b, err := os.ReadFile(c.AuthFile)
	if err != nil {
		return nil, fmt.Errorf("AUTH_FILE=%q: %w", c.AuthFile, errors.Unwrap(err))
	}
	fields := strings.Fields(string(b))
	if len(fields) < 1 || len(fields) > 2 {
		return nil, fmt.Errorf("AUTH_FILE=%q: want a password, or a username and a password separated by a blank, on one line (it has %d words)", c.AuthFile, len(fields))
	}
	return fields, nil
}

// authenticate sends AUTH on a new shard connection and reads redis's answer, within TIMEOUT.
func (b *backend) authenticate(nc net.Conn) error {
	args, err := b.cfg.authArgs()
	if err != nil || args == nil {
		return err
	}
	cmd := appendArrayHeader(nil, 1+len(args))
	cmd = appendBulk(cmd, []byte("AUTH"))
	for _, a := range args {
		cmd = appendBulk(cmd, []byte(a))
	}
	nc.SetDeadline(time.Now().Add(b.cfg.Timeout))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write(cmd); err != nil {
		return fmt.Errorf("sending AUTH: %w", err)
	}
	// Byte by byte up to the line's end: nothing else may be read from the connection yet, and redis sends
	// nothing after this reply until a request comes.
	var line []byte
	one := make([]byte, 1)
	for len(line) < 512 {
		if _, err := nc.Read(one); err != nil {
			return fmt.Errorf("reading AUTH's reply: %w", err)
		}
		if one[0] == '\n' {
			break
		}
		line = append(line, one[0])
	}
	if reply := strings.TrimSpace(string(line)); reply != "+OK" {
		return fmt.Errorf("AUTH refused: %s", strings.TrimPrefix(reply, "-"))
	}
	return nil
}
