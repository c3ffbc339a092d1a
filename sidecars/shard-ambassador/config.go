package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
	"github.com/outrigger-dev/outrigger/sidecars/shard-ambassador/ring"
)

// Config is the validated configuration; run trusts it.
type Config struct {
	Protocol     string // redis, memcache or http
	Listen       string // host:port; "" means 127.0.0.1 with the protocol's usual port
	Shards       string // SHARDS as given
	Hash         string
	Distribution string
	HashTag      string
	ConfigFile   string
	Pool         string
	StatusPort   int

	Timeout            time.Duration
	AutoEjectHosts     bool
	ServerFailureLimit int
	ServerRetryTimeout time.Duration
	ServerConnections  int
	HTTPKeyHeader      string
	// MaxCommandSize bounds the bytes one client command may take (redis, memcache); MaxClients the
	// client connections served at once.
	MaxCommandSize int64
	MaxClients     int
	// AuthFile holds the shards' redis password, or "username password" for an ACL user; read at every new
	// shard connection, so that a rotated Secret is used from the next connection on.
	AuthFile string
	// TLS connects to the shards over TLS, verifying them against TLSCAFile (else the system's roots) and
	// presenting TLSCertFile/TLSKeyFile when set (redis's tls-auth-clients).
	TLS                                bool
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// FIFOPoller serves the client and shard connections from internal/fifopoll (readiness order).
	FIFOPoller bool

	// Derived by loadConfig.
	// configPoll re-reads CONFIG_FILE this often besides its directory's events (reload.go); 10 s.
	configPoll time.Duration
	// redisAuth is CONFIG_FILE's redis_auth (twemproxy's one password per pool), used without AuthFile.
	redisAuth string
	Servers   []ring.Server
	hashFunc  ring.HashFunc
}

// A command's bounds: MAX_COMMAND_SIZE from 1Ki (a key and a small value) to redis's own limit of a bulk
// string, 512Mi.
const (
	minCommandSize = 1 << 10
	maxCommandSize = 512 << 20
)

// defaultPorts are the usual ports of each protocol, used when LISTEN is not set.
var defaultPorts = map[string]string{"redis": "6379", "memcache": "11211", "http": "8080"}

