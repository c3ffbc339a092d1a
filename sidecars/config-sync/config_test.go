package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/webhook/catalog/catalogtest"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(nil, envOf(map[string]string{"CONFIGMAP": "app"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TargetDir != "/etc/config" || cfg.UpdateFrequency != 60*time.Second || cfg.ReloadSignal != syscall.SIGHUP ||
		cfg.StatusPort != 9802 || cfg.Debounce != 200*time.Millisecond || cfg.ReloadMethod != "POST" || cfg.ReloadRetries != 5 {
		t.Errorf("defaults: %+v", cfg)
	}
}

// TestUpdateFrequencyKeepsSecondsAndTakesDurations: the book's API took seconds; a bare number still means
// seconds, and durations are accepted as well.
func TestUpdateFrequencyKeepsSecondsAndTakesDurations(t *testing.T) {
	for value, want := range map[string]time.Duration{"10": 10 * time.Second, "1.5": 1500 * time.Millisecond, "10s": 10 * time.Second, "5m": 5 * time.Minute} {
		cfg, err := loadConfig(nil, envOf(map[string]string{"CONFIGMAP": "app", "UPDATE_FREQUENCY": value}), io.Discard)
		if err != nil {
			t.Fatalf("UPDATE_FREQUENCY=%s: %v", value, err)
		}
		if cfg.UpdateFrequency != want {
			t.Errorf("UPDATE_FREQUENCY=%s: %v, want %v", value, cfg.UpdateFrequency, want)
		}
	}
}

func TestSignalNames(t *testing.T) {
	for value, want := range map[string]syscall.Signal{"HUP": syscall.SIGHUP, "sighup": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "KILL": syscall.SIGKILL, "SIGTERM": syscall.SIGTERM} {
		cfg, err := loadConfig([]string{"--reload-signal=" + value}, envOf(map[string]string{"CONFIGMAP": "app"}), io.Discard)
		if err != nil || cfg.ReloadSignal != want {
			t.Errorf("--reload-signal=%s: %v %v, want %v", value, cfg, err, want)
		}
	}
}

// TestBadValuesNameTheSettingAndWhatIsAccepted: every problem is one line naming the ENV, the value and
// what is accepted.
func TestBadValuesNameTheSettingAndWhatIsAccepted(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{}, []string{`invalid CONFIGMAP="": nothing to follow; want CONFIGMAP (and/or SECRET), or SOURCE_DIR`}},
		{map[string]string{"CONFIGMAP": "App_Config"}, []string{`invalid CONFIGMAP="App_Config": want a Kubernetes object name`}},
		{map[string]string{"CONFIGMAP": "a", "SOURCE_DIR": "/src"}, []string{`invalid SOURCE_DIR="/src": volume mode excludes CONFIGMAP and SECRET`}},
		{map[string]string{"SOURCE_DIR": "/etc/config"}, []string{`invalid TARGET_DIR="/etc/config": it overlaps SOURCE_DIR="/etc/config"`}},
		{map[string]string{"SOURCE_DIR": "relative"}, []string{`invalid SOURCE_DIR="relative": want an absolute path`}},
		{map[string]string{"CONFIGMAP": "a", "UPDATE_FREQUENCY": "soon"}, []string{`invalid UPDATE_FREQUENCY="soon": want seconds (e.g. 10) or a duration (e.g. 10s, 5m), at least 1s`}},
		{map[string]string{"CONFIGMAP": "a", "UPDATE_FREQUENCY": "0.5"}, []string{`invalid UPDATE_FREQUENCY="0.5": want seconds`}},
		{map[string]string{"CONFIGMAP": "a", "RELOAD_SIGNAL": "HANGUP"}, []string{`invalid RELOAD_SIGNAL="HANGUP": want a signal name such as HUP, USR1, USR2, TERM or KILL`}},
		// An empty signal would be signal 0, which sends nothing: refused, not "unset".
		{map[string]string{"CONFIGMAP": "a", "RELOAD_PROCESS": "nginx", "RELOAD_SIGNAL": ""}, []string{`invalid RELOAD_SIGNAL="": want a signal name`}},
		{map[string]string{"CONFIGMAP": "a", "RELOAD_PROCESS": "/usr/sbin/nginx"}, []string{`invalid RELOAD_PROCESS="/usr/sbin/nginx": want a command name such as nginx`}},
		{map[string]string{"CONFIGMAP": "a", "RELOAD_URL": "localhost:9090/-/reload"}, []string{`invalid RELOAD_URL="localhost:9090/-/reload": want an http or https URL`}},
		{map[string]string{"CONFIGMAP": "a", "RELOAD_METHOD": "post"}, []string{`invalid RELOAD_METHOD="post": want one of POST, PUT, GET, PATCH`}},
		{map[string]string{"CONFIGMAP": "a", "STATUS_PORT": "0", "DEBOUNCE": "-1s", "NAMESPACE": "Shop"}, []string{
			`invalid STATUS_PORT="0": want a port number`, `invalid DEBOUNCE="-1s": want a duration`, `invalid NAMESPACE="Shop": want a namespace name`}},
	}
	for _, c := range cases {
		_, err := loadConfig(nil, envOf(c.env), io.Discard)
		if err == nil {
			t.Errorf("%v: no error", c.env)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(c.want) {
			t.Errorf("%v: %d lines, want %d:\n%s", c.env, len(lines), len(c.want), err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error\n%s\nlacks %q", c.env, err, w)
			}
		}
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	_, err := loadConfig([]string{"--help"}, envOf(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, v := range settings(&Config{}).Vars {
		if !strings.Contains(out.String(), v.Env) {
			t.Errorf("--help lacks %s", v.Env)
		}
	}
}

// TestAPIAgreement keeps the binary's settings, the Dockerfile, the README and the catalog entry in step.
func TestAPIAgreement(t *testing.T) {
	for _, p := range catalogtest.Problems(".", "config-sync", settings(&Config{})) {
		t.Error(p)
	}
}

// TestBinaryExitsTwoWithOneLinePerProblem runs the real main (this test binary stands in for it).
func TestBinaryExitsTwoWithOneLinePerProblem(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CONFIG_SYNC_TEST_MAIN=1", "CONFIGMAP=Bad_Name", "STATUS_PORT=http")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got:\n%s", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "config-sync: invalid ") {
			t.Errorf("line %q: want it prefixed `config-sync: invalid `", l)
		}
	}
}
