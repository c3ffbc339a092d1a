package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// proxyFor is configFor with the shard and a LISTEN of its own (the redis default, 6379, would be shared
// by the several proxies of one test).
func proxyFor(t *testing.T, env map[string]string) *Config {
	t.Helper()
	env["LISTEN"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env["STATUS_PORT"] = strconv.Itoa(freePort(t))
	return configFor(t, env)
}

// startRedisWith starts a redis-server like startRedis, with extra arguments (config directives).
func startRedisWith(t *testing.T, extra ...string) *peer {
	t.Helper()
	bin := needBinary(t, "redis-server")
	port := freePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", t.TempDir()}, extra...)
	return startProcess(t, fmt.Sprintf("127.0.0.1:%d", port), bin, args...)
}

// TestShardsWithAPasswordAreAuthenticated: real redis-servers that require a password (requirepass) or
// an ACL user. Without AUTH_FILE the shard's NOAUTH comes through; with it every new shard connection
// authenticates before its first request, the password read from the file each time (a rotated Secret
// is used from the next connection on); a wrong password fails with redis's reason and never shows the
// password; a client's own AUTH is answered against the same credentials.
func TestShardsWithAPasswordAreAuthenticated(t *testing.T) {
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	password := "pw-" + nonce
	shard := startRedisWith(t, "--requirepass", password)
	authFile := filepath.Join(t.TempDir(), "password")
	write := func(content string) {
		if err := os.WriteFile(authFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	plain := dial(t, startAmbassador(t, proxyFor(t, map[string]string{"SHARDS": shard.addr + ":1"})))
	if got := plain.do("SET", "k", "v"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("without AUTH_FILE, SET = %q, want the shard's NOAUTH", got)
	}

	write(password + "\n")
	cfg := proxyFor(t, map[string]string{"SHARDS": shard.addr + ":1", "AUTH_FILE": authFile, "TIMEOUT": "2s"})
	c := dial(t, startAmbassador(t, cfg))
	if got := c.do("SET", "k", "v"); got != "+OK" {
		t.Fatalf("with AUTH_FILE, SET = %q", got)
	}
	if got := c.do("GET", "k"); got != "$v" {
		t.Errorf("GET = %q", got)
	}
	if got := c.do("AUTH", password); got != "+OK" {
		t.Errorf("a client's AUTH with the password = %q", got)
	}
	if got := c.do("AUTH", "nope"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Errorf("a client's AUTH with another password = %q, want WRONGPASS", got)
	}

	// Rotation: the shard's password and the file change; once the shard drops the proxy's connection, the
	// next one authenticates with the new password.
	rotated := "rotated-" + nonce
	admin := dial(t, shard.addr)
	if got := admin.do("AUTH", password); got != "+OK" {
		t.Fatal(got)
	}
	if got := admin.do("CONFIG", "SET", "requirepass", rotated); got != "+OK" {
		t.Fatal(got)
	}
	write(rotated)
	admin.do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	var got string
	for i := 0; i < 20; i++ { // the first request may meet the killed connection and fail
		if got = c.do("GET", "k"); got == "$v" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != "$v" {
		t.Errorf("after the rotation, GET = %q, want the value through a connection authenticated anew", got)
	}

	// A wrong password: redis's reason, never the password.
	write("wrong-" + nonce)
	bad := dial(t, startAmbassador(t, proxyFor(t, map[string]string{"SHARDS": shard.addr + ":1", "AUTH_FILE": authFile})))
	got = bad.do("GET", "k")
	if !strings.Contains(got, "AUTH refused: WRONGPASS") || strings.Contains(got, nonce) {
		t.Errorf("with a wrong password, GET = %q, want redis's WRONGPASS reason without the password", got)
	}
	if m := metricsText(t, cfg); strings.Contains(m, nonce) {
		t.Error("/metrics shows a password")
	}
	t.Logf("result: NOAUTH without AUTH_FILE; authenticated with it; rotated without a restart; a wrong password refused as %q", got)
}

// TestAnACLUserAuthenticates: redis 6+ ACL users, "username password" in AUTH_FILE.
func TestAnACLUserAuthenticates(t *testing.T) {
	shard := startRedisWith(t, "--user", "default", "off", "--user", "app", "on", ">app-pw", "~*", "&*", "+@all")
	authFile := filepath.Join(t.TempDir(), "auth")
	os.WriteFile(authFile, []byte("app app-pw\n"), 0o600)
	c := dial(t, startAmbassador(t, proxyFor(t, map[string]string{"SHARDS": shard.addr + ":1", "AUTH_FILE": authFile})))
	if got := c.do("SET", "k", "v"); got != "+OK" {
		t.Fatalf("as ACL user app, SET = %q", got)
	}
	if got := c.do("AUTH", "app", "app-pw"); got != "+OK" {
		t.Errorf("a client's AUTH app app-pw = %q", got)
	}
}

// TestAuthFileMistakesAreRefusedAtStart: an unreadable or malformed AUTH_FILE, or one for memcache, stops
// the start naming the setting, never the file's content.
func TestAuthFileMistakesAreRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	three := filepath.Join(dir, "three")
	os.WriteFile(three, []byte("a secret b\n"), 0o600)
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AUTH_FILE": filepath.Join(dir, "missing")}, "no such file"},
		{map[string]string{"AUTH_FILE": three}, "want a password, or a username and a password"},
		{map[string]string{"AUTH_FILE": three, "PROTOCOL": "memcache"}, "only redis shards take AUTH"},
		{map[string]string{"AUTH_FILE": "relative"}, "want an absolute path"},
	} {
		env := map[string]string{"SHARDS": "127.0.0.1:1:1"}
		for k, v := range tc.env {
			env[k] = v
		}
		_, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "AUTH_FILE") || strings.Contains(err.Error(), "secret") {
			t.Errorf("%v: %v, want an error naming AUTH_FILE with %q and not the content", tc.env, err, tc.want)
		}
	}
}

// TestNutcrackersRedisAuthIsUsed: a twemproxy file's redis_auth (one password per pool) authenticates the
// shard connections as it does in twemproxy.
func TestNutcrackersRedisAuthIsUsed(t *testing.T) {
	shard := startRedisWith(t, "--requirepass", "pool-pw")
	file := filepath.Join(t.TempDir(), "nutcracker.yml")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	os.WriteFile(file, []byte("pool:\n  listen: "+listen+"\n  redis: true\n  redis_auth: pool-pw\n  servers:\n   - "+shard.addr+":1\n"), 0o644)
	cfg := configFor(t, map[string]string{"CONFIG_FILE": file, "STATUS_PORT": strconv.Itoa(freePort(t))})
	if got := dial(t, startAmbassador(t, cfg)).do("SET", "k", "v"); got != "+OK" {
		t.Fatalf("with redis_auth, SET = %q", got)
	}
}
