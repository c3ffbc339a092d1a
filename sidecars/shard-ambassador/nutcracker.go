package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/outrigger-dev/outrigger/sidecars/shard-ambassador/ring"
)

// nutcrackerPool is one pool of a twemproxy YAML file (times in milliseconds, as twemproxy has them).
type nutcrackerPool struct {
	Listen             string   `yaml:"listen"`
	Hash               *string  `yaml:"hash"`
	HashTag            *string  `yaml:"hash_tag"`
	Distribution       *string  `yaml:"distribution"`
	Timeout            *int     `yaml:"timeout"`
	Backlog            int      `yaml:"backlog"`
	Preconnect         bool     `yaml:"preconnect"`
	Redis              bool     `yaml:"redis"`
	RedisAuth          string   `yaml:"redis_auth"`
	RedisDB            int      `yaml:"redis_db"`
	ServerConnections  *int     `yaml:"server_connections"`
	AutoEjectHosts     *bool    `yaml:"auto_eject_hosts"`
	ServerRetryTimeout *int     `yaml:"server_retry_timeout"`
	ServerFailureLimit *int     `yaml:"server_failure_limit"`
	Servers            []string `yaml:"servers"`
	ClientConnections  int      `yaml:"client_connections"`
	TCPKeepalive       bool     `yaml:"tcpkeepalive"`
}

// applyNutcrackerFile reads c.ConfigFile and copies its pool (c.Pool, or the first) into c. Keys the file
// sets win; keys it leaves out keep c's values. LISTEN, when set, wins over the file's listen: a sidecar
// usually binds to 127.0.0.1 where twemproxy's file says 0.0.0.0.
func applyNutcrackerFile(c *Config) error {
	data, err := os.ReadFile(c.ConfigFile)
	if err != nil {
		return fmt.Errorf("reading CONFIG_FILE: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("CONFIG_FILE %s: %w", c.ConfigFile, err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode || len(doc.Content[0].Content) == 0 {
		return fmt.Errorf("CONFIG_FILE %s: want a twemproxy file: pool names mapping to their settings", c.ConfigFile)
	}
	top := doc.Content[0].Content
	var names []string
	var node *yaml.Node
	for i := 0; i+1 < len(top); i += 2 {
		names = append(names, top[i].Value)
		if (c.Pool == "" && node == nil) || top[i].Value == c.Pool {
			node, c.Pool = top[i+1], top[i].Value
		}
	}
	if node == nil {
		return fmt.Errorf("POOL=%q: CONFIG_FILE %s has no such pool; it has %s", c.Pool, c.ConfigFile, strings.Join(names, ", "))
	}
	var p nutcrackerPool
	if err := node.Decode(&p); err != nil {
		return fmt.Errorf("CONFIG_FILE %s, pool %s: %w", c.ConfigFile, c.Pool, err)
	}
	where := fmt.Sprintf("CONFIG_FILE %s, pool %s", c.ConfigFile, c.Pool)
	var problems []string
	c.redisAuth = p.RedisAuth // twemproxy's password for the pool's shards; AUTH_FILE wins (auth.go)
	if p.RedisDB != 0 {
		problems = append(problems, "redis_db other than 0 is not supported")
	}
	if c.Protocol != "http" {
		c.Protocol = "memcache"
		if p.Redis {
			c.Protocol = "redis"
		}
	}
	if c.Listen == "" && p.Listen != "" {
		if strings.HasPrefix(p.Listen, "/") {
			problems = append(problems, fmt.Sprintf("listen %q: unix sockets are not supported; set LISTEN", p.Listen))
		} else {
			c.Listen = strings.Fields(p.Listen)[0]
		}
	}
	if p.Hash != nil {
		if _, err := ring.Hash(*p.Hash); err != nil {
			problems = append(problems, err.Error())
		}
		c.Hash = *p.Hash
	}
	if p.HashTag != nil {
		if len(*p.HashTag) != 2 {
			problems = append(problems, fmt.Sprintf("hash_tag %q: want two characters, such as {}", *p.HashTag))
		}
		c.HashTag = *p.HashTag
	}
	if p.Distribution != nil {
		c.Distribution = *p.Distribution
	}
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	if p.Timeout != nil && *p.Timeout > 0 {
		c.Timeout = ms(*p.Timeout)
	}
	if p.ServerConnections != nil {
		if *p.ServerConnections < 1 {
			problems = append(problems, fmt.Sprintf("server_connections %d: want at least 1", *p.ServerConnections))
		} else {
			c.ServerConnections = *p.ServerConnections
		}
	}
	if p.AutoEjectHosts != nil {
		c.AutoEjectHosts = *p.AutoEjectHosts
	}
	if p.ServerRetryTimeout != nil {
		if *p.ServerRetryTimeout < 1 {
			problems = append(problems, fmt.Sprintf("server_retry_timeout %d: want milliseconds, at least 1", *p.ServerRetryTimeout))
		} else {
			c.ServerRetryTimeout = ms(*p.ServerRetryTimeout)
		}
	}
	if p.ServerFailureLimit != nil {
		if *p.ServerFailureLimit < 1 {
			problems = append(problems, fmt.Sprintf("server_failure_limit %d: want at least 1", *p.ServerFailureLimit))
		} else {
			c.ServerFailureLimit = *p.ServerFailureLimit
		}
	}
	if len(p.Servers) == 0 {
		problems = append(problems, "servers: want at least one host:port:weight [name]")
	}
	for _, item := range p.Servers {
		s, err := ring.ParseServer(item)
		if err != nil {
			problems = append(problems, "servers: "+err.Error())
			continue
		}
		c.Servers = append(c.Servers, s)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %s", where, strings.Join(problems, "; "))
	}
	return nil
}
