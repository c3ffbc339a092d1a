package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/webhook/catalog/catalogtest"
)

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestDefaultsMatchKubernetesGitSync(t *testing.T) {
	cfg, err := loadConfig(nil, lookup(map[string]string{"GITSYNC_REPO": "https://github.com/kubernetes/git-sync.git"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ref != "HEAD" || cfg.Period != 10*time.Second || cfg.Depth != 1 || cfg.SyncTimeout != 120*time.Second ||
		cfg.MaxFailures != 0 || cfg.Submodules != "off" || cfg.WebhookMethod != "POST" || cfg.WebhookSuccessStatus != 200 ||
		cfg.WebhookTimeout != time.Second || cfg.WebhookBackoff != 3*time.Second || cfg.ExechookTimeout != 30*time.Second ||
		!cfg.SSHKnownHosts || cfg.SSHKeyFile != "/etc/git-secret/ssh" || cfg.StatusPort != 9803 {
		t.Errorf("defaults differ from kubernetes/git-sync v4's: %+v", cfg)
	}
	if cfg.Link != "/git/git-sync" {
		t.Errorf("default link = %q, want the repository's name under the root, /git/git-sync", cfg.Link)
	}
}

func TestFlagsWinOverEnv(t *testing.T) {
	cfg, err := loadConfig([]string{"--ref=v2", "--period=1m", "--link=/srv/site", "--sync-on-signal=hup", "--one-time=true"},
		lookup(map[string]string{"GITSYNC_REPO": "git@github.com:org/site.git", "GITSYNC_REF": "main", "GITSYNC_PERIOD": "5s"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ref != "v2" || cfg.Period != time.Minute || cfg.Link != "/srv/site" || cfg.Signal != syscall.SIGHUP || !cfg.OneTime {
		t.Errorf("got %+v", cfg)
	}
	if !isSSH(cfg.Repo) {
		t.Errorf("%s is not seen as SSH", cfg.Repo)
	}
}

func TestBadValuesNameTheSettingTheValueAndWhatIsAccepted(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{}, []string{`invalid default of GITSYNC_REPO="": must be set`}},
		{map[string]string{"GITSYNC_REPO": "ftp://x/r"}, []string{`invalid GITSYNC_REPO="ftp://x/r": scheme "ftp": want https, http, ssh or file`}},
		{map[string]string{"GITSYNC_REPO": "https://bob:hunter2@host/r"}, []string{`a password in the URL`, `bob:xxxxx@host`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_PERIOD": "1ms"}, []string{`invalid GITSYNC_PERIOD="1ms": want a duration such as 10s or 5m, at least 10ms`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_DEPTH": "-1"}, []string{`invalid GITSYNC_DEPTH="-1": want a whole number from 0`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_SUBMODULES": "all"}, []string{`invalid GITSYNC_SUBMODULES="all": want one of off, shallow, recursive`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_SYNC_ON_SIGNAL": "SIGTERM"}, []string{`invalid GITSYNC_SYNC_ON_SIGNAL="SIGTERM": want one of SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_ROOT": "git"}, []string{`invalid GITSYNC_ROOT="git": want an absolute path`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_LINK": ".git"}, []string{`invalid GITSYNC_LINK=".git": want a name other than`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_WEBHOOK_URL": "hooks.local/x"}, []string{`invalid GITSYNC_WEBHOOK_URL="hooks.local/x": want an http or https URL`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_PASSWORD_FILE": "/secret/p"}, []string{`GITSYNC_PASSWORD_FILE="/secret/p" needs GITSYNC_USERNAME`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "GITSYNC_PASSWORD": "x"}, []string{`GITSYNC_PASSWORD is not supported`, `GITSYNC_PASSWORD_FILE`}},
		{map[string]string{"GITSYNC_REPO": "file:///r", "STATUS_PORT": "0"}, []string{`invalid STATUS_PORT="0": want a port number from 1 to 65535`}},
	} {
		_, err := loadConfig(nil, lookup(tc.env), nil)
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error %q lacks %q", tc.env, err, want)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q shows the password", err)
		}
	}
	// Every problem is reported, one line each.
	_, err := loadConfig(nil, lookup(map[string]string{"GITSYNC_DEPTH": "x", "GITSYNC_PERIOD": "soon"}), nil)
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("want 3 lines (repo, depth, period), got %d:\n%v", n, err)
	}
}

func TestHelpListsEveryEnv(t *testing.T) {
	var out bytes.Buffer
	_, err := loadConfig([]string{"--help"}, lookup(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, v := range settings(&Config{}).Vars {
		if !strings.Contains(out.String(), v.Env) {
			t.Errorf("--help lacks %s", v.Env)
		}
	}
}

func TestLinkDerivedFromTheRepository(t *testing.T) {
	for repo, want := range map[string]string{
		"https://github.com/org/site.git": "/git/site",
		"https://github.com/org/site/":    "/git/site",
		"git@github.com:org/docs.git":     "/git/docs",
		"ssh://git@host:2222/srv/app.git": "/git/app",
		"file:///var/repos/config.git":    "/git/config",
	} {
		got, err := linkPath("/git", "", repo)
		if err != nil || got != want {
			t.Errorf("linkPath(%q) = %q, %v; want %q", repo, got, err, want)
		}
	}
}

// TestAPIAgreement keeps the binary's settings, the Dockerfile, the README and the injector's catalog
// entry in agreement.
func TestAPIAgreement(t *testing.T) {
	for _, p := range catalogtest.Problems(".", "git-sync", settings(&Config{})) {
		t.Error(p)
	}
}
