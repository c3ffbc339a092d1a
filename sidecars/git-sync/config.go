package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// Config is the sidecar's whole configuration, validated once by loadConfig.
type Config struct {
	Repo        string
	Ref         string
	Period      time.Duration
	SyncTimeout time.Duration
	Depth       int
	Submodules  string
	Root        string
	// Link is the symlink's absolute path (GITSYNC_LINK resolved against Root).
	Link         string
	OneTime      bool
	MaxFailures  int
	SyncOnSignal string
	// Signal is SyncOnSignal parsed; 0 when unset.
	Signal     syscall.Signal
	GroupWrite bool

	ExechookCommand string
	ExechookTimeout time.Duration
	ExechookBackoff time.Duration

	WebhookURL           string
	WebhookMethod        string
	WebhookSuccessStatus int
	WebhookTimeout       time.Duration
	WebhookBackoff       time.Duration

	Username          string
	PasswordFile      string
	SSHKeyFile        string
	SSHKnownHosts     bool
	SSHKnownHostsFile string

	StatusPort int
}

// settings is the one source of truth for the sidecar's ENV names, defaults and usage lines. The names and
// meanings follow kubernetes/git-sync v4 (GITSYNC_*), so that a manifest written for it keeps working;
// STATUS_PORT replaces its --http-bind.
func settings(c *Config) envflag.Set {
	return envflag.Set{Program: "git-sync", Prefix: "GITSYNC_", Vars: []envflag.Var{
		{Env: "GITSYNC_REPO", Usage: "the repository to sync: https://, http://, ssh://, user@host:path or file:// (required)", Parse: envflag.RepoURL(&c.Repo)},
		{Env: "GITSYNC_REF", Default: "HEAD", Usage: "the branch, tag or full commit hash to follow; HEAD is the remote's default branch", Parse: envflag.NonEmpty(&c.Ref)},
		{Env: "GITSYNC_PERIOD", Default: "10s", Usage: "how long to wait between syncs, at least 10ms", Parse: envflag.Duration(&c.Period, 10*time.Millisecond)},
		{Env: "GITSYNC_SYNC_TIMEOUT", Default: "120s", Usage: "the time allowed for one whole sync (fetch, checkout, submodules), at least 10ms", Parse: envflag.Duration(&c.SyncTimeout, 10*time.Millisecond)},
		{Env: "GITSYNC_DEPTH", Default: "1", Usage: "fetch only this many commits of history; 0 fetches the full history", Parse: envflag.Int(&c.Depth, 0, 1<<30)},
		{Env: "GITSYNC_SUBMODULES", Default: "off", Usage: "submodules: off, shallow (first level only) or recursive; off by default, since a submodule is another repository the sidecar would fetch and check out", Parse: envflag.OneOf(&c.Submodules, "off", "shallow", "recursive")},
		{Env: "GITSYNC_ROOT", Default: "/git", Usage: "the directory that holds the repository, the checkouts and the link (the shared volume's mount in the sidecar)", Parse: envflag.AbsolutePath(&c.Root)},
		{Env: "GITSYNC_LINK", Usage: "the symlink to the current checkout, absolute or relative to GITSYNC_ROOT; empty means the repository's name (the app reads <mount-path>/<link>)", Parse: envflag.String(&c.Link)},
		{Env: "GITSYNC_ONE_TIME", Default: "false", Usage: "sync once, run the hooks once, and exit (an init container)", Parse: envflag.Bool(&c.OneTime), Switch: true},
		{Env: "GITSYNC_MAX_FAILURES", Default: "0", Usage: "consecutive failed syncs tolerated before exiting; -1 retries forever", Parse: envflag.Int(&c.MaxFailures, -1, 1<<30)},
		{Env: "GITSYNC_SYNC_ON_SIGNAL", Usage: "also sync at once when this signal arrives, e.g. SIGHUP (sent from the app, it needs a shared process namespace)", Parse: syncSignal(&c.SyncOnSignal, &c.Signal)},
		{Env: "GITSYNC_GROUP_WRITE", Default: "false", Usage: "make the checkouts group-writable as well as group-readable", Parse: envflag.Bool(&c.GroupWrite), Switch: true},
		{Env: "GITSYNC_EXECHOOK_COMMAND", Usage: "a command (in the sidecar's image) run in the new checkout after each new commit, with GITSYNC_HASH set", Parse: envflag.String(&c.ExechookCommand)},
		{Env: "GITSYNC_EXECHOOK_TIMEOUT", Default: "30s", Usage: "the time allowed for one run of the exec hook", Parse: envflag.Duration(&c.ExechookTimeout, time.Millisecond)},
		{Env: "GITSYNC_EXECHOOK_BACKOFF", Default: "3s", Usage: "the first wait before retrying a failed exec hook; it doubles up to 1m", Parse: envflag.Duration(&c.ExechookBackoff, time.Millisecond)},
		{Env: "GITSYNC_WEBHOOK_URL", Usage: "a URL called after each new commit, with the hash in the Gitsync-Hash header", Parse: envflag.HTTPURL(&c.WebhookURL)},
		{Env: "GITSYNC_WEBHOOK_METHOD", Default: "POST", Usage: "the webhook's HTTP method", Parse: httpMethod(&c.WebhookMethod)},
		{Env: "GITSYNC_WEBHOOK_SUCCESS_STATUS", Default: "200", Usage: "the webhook's expected HTTP status; 0 accepts any response", Parse: envflag.Int(&c.WebhookSuccessStatus, 0, 599)},
		{Env: "GITSYNC_WEBHOOK_TIMEOUT", Default: "1s", Usage: "the time allowed for one webhook call", Parse: envflag.Duration(&c.WebhookTimeout, time.Millisecond)},
		{Env: "GITSYNC_WEBHOOK_BACKOFF", Default: "3s", Usage: "the first wait before retrying a failed webhook; it doubles up to 1m", Parse: envflag.Duration(&c.WebhookBackoff, time.Millisecond)},
		{Env: "GITSYNC_USERNAME", Usage: "the username for HTTP(S) authentication", Parse: envflag.String(&c.Username)},
		{Env: "GITSYNC_PASSWORD_FILE", Usage: "a file holding the HTTP(S) password or token, read at every fetch (e.g. from a Secret volume mounted into the sidecar)", Parse: envflag.OptionalAbsolutePath(&c.PasswordFile)},
		{Env: "GITSYNC_SSH_KEY_FILE", Default: "/etc/git-secret/ssh", Usage: "the SSH private key, used for ssh:// and user@host:path repositories", Parse: envflag.AbsolutePath(&c.SSHKeyFile)},
		{Env: "GITSYNC_SSH_KNOWN_HOSTS", Default: "true", Usage: "check the SSH server's host key against GITSYNC_SSH_KNOWN_HOSTS_FILE", Parse: envflag.Bool(&c.SSHKnownHosts), Switch: true},
		{Env: "GITSYNC_SSH_KNOWN_HOSTS_FILE", Default: "/etc/git-secret/known_hosts", Usage: "the known_hosts file for SSH", Parse: envflag.AbsolutePath(&c.SSHKnownHostsFile)},
		{Env: "STATUS_PORT", Default: "9803", Usage: "plain-HTTP port for /healthz, /readyz (ready after the first sync) and /metrics", Parse: envflag.Port(&c.StatusPort)},
	}}
}

