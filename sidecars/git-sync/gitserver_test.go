package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file starts the real git servers the tests sync from: a bare repository (file://), the same
// repository over smart HTTP (git http-backend behind net/http/cgi, with basic auth), and over SSH (a
// private sshd on 127.0.0.1). upstream is a working clone the tests commit in and push from.

func requireBin(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run `make deps`", name)
	}
	return p
}

// hostGit runs git for the test's own side (the upstream clone and the server), with a fixed identity.
func hostGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// upstream is a bare repository (Bare) and a working clone of it (Work) to commit in.
type upstream struct {
	t    *testing.T
	Bare string
	Work string
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	requireBin(t, "git")
	dir := t.TempDir()
	u := &upstream{t: t, Bare: filepath.Join(dir, "repo.git"), Work: filepath.Join(dir, "work")}
	hostGit(t, dir, "init", "-q", "--bare", u.Bare)
	hostGit(t, dir, "init", "-q", u.Work)
	hostGit(t, u.Work, "remote", "add", "origin", u.Bare)
	return u
}

// FileURL is the file:// URL of the bare repository.
func (u *upstream) FileURL() string { return "file://" + u.Bare }

// Commit writes files (path → content; "" deletes) on the current branch and pushes it; it returns the hash.
func (u *upstream) Commit(files map[string]string) string {
	u.t.Helper()
	for name, content := range files {
		p := filepath.Join(u.Work, name)
		if content == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
	hostGit(u.t, u.Work, "add", "-A")
	hostGit(u.t, u.Work, "commit", "-q", "--allow-empty", "-m", "change")
	hostGit(u.t, u.Work, "push", "-q", "--force", "origin", "HEAD")
	return hostGit(u.t, u.Work, "rev-parse", "HEAD")
}

// Branch switches the working clone to branch name (created from HEAD when new).
func (u *upstream) Branch(name string) {
	u.t.Helper()
	hostGit(u.t, u.Work, "checkout", "-q", "-B", name)
}

// ResetHard moves the current branch to hash (a history rewrite once a new commit is pushed over it).
func (u *upstream) ResetHard(hash string) {
	u.t.Helper()
	hostGit(u.t, u.Work, "reset", "-q", "--hard", hash)
}

// Tag points an annotated tag at HEAD and force-pushes it.
func (u *upstream) Tag(name string) {
	u.t.Helper()
	hostGit(u.t, u.Work, "tag", "-f", "-a", "-m", name, name)
	hostGit(u.t, u.Work, "push", "-q", "--force", "origin", "refs/tags/"+name)
}

// httpServer serves the upstream's bare repository over git's smart HTTP protocol, with basic auth when
// User is set. Stop and Start close and reopen the listener on the same address (a server outage).
type httpServer struct {
	t       *testing.T
	Addr    string
	handler http.Handler
	mu      sync.Mutex
	srv     *http.Server
	done    chan struct{}
}

func newHTTPServer(t *testing.T, u *upstream, user, password string) *httpServer {
	t.Helper()
	gitExec := strings.TrimSpace(hostGit(t, "", "--exec-path"))
	backend := &cgi.Handler{
		Path: filepath.Join(gitExec, "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(u.Bare), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	var h http.Handler = backend
	if user != "" {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gotUser, gotPassword, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(gotUser+"\x00"+gotPassword), []byte(user+"\x00"+password)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			backend.ServeHTTP(w, r)
		})
	}
	s := &httpServer{t: t, handler: h, Addr: "127.0.0.1:0"}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the repository's URL on this server.
func (s *httpServer) URL() string { return "http://" + s.Addr + "/repo.git" }

func (s *httpServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the address may take a moment to be free again after Stop
		if ln, err = net.Listen("tcp", s.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listening on %s: %v", s.Addr, err)
	}
	s.Addr = ln.Addr().String()
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		srv.Serve(ln)
	}(s.srv, s.done)
}

func (s *httpServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Close()
	<-s.done
	s.srv = nil
}

// sshServer is a private sshd on 127.0.0.1 that lets the current user in with a generated key; the
// repository is reached as ssh://user@127.0.0.1:port/<path of the bare repository>.
type sshServer struct {
	Port           int
	KeyFile        string
	KnownHostsFile string
	User           string
}

func newSSHServer(t *testing.T) *sshServer {
	t.Helper()
	sshd := requireBin(t, "sshd")
	keygen := requireBin(t, "ssh-keygen")
	requireBin(t, "ssh")
	dir := t.TempDir()
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	clientPub, _ := os.ReadFile(filepath.Join(dir, "client.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), clientPub, 0o600)
	port := freePort(t)
	config := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel ERROR
`, port, filepath.Join(dir, "host"), filepath.Join(dir, "authorized_keys"))
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(config), 0o600)
	if os.Geteuid() == 0 {
		// sshd refuses to start without its privilege separation directory (the Debian service makes it).
		os.MkdirAll("/run/sshd", 0o755)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	hostPub, _ := os.ReadFile(filepath.Join(dir, "host.pub"))
	fields := strings.Fields(string(hostPub))
	os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(fmt.Sprintf("[127.0.0.1]:%d %s %s\n", port, fields[0], fields[1])), 0o600)
	waitFor(t, 10*time.Second, "sshd to listen", func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return fmt.Errorf("%v (sshd: %s)", err, stderr.String())
		}
		return c.Close()
	})
	user := os.Getenv("USER")
	if out, err := exec.Command("id", "-un").Output(); err == nil {
		user = strings.TrimSpace(string(out))
	}
	return &sshServer{Port: port, KeyFile: filepath.Join(dir, "client"), KnownHostsFile: filepath.Join(dir, "known_hosts"), User: user}
}

func (s *sshServer) URL(u *upstream) string {
	return fmt.Sprintf("ssh://%s@127.0.0.1:%d%s", s.User, s.Port, u.Bare)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it returns nil or the deadline passes (a deadline for a failing test, not a
// timing assertion).
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testConfig is a valid configuration syncing url into a fresh root, with its defaults.
func testConfig(t *testing.T, url string, env map[string]string) *Config {
	t.Helper()
	all := map[string]string{"GITSYNC_REPO": url, "GITSYNC_ROOT": t.TempDir(), "GITSYNC_LINK": "current", "STATUS_PORT": fmt.Sprint(freePort(t))}
	for k, v := range env {
		all[k] = v
	}
	cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := all[k]; return v, ok }, nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// newTestSyncer returns a prepared syncer for cfg.
func newTestSyncer(t *testing.T, cfg *Config) *syncer {
	t.Helper()
	g, err := newGitCommand(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &syncer{cfg: cfg, git: g, log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	if err := s.prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// mustSync runs one sync and fails the test on error.
func mustSync(t *testing.T, s *syncer) syncResult {
	t.Helper()
	res, err := s.sync(context.Background())
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

// published returns the hash the link points at and the content of file in that checkout.
func published(t *testing.T, cfg *Config, file string) (hash, content string) {
	t.Helper()
	target, err := os.Readlink(cfg.Link)
	if err != nil {
		t.Fatalf("reading the link: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(cfg.Link, file))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return filepath.Base(target), string(b)
}
