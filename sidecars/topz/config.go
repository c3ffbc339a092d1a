package main

import (
	"fmt"
	"io"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// Config is topz's whole configuration, validated once by loadConfig.
type Config struct {
	// Addr is where /topz, /healthz and /metrics listen.
	Addr string
	// Sample is the CPU sampling window: CPU% is the CPU time used between two snapshots this far apart.
	Sample time.Duration
	// Redact hides secrets (passwords, tokens, URL credentials) in command lines.
	Redact bool
}

const (
	minSample = 10 * time.Millisecond
	// maxSample bounds the window because the first request after an idle period waits one window.
	maxSample = 10 * time.Second
)

// settings is the one source of truth for topz's ENV names, defaults and usage lines.
func settings(c *Config) envflag.Set {
	return envflag.Set{Program: "topz", Prefix: "TOPZ_", Vars: []envflag.Var{
		{Env: "TOPZ_ADDR", Default: ":8080", Usage: "listen address for /topz, /healthz, /readyz and /metrics (change it if your app uses 8080)", Parse: envflag.HostPort(&c.Addr)},
		{Env: "TOPZ_SAMPLE", Default: "200ms", Usage: "CPU sampling window, 10ms to 10s: CPU% is measured between two snapshots this far apart", Parse: sampleWindow(&c.Sample)},
		{Env: "TOPZ_REDACT", Default: "true", Usage: "redact secrets (passwords, tokens, URL credentials) in command lines; false shows them as started", Parse: envflag.Bool(&c.Redact), Switch: true},
	}}
}

// loadConfig reads flags and ENV (a flag wins) and validates the result. It returns flag.ErrHelp after
// printing --help to out, and otherwise every problem, one line each.
func loadConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (Config, error) {
	var c Config
	if err := settings(&c).Parse(args, lookupEnv, out); err != nil {
		return Config{}, err
	}
	return c, nil
}

// sampleWindow accepts a duration from minSample to maxSample.
func sampleWindow(p *time.Duration) func(string) error {
	return func(s string) error {
		var d time.Duration
		if err := envflag.Duration(&d, minSample)(s); err != nil || d > maxSample {
			return fmt.Errorf("want a duration from %s to %s, such as 200ms or 1s (a request may wait one window)", minSample, maxSample)
		}
		*p = d
		return nil
	}
}
