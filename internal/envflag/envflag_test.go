package envflag

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"syscall"
	"testing"
	"time"
)

type testConfig struct {
	Port   int
	Repo   string
	Period time.Duration
	OneOff bool
}

func testSet(c *testConfig) Set {
	return Set{Program: "t", Prefix: "GITSYNC_", Vars: []Var{
		{Env: "GITSYNC_REPO", Usage: "repo", Parse: NonEmpty(&c.Repo)},
		{Env: "GITSYNC_PERIOD", Default: "10s", Usage: "period", Parse: SecondsOrDuration(&c.Period, time.Millisecond)},
		{Env: "STATUS_PORT", Default: "9803", Usage: "port", Parse: Port(&c.Port)},
		{Env: "GITSYNC_ONE_TIME", Default: "false", Usage: "once", Parse: Bool(&c.OneOff), Switch: true},
	}}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedenceFlagOverEnvOverDefault(t *testing.T) {
	var c testConfig
	err := testSet(&c).Parse([]string{"--period=5m"}, env(map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_PERIOD": "7", "STATUS_PORT": "1234"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Repo != "file:///r" || c.Period != 5*time.Minute || c.Port != 1234 || c.OneOff {
		t.Fatalf("got %+v", c)
	}
}

func TestBareNumberMeansSeconds(t *testing.T) {
	var c testConfig
	if err := testSet(&c).Parse(nil, env(map[string]string{"GITSYNC_REPO": "x", "GITSYNC_PERIOD": "7"}), nil); err != nil {
		t.Fatal(err)
	}
	if c.Period != 7*time.Second {
		t.Fatalf("period = %v, want 7s", c.Period)
	}
}

func TestErrorsNameVariableValueAndAccepted(t *testing.T) {
	var c testConfig
	err := testSet(&c).Parse([]string{"--status-port=http"}, env(map[string]string{"GITSYNC_PERIOD": "soon"}), nil)
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{
		`invalid default of GITSYNC_REPO="": must be set`,
		`invalid GITSYNC_PERIOD="soon": want seconds`,
		`invalid --status-port="http": want a port number from 1 to 65535`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 3 {
		t.Errorf("want one line per problem (3), got %d:\n%s", n, msg)
	}
}

func TestHelpListsEveryEnv(t *testing.T) {
	var c testConfig
	var out bytes.Buffer
	err := testSet(&c).Parse([]string{"--help"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"--repo", "GITSYNC_REPO", "--one-time", "GITSYNC_ONE_TIME", "--status-port", "9803"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUnknownFlagAndPositional(t *testing.T) {
	var c testConfig
	if err := testSet(&c).Parse([]string{"--nope=1"}, env(map[string]string{"GITSYNC_REPO": "x"}), nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown flag: %v", err)
	}
	if err := testSet(&c).Parse([]string{"stray"}, env(map[string]string{"GITSYNC_REPO": "x"}), nil); err == nil || !strings.Contains(err.Error(), `"stray"`) {
		t.Fatalf("positional: %v", err)
	}
}

func TestKebabName(t *testing.T) {
	for env, want := range map[string]string{"PROXY_PORT": "proxy-port", "GITSYNC_REPO": "repo", "SHARDS": "shards"} {
		if got := KebabName(env, "GITSYNC_"); got != want {
			t.Errorf("KebabName(%q) = %q, want %q", env, got, want)
		}
	}
}

func TestSwitchFlagStandsAlone(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{{[]string{"--one-time"}, true}, {[]string{"--one-time=false"}, false}, {[]string{"--one-time=true"}, true}, {nil, false}} {
		var c testConfig
		if err := testSet(&c).Parse(tc.args, env(map[string]string{"GITSYNC_REPO": "x"}), nil); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.OneOff != tc.want {
			t.Errorf("%v: one-time = %v, want %v", tc.args, c.OneOff, tc.want)
		}
	}
	var c testConfig
	err := testSet(&c).Parse([]string{"--one-time=maybe"}, env(map[string]string{"GITSYNC_REPO": "x"}), nil)
	if err == nil || !strings.Contains(err.Error(), `invalid --one-time="maybe": want true or false`) {
		t.Fatalf("err = %v", err)
	}
}

func TestSignalByNameOrNumber(t *testing.T) {
	var sig syscall.Signal
	for in, want := range map[string]syscall.Signal{"HUP": syscall.SIGHUP, "sighup": syscall.SIGHUP, " usr1 ": syscall.SIGUSR1, "15": syscall.SIGTERM, "": 0} {
		if err := Signal(&sig)(in); err != nil || sig != want {
			t.Errorf("Signal(%q) = %v, %v; want %v", in, sig, err, want)
		}
	}
	for _, in := range []string{"NOPE", "0", "01", "+1", "999", "-1"} {
		if err := Signal(&sig)(in); err == nil {
			t.Errorf("Signal(%q) accepted it as %v", in, sig)
		}
	}
	only := Signal(&sig, "SIGHUP", "SIGUSR1")
	if err := only("1"); err != nil || sig != syscall.SIGHUP {
		t.Errorf(`restricted Signal("1") = %v, %v`, sig, err)
	}
	if err := only("TERM"); err == nil || !strings.Contains(err.Error(), "want one of SIGHUP, SIGUSR1") {
		t.Errorf(`restricted Signal("TERM"): %v, want the allowed signals named`, err)
	}
}

func TestCommandNameAndDelimiters(t *testing.T) {
	var s string
	for in, ok := range map[string]bool{"nginx": true, "": true, "/usr/sbin/nginx": false, "nginx -s": false} {
		if err := CommandName(&s)(in); (err == nil) != ok {
			t.Errorf("CommandName(%q) = %v, want ok=%v", in, err, ok)
		}
	}
	for in, ok := range map[string]bool{"{}": true, "": true, "{": false, "{{}}": false} {
		if err := Delimiters(&s)(in); (err == nil) != ok {
			t.Errorf("Delimiters(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestSizeInBytesOrBinaryUnits(t *testing.T) {
	var n int64
	for in, want := range map[string]int64{"1024": 1024, "16Mi": 16 << 20, " 1Gi ": 1 << 30, "512Ki": 512 << 10} {
		if err := Size(&n, 1, 1<<30)(in); err != nil || n != want {
			t.Errorf("Size(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"", "Mi", "-1Mi", "+1Mi", "2Gi", "1.5Mi", "16MB", "16mi", "0", "99999999999999999999"} {
		if err := Size(&n, 1, 1<<30)(in); err == nil {
			t.Errorf("Size(%q) accepted it as %d", in, n)
		} else if !strings.Contains(err.Error(), "want a size from 1 to 1Gi") {
			t.Errorf("Size(%q): %v", in, err)
		}
	}
	if got := FormatSize(16 << 20); got != "16Mi" {
		t.Errorf("FormatSize = %s", got)
	}
}
