package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/webhook/catalog/catalogtest"
)

func TestAPIAgreement(t *testing.T) {
	for _, p := range catalogtest.Problems(".", "shard-ambassador", settings(&Config{})) {
		t.Error(p)
	}
}

func load(env map[string]string, args ...string) (*Config, error) {
	return loadConfig(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
}

func TestConfigDefaultsAndShards(t *testing.T) {
	c, err := load(map[string]string{"SHARDS": "redis-1.redis:6379:2 beta, redis-0.redis:6379:1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:6379" || c.Hash != "fnv1a_64" || c.Distribution != "ketama" || c.Timeout != time.Second ||
		c.ServerConnections != 1 || c.ServerFailureLimit != 2 || c.ServerRetryTimeout != 30*time.Second || c.StatusPort != 9804 {
		t.Errorf("defaults: %+v", c)
	}
	// twemproxy's order: sorted by name, shorter first ("beta" before "redis-0.redis:6379").
	if len(c.Servers) != 2 || c.Servers[0].Name != "beta" || c.Servers[0].Weight != 2 || c.Servers[1].Host != "redis-0.redis" {
		t.Errorf("servers: %+v", c.Servers)
	}
	if c, _ := load(map[string]string{"PROTOCOL": "memcache", "SHARDS": "a:11211:1"}); c.Listen != "127.0.0.1:11211" {
		t.Errorf("memcache listen = %q", c.Listen)
	}
}

func TestConfigErrorsNameTheSettingAndWhatIsAccepted(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{}, []string{"SHARDS is empty: set SHARDS (host:port:weight [name], comma-separated) or CONFIG_FILE"}},
		{map[string]string{"SHARDS": "a:6379"}, []string{`invalid SHARDS="a:6379": shard "a:6379": want host:port:weight [name]`}},
		{map[string]string{"SHARDS": "a:6379:0"}, []string{`weight "0": want a whole number of at least 1`}},
		{map[string]string{"SHARDS": "a:99999:1"}, []string{`port "99999": want a port number from 1 to 65535`}},
		{map[string]string{"SHARDS": "a:1:1,a:1:1"}, []string{`shard "a:1" appears twice`}},
		{map[string]string{"SHARDS": "a:1:1", "HASH": "sha1", "DISTRIBUTION": "ring", "HASH_TAG": "{"},
			[]string{`invalid HASH="sha1": want one of crc16, crc32`, `invalid DISTRIBUTION="ring": want one of ketama, modula, random`, `invalid HASH_TAG="{": want two characters`}},
		{map[string]string{"SHARDS": "a:1:1", "CONFIG_FILE": "/x.yml"}, []string{`SHARDS="a:1:1" and CONFIG_FILE="/x.yml" are both set`}},
		{map[string]string{"SHARDS": "a:1:1", "TIMEOUT": "soon"}, []string{`invalid TIMEOUT="soon": want a duration`}},
	} {
		_, err := load(tc.env)
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q lacks %q", tc.env, err, w)
			}
		}
	}
	if _, err := load(nil, "--help"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestConfigFromNutcrackerFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	os.WriteFile(path, []byte(`alpha:
  listen: 0.0.0.0:22121
  hash: fnv1a_64
  distribution: ketama
  servers:
   - 127.0.0.1:11211:1
beta:
  listen: 127.0.0.1:22122
  hash: murmur
  hash_tag: "{}"
  distribution: modula
  redis: true
  timeout: 400
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 3
  server_connections: 4
  servers:
   - 10.0.0.2:6379:1 server2
   - 10.0.0.1:6379:1 server1
`), 0o644)
	c, err := load(map[string]string{"CONFIG_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pool != "alpha" || c.Protocol != "memcache" || c.Listen != "0.0.0.0:22121" || c.Servers[0].KetamaName() != "127.0.0.1" {
		t.Errorf("first pool: %+v", c)
	}
	c, err = load(map[string]string{"CONFIG_FILE": path, "POOL": "beta", "LISTEN": "127.0.0.1:6379"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Protocol != "redis" || c.Listen != "127.0.0.1:6379" || c.Hash != "murmur" || c.HashTag != "{}" || c.Distribution != "modula" ||
		c.Timeout != 400*time.Millisecond || !c.AutoEjectHosts || c.ServerRetryTimeout != 2*time.Second || c.ServerFailureLimit != 3 ||
		c.ServerConnections != 4 || c.Servers[0].Name != "server1" {
		t.Errorf("pool beta: %+v", c)
	}
	if _, err := load(map[string]string{"CONFIG_FILE": path, "POOL": "gamma"}); err == nil || !strings.Contains(err.Error(), `POOL="gamma": CONFIG_FILE `+path+` has no such pool; it has alpha, beta`) {
		t.Errorf("unknown pool: %v", err)
	}
}