// loadConfig parses args and the environment, then checks what spans several settings. Every problem is
// one line of the returned error.
func loadConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	c := &Config{}
	err := settings(c).Parse(args, lookupEnv, out)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	var problems []error
	if err != nil {
		problems = append(problems, err)
	}
	if _, ok := lookupEnv("GITSYNC_PASSWORD"); ok {
		problems = append(problems, errors.New("GITSYNC_PASSWORD is not supported: put the password in a file (a Secret volume) and set GITSYNC_PASSWORD_FILE"))
	}
	if c.PasswordFile != "" && c.Username == "" {
		problems = append(problems, fmt.Errorf("GITSYNC_PASSWORD_FILE=%q needs GITSYNC_USERNAME too (any non-empty name for a token)", c.PasswordFile))
	}
	if c.Root != "" && c.Repo != "" {
		link, err := linkPath(c.Root, c.Link, c.Repo)
		if err != nil {
			problems = append(problems, fmt.Errorf("invalid GITSYNC_LINK=%q: %w", c.Link, err))
		}
		c.Link = link
	}
	return c, errors.Join(problems...)
}

// isSSH reports whether git reaches repo over SSH.
func isSSH(repo string) bool {
	return strings.HasPrefix(repo, "ssh://") || envflag.IsSCPLike(repo)
}

// linkPath resolves GITSYNC_LINK: absolute, or relative to root; empty means the repository's last path
// element without ".git", as kubernetes/git-sync does.
func linkPath(root, link, repo string) (string, error) {
	if link == "" {
		p := repo
		if u, err := url.Parse(repo); err == nil && !envflag.IsSCPLike(repo) {
			p = u.Path
		} else if _, after, ok := strings.Cut(repo, ":"); ok {
			p = after
		}
		link = strings.TrimSuffix(path.Base(strings.TrimRight(p, "/")), ".git")
		if link == "" || link == "." || link == "/" {
			return "", errors.New("cannot derive a link name from the repository: set GITSYNC_LINK")
		}
	}
	if !filepath.IsAbs(link) {
		link = filepath.Join(root, link)
	}
	link = filepath.Clean(link)
	if link == filepath.Clean(root) || filepath.Base(link) == ".git" || filepath.Base(link) == ".gitconfig" || filepath.Base(link) == worktreesDir {
		return "", fmt.Errorf("want a name other than the root, .git, .gitconfig and %s", worktreesDir)
	}
	return link, nil
}

var methodRE = regexp.MustCompile(`^[A-Z]+$`)

func httpMethod(p *string) func(string) error {
	return func(s string) error {
		if !methodRE.MatchString(s) {
			return errors.New("want an HTTP method in capitals, such as POST or GET")
		}
		*p = s
		return nil
	}
}

// syncSignals are the signals GITSYNC_SYNC_ON_SIGNAL accepts: the ones a user can send on purpose and that
// do not already mean "stop".
var syncSignals = []string{"SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH"}

// syncSignal parses GITSYNC_SYNC_ON_SIGNAL and keeps its canonical name (SIGHUP) for the logs.
func syncSignal(p *string, sig *syscall.Signal) func(string) error {
	parse := envflag.Signal(sig, syncSignals...)
	return func(s string) error {
		if err := parse(s); err != nil {
			return err
		}
		*p = ""
		if *sig != 0 {
			*p = unix.SignalName(*sig)
		}
		return nil
	}
}
