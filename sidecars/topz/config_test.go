package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/webhook/catalog/catalogtest"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigDefaultsMatchTheBook(t *testing.T) {
	c, err := loadConfig(nil, envMap(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c != (Config{Addr: ":8080", Sample: 200 * time.Millisecond, Redact: true}) {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestConfigFlagWinsOverEnv(t *testing.T) {
	c, err := loadConfig([]string{"--addr=0.0.0.0:9090", "--redact=false"},
		envMap(map[string]string{"TOPZ_ADDR": ":1", "TOPZ_SAMPLE": "1s", "TOPZ_REDACT": "true"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "0.0.0.0:9090" || c.Sample != time.Second || c.Redact {
		t.Fatalf("got %+v", c)
	}
}

func TestConfigErrorsNameEachProblem(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{env: map[string]string{"TOPZ_SAMPLE": "5ms"}, want: []string{`invalid TOPZ_SAMPLE="5ms": want a duration from 10ms to 10s`}},
		{args: []string{"--sample=1m"}, want: []string{`invalid --sample="1m": want a duration from 10ms to 10s`}},
		{env: map[string]string{"TOPZ_ADDR": "8080", "TOPZ_REDACT": "maybe"}, want: []string{
			`invalid TOPZ_ADDR="8080": want host:port or :port`, `invalid TOPZ_REDACT="maybe": want true or false`}},
		{args: []string{"--port=8080"}, want: []string{"port"}},
	} {
		_, err := loadConfig(tc.args, envMap(tc.env), nil)
		if err == nil {
			t.Errorf("%v %v: want an error", tc.args, tc.env)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: error %q lacks %q", tc.args, tc.env, err, w)
			}
		}
		if lines := strings.Count(err.Error(), "\n") + 1; lines != max(len(tc.want), 1) {
			t.Errorf("%v %v: want one line per problem, got:\n%s", tc.args, tc.env, err)
		}
	}
}

func TestHelpListsTheEnv(t *testing.T) {
	var out bytes.Buffer
	_, err := loadConfig([]string{"--help"}, envMap(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"--addr", "TOPZ_ADDR", ":8080", "--sample", "TOPZ_SAMPLE", "200ms", "--redact", "TOPZ_REDACT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

// TestAPIAgreement keeps the binary's settings, the Dockerfile, the README and the catalog entry in step.
func TestAPIAgreement(t *testing.T) {
	for _, p := range catalogtest.Problems(".", "topz", settings(&Config{})) {
		t.Error(p)
	}
}