// settings is the one source of truth for the ENV names, their defaults and their usage lines.
func settings(c *Config) envflag.Set {
	return envflag.Set{Program: "shard-ambassador", Vars: []envflag.Var{
		{Env: "PROTOCOL", Default: "redis", Usage: "protocol spoken by the app and the shards: redis, memcache or http",
			Parse: envflag.OneOf(&c.Protocol, "redis", "memcache", "http")},
		{Env: "LISTEN", Usage: "listen address host:port (default: 127.0.0.1 with the protocol's port: 6379, 11211 or 8080)",
			Parse: optionalHostPort(&c.Listen)},
		{Env: "SHARDS", Usage: "the shards, twemproxy style: host:port:weight [name], comma-separated",
			Parse: envflag.String(&c.Shards)},
		{Env: "HASH", Default: "fnv1a_64", Usage: "hash function, twemproxy's names: " + strings.Join(ring.HashNames(), ", "),
			Parse: envflag.OneOf(&c.Hash, ring.HashNames()...)},
		{Env: "DISTRIBUTION", Default: "ketama", Usage: "key distribution: ketama (consistent hashing), modula or random",
			Parse: envflag.OneOf(&c.Distribution, ring.Distributions...)},
		{Env: "HASH_TAG", Usage: "two characters, e.g. {}: only the part of a key between them is hashed",
			Parse: envflag.Delimiters(&c.HashTag)},
		{Env: "CONFIG_FILE", Usage: "a twemproxy (nutcracker.yml) file, mounted into the pod; its pool's keys win over the settings above, and a change to its servers is applied without a restart",
			Parse: envflag.String(&c.ConfigFile)},
		{Env: "POOL", Usage: "the pool of CONFIG_FILE to serve (default: the first)",
			Parse: envflag.String(&c.Pool)},
		{Env: "TIMEOUT", Default: "1s", Usage: "how long a shard may take to connect or reply before the request fails",
			Parse: envflag.Duration(&c.Timeout, time.Millisecond)},
		{Env: "AUTO_EJECT_HOSTS", Default: "false", Usage: "take a failing shard out of the ring (its keys move to the others)",
			Parse: envflag.Bool(&c.AutoEjectHosts), Switch: true},
		{Env: "SERVER_FAILURE_LIMIT", Default: "2", Usage: "consecutive failures that eject a shard (with AUTO_EJECT_HOSTS)",
			Parse: envflag.Int(&c.ServerFailureLimit, 1, 1000)},
		{Env: "SERVER_RETRY_TIMEOUT", Default: "30s", Usage: "how long an ejected shard stays out of the ring",
			Parse: envflag.Duration(&c.ServerRetryTimeout, time.Millisecond)},
		{Env: "SERVER_CONNECTIONS", Default: "1", Usage: "connections to each shard, shared by all clients",
			Parse: envflag.Int(&c.ServerConnections, 1, 1024)},
		{Env: "HTTP_KEY_HEADER", Usage: "http: a request header whose value is hashed with the URI (e.g. X-Country)",
			Parse: envflag.String(&c.HTTPKeyHeader)},
		{Env: "MAX_COMMAND_SIZE", Default: "16Mi", Usage: "the largest command a client may send, in bytes or with Ki, Mi or Gi (redis: its arguments; memcache: a value and its line); a larger one gets an error reply and its connection is closed",
			Parse: envflag.Size(&c.MaxCommandSize, minCommandSize, maxCommandSize)},
		{Env: "MAX_CLIENT_CONNECTIONS", Default: "1024", Usage: "client connections served at once; one more gets an error reply (redis: ERR max number of clients reached; memcache: SERVER_ERROR) and is closed (http: it waits to be accepted)",
			Parse: envflag.Int(&c.MaxClients, 1, 1000000)},
		{Env: "STATUS_PORT", Default: "9804", Usage: "plain-HTTP port for /healthz, /readyz and /metrics",
			Parse: envflag.Port(&c.StatusPort)},
		{Env: "TLS", Default: "false", Usage: "connect to the shards over TLS (redis 6+ tls-port, memcached -Z), verifying each shard's certificate for its host name",
			Parse: envflag.Bool(&c.TLS), Switch: true},
		{Env: "TLS_CA_FILE", Usage: "PEM CA bundle the shards' certificates are verified against (empty: the system's roots), e.g. ca.crt of tls-secret",
			Parse: envflag.OptionalAbsolutePath(&c.TLSCAFile)},
		{Env: "TLS_CERT_FILE", Usage: "PEM client certificate presented to the shards (redis's tls-auth-clients), with TLS_KEY_FILE",
			Parse: envflag.OptionalAbsolutePath(&c.TLSCertFile)},
		{Env: "TLS_KEY_FILE", Usage: "PEM private key of TLS_CERT_FILE",
			Parse: envflag.OptionalAbsolutePath(&c.TLSKeyFile)},
		{Env: "FIFO_POLLER", Default: "true", Usage: "redis, memcache: serve client and shard connections in readiness order from the proxy's own epoll poller (Linux; a lower p99 under load); false leaves them to Go's netpoller",
			Parse: envflag.Bool(&c.FIFOPoller), Switch: true},
		{Env: "AUTH_FILE", Usage: "redis: a file holding the shards' password, or an ACL username and password on one line (e.g. from auth-secret); sent as AUTH on every new shard connection, read anew each time",
			Parse: envflag.OptionalAbsolutePath(&c.AuthFile)},
	}}
}

func optionalHostPort(p *string) func(string) error {
	return func(s string) error {
		if s == "" {
			*p = ""
			return nil
		}
		return envflag.HostPort(p)(s)
	}
}

// loadConfig parses flags and ENV, reads CONFIG_FILE when set, and validates the result as a whole.
func loadConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	c := &Config{configPoll: 10 * time.Second}
	if err := settings(c).Parse(args, lookupEnv, out); err != nil {
		return nil, err
	}
	var problems []error
	if c.ConfigFile != "" {
		if c.Shards != "" {
			problems = append(problems, fmt.Errorf("SHARDS=%q and CONFIG_FILE=%q are both set: the shards come from one of them", c.Shards, c.ConfigFile))
		}
		if err := applyNutcrackerFile(c); err != nil {
			problems = append(problems, err)
		}
	} else {
		if c.Pool != "" {
			problems = append(problems, fmt.Errorf("POOL=%q is set but CONFIG_FILE is not: POOL picks a pool of CONFIG_FILE", c.Pool))
		}
		if strings.TrimSpace(c.Shards) == "" {
			problems = append(problems, fmt.Errorf("SHARDS is empty: set SHARDS (host:port:weight [name], comma-separated) or CONFIG_FILE"))
		}
		for _, item := range envflag.SplitList(c.Shards) {
			s, err := ring.ParseServer(item)
			if err != nil {
				problems = append(problems, fmt.Errorf("invalid SHARDS=%q: %w", c.Shards, err))
				continue
			}
			c.Servers = append(c.Servers, s)
		}
	}
	if len(problems) == 0 {
		problems = append(problems, c.validate()...)
	}
	return c, errors.Join(problems...)
}

// validate checks what single settings cannot: duplicate shards, the listen address, the hash.
func (c *Config) validate() []error {
	var problems []error
	ring.SortServers(c.Servers)
	seen := map[string]bool{}
	for _, s := range c.Servers {
		if seen[s.KetamaName()] {
			problems = append(problems, fmt.Errorf("shard %q appears twice (same name or address): each shard needs its own place on the ring", s.KetamaName()))
		}
		seen[s.KetamaName()] = true
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:" + defaultPorts[c.Protocol]
	}
	h, err := ring.Hash(c.Hash)
	if err != nil {
		problems = append(problems, fmt.Errorf("invalid HASH=%q: %w", c.Hash, err))
	}
	c.hashFunc = h
	if _, err := ring.New(c.Servers, nil, ring.FNV1a64, c.Distribution, c.HashTag); err != nil {
		problems = append(problems, err)
	}
	tlsFiles := c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != ""
	switch {
	case c.TLS && c.Protocol == "http":
		problems = append(problems, errors.New("TLS=true with PROTOCOL=http: the HTTP shards are reached over plain HTTP (terminate TLS in the shard's pod with https-proxy)"))
	case tlsFiles && !c.TLS:
		problems = append(problems, fmt.Errorf("TLS_CA_FILE, TLS_CERT_FILE or TLS_KEY_FILE is set but TLS=false: set TLS=true to connect to the shards over TLS"))
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		problems = append(problems, fmt.Errorf("TLS_CERT_FILE=%q and TLS_KEY_FILE=%q: set both or neither", c.TLSCertFile, c.TLSKeyFile))
	case c.TLS:
		if _, err := c.tlsConfig("check"); err != nil {
			problems = append(problems, err)
		}
	}
	if c.AuthFile != "" && c.Protocol != "redis" {
		problems = append(problems, fmt.Errorf("AUTH_FILE=%q is set but PROTOCOL=%s: only redis shards take AUTH (memcache's text protocol has none)", c.AuthFile, c.Protocol))
	}
	if c.AuthFile != "" {
		if _, err := c.authArgs(); err != nil {
			problems = append(problems, err)
		}
	}
	if c.StatusPort != 0 && strings.HasSuffix(c.Listen, ":"+strconv.Itoa(c.StatusPort)) {
		problems = append(problems, fmt.Errorf("LISTEN=%q and STATUS_PORT=%d use the same port", c.Listen, c.StatusPort))
	}
	return problems
}
