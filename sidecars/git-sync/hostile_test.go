package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAHostileRepositoryCannotWriteOutsideTheRootOrRunCode syncs repositories built to attack the sidecar,
// with the real git: symlinks out of the root (and a later commit that writes through one), tree entries
// git's own commands would never make (a ".." directory, a ".git/hooks/post-checkout" script), and
// submodules over the ext:: and file:// transports (with GITSYNC_SUBMODULES=recursive). Each attack's
// target is a directory outside GITSYNC_ROOT that must stay empty, and a marker file that any code the
// repository managed to run would create. The refused ones fail the sync with git's reason and publish
// nothing; the symlinks are published as symlinks, which is what they are.
func TestAHostileRepositoryCannotWriteOutsideTheRootOrRunCode(t *testing.T) {
	outside := t.TempDir()
	marker := filepath.Join(outside, "code-ran")
	hook := "#!/bin/sh\ntouch " + marker + "\n"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		build   func(t *testing.T, u *upstream, sync func()) // sync: sync what is pushed so far
		refused string                                       // "" when the last sync succeeds
		// recycled: the last sync must write into the spare checkout (sync ages the replaced ones).
		recycled bool
	}{
		{name: "symlinks out of the root, then a file through one", build: func(t *testing.T, u *upstream, sync func()) {
			os.Symlink(outside, filepath.Join(u.Work, "abs"))
			os.Symlink("../../../../../../../../../../"+strings.TrimPrefix(outside, "/"), filepath.Join(u.Work, "rel"))
			u.Commit(map[string]string{"index.html": "one"})
			sync() // published with abs -> outside; the next commit makes abs a directory
			os.Remove(filepath.Join(u.Work, "abs"))
			u.Commit(map[string]string{"abs/pwned": "written through the old symlink?", "index.html": "two"})
		}},
		{name: "symlinks out of the root, then a file through one, into a recycled checkout", recycled: true, build: func(t *testing.T, u *upstream, sync func()) {
			os.Symlink(outside, filepath.Join(u.Work, "abs"))
			os.Symlink("../../../../../../../../../../"+strings.TrimPrefix(outside, "/"), filepath.Join(u.Work, "rel"))
			u.Commit(map[string]string{"index.html": "one"})
			sync()
			u.Commit(map[string]string{"index.html": "two"})
			sync() // the checkout with abs -> outside is the spare: the next commit is written into it
			os.Remove(filepath.Join(u.Work, "abs"))
			u.Commit(map[string]string{"abs/pwned": "written through the old symlink?", "index.html": "three"})
		}},
		{name: "a .. directory", refused: "invalid path", build: func(t *testing.T, u *upstream, _ func()) {
			craftCommit(t, u, map[string]string{"../../../../../../../../../../" + strings.TrimPrefix(outside, "/") + "/pwned": "x", "index.html": "x"})
		}},
		{name: "a .git/hooks/post-checkout script", refused: "invalid path", build: func(t *testing.T, u *upstream, _ func()) {
			craftCommit(t, u, map[string]string{".git/hooks/post-checkout": hook, "index.html": "x"})
		}},
		{name: "a submodule over ext::", env: map[string]string{"GITSYNC_SUBMODULES": "recursive"}, refused: "transport 'ext' not allowed", build: func(t *testing.T, u *upstream, _ func()) {
			addSubmodule(t, u, "ext::sh -c touch% "+marker)
		}},
		{name: "a submodule over file://", env: map[string]string{"GITSYNC_SUBMODULES": "recursive"}, refused: "transport 'file' not allowed", build: func(t *testing.T, u *upstream, _ func()) {
			other := newUpstream(t)
			other.Commit(map[string]string{"hooks/post-checkout": hook})
			addSubmodule(t, u, other.FileURL())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t)
			cfg := testConfig(t, u.FileURL(), tc.env)
			var s *syncer
			tc.build(t, u, func() {
				if s == nil {
					s = newTestSyncer(t, cfg)
				}
				mustSync(t, s)
				for hash := range s.replaced {
					s.replaced[hash] = time.Now().Add(-keepReplaced)
				}
			})
			if s == nil {
				s = newTestSyncer(t, cfg)
			}
			res, err := s.sync(context.Background())
			if tc.recycled && err == nil && !res.Recycled {
				t.Fatalf("the last sync checked the commit out whole (%+v); this case is about a recycled checkout", res)
			}
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("sync: %v", err)
			case tc.refused != "" && err == nil:
				t.Fatalf("the sync of a hostile repository succeeded; want it refused with %q", tc.refused)
			case tc.refused != "" && !strings.Contains(err.Error(), tc.refused):
				t.Fatalf("sync failed with %q, want git's reason %q", err, tc.refused)
			case err != nil:
				t.Logf("result: refused: %v", err)
				if _, lerr := os.Lstat(cfg.Link); !os.IsNotExist(lerr) {
					t.Errorf("a link was published after the refused sync (%v)", lerr)
				}
			}
			if got := files(t, outside); len(got) > 0 {
				t.Fatalf("the repository wrote outside GITSYNC_ROOT: %v", got)
			}
			if tc.refused == "" {
				for _, name := range []string{"rel"} {
					if fi, err := os.Lstat(filepath.Join(cfg.Link, name)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
						t.Errorf("%s: %v, %v; want the repository's symlink, published as a symlink", name, fi, err)
					}
				}
				if b, err := os.ReadFile(filepath.Join(cfg.Link, "abs", "pwned")); err != nil || !strings.HasPrefix(string(b), "written") {
					t.Errorf("abs/pwned is not a file of the checkout: %q, %v", b, err)
				}
				t.Logf("result: published; the symlinks are symlinks in the checkout, abs/pwned a file in it, %s untouched", outside)
			}
		})
	}
}

// files lists everything under dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if path != dir {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// craftCommit makes a commit whose tree holds files (path → content) exactly as given, ".." and ".git"
// components included, which git's porcelain refuses to make: the trees are hashed with --literally,
// the way an attacker would push them, and the bare repository's HEAD branch moves to the commit.
func craftCommit(t *testing.T, u *upstream, files map[string]string) {
	t.Helper()
	type entry struct {
		mode, name string
		hash       []byte
	}
	write := func(kind string, data []byte) []byte {
		cmd := exec.Command("git", "--git-dir="+u.Bare, "hash-object", "-w", "--literally", "-t", kind, "--stdin")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git hash-object -t %s: %v", kind, err)
		}
		h, err := hex.DecodeString(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	var tree func(prefix string) []byte
	tree = func(prefix string) []byte {
		children := map[string]entry{}
		for path, content := range files {
			rest, ok := strings.CutPrefix(path, prefix)
			if !ok {
				continue
			}
			if name, _, isDir := strings.Cut(rest, "/"); isDir {
				children[name] = entry{"40000", name, tree(prefix + name + "/")}
			} else {
				children[name] = entry{"100644", name, write("blob", []byte(content))}
			}
		}
		names := make([]string, 0, len(children))
		for n := range children {
			names = append(names, n)
		}
		sort.Strings(names) // close enough to git's order for these names; --literally does not check it
		var buf bytes.Buffer
		for _, n := range names {
			fmt.Fprintf(&buf, "%s %s\x00", children[n].mode, n)
			buf.Write(children[n].hash)
		}
		return write("tree", buf.Bytes())
	}
	root := hex.EncodeToString(tree(""))
	commit := strings.TrimSpace(hostGit(t, "", "--git-dir="+u.Bare, "commit-tree", root, "-m", "hostile"))
	branch := strings.TrimSpace(hostGit(t, "", "--git-dir="+u.Bare, "symbolic-ref", "HEAD"))
	hostGit(t, "", "--git-dir="+u.Bare, "update-ref", branch, commit)
}

// addSubmodule commits a submodule "lib" whose URL is url, without git fetching it (as a hostile
// .gitmodules is written by hand): a gitlink to an arbitrary commit and the .gitmodules entry.
func addSubmodule(t *testing.T, u *upstream, url string) {
	t.Helper()
	u.Commit(map[string]string{"index.html": "site"})
	head := strings.TrimSpace(hostGit(t, u.Work, "rev-parse", "HEAD"))
	if err := os.WriteFile(filepath.Join(u.Work, ".gitmodules"), []byte("[submodule \"lib\"]\n\tpath = lib\n\turl = "+url+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostGit(t, u.Work, "add", ".gitmodules")
	hostGit(t, u.Work, "update-index", "--add", "--cacheinfo", "160000,"+head+",lib")
	hostGit(t, u.Work, "commit", "-q", "-m", "submodule")
	hostGit(t, u.Work, "push", "-q", "--force", "origin", "HEAD")
}

// TestCredentialsNeverReachTheLogsOrMetrics runs the built binary against a git HTTP server that refuses
// its password, until it has failed three times, and greps everything it printed and its /metrics for
// the password it sent and the one the server wanted: neither appears, and the failure is explained.
func TestCredentialsNeverReachTheLogsOrMetrics(t *testing.T) {
	u := newUpstream(t)
	u.Commit(map[string]string{"index.html": "private"})
	nonce := fmt.Sprint(time.Now().UnixNano())
	right, wrong := "right-"+nonce, "wrong-"+nonce
	web := newHTTPServer(t, u, "alice", right)
	passwordFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "git-sync"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port := freePort(t)
	cmd := exec.Command(filepath.Join(dir, "git-sync"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GITSYNC_REPO=" + web.URL(), "GITSYNC_ROOT=" + t.TempDir(),
		"GITSYNC_USERNAME=alice", "GITSYNC_PASSWORD_FILE=" + passwordFile, "GITSYNC_PERIOD=100ms",
		"GITSYNC_MAX_FAILURES=-1", fmt.Sprintf("STATUS_PORT=%d", port)}
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var metrics string
	waitFor(t, 30*time.Second, "three failed syncs", func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		metrics = string(b)
		for _, line := range strings.Split(metrics, "\n") {
			if v, ok := strings.CutPrefix(line, `git_sync_count_total{status="error"} `); ok {
				if n, _ := strconv.Atoi(v); n >= 3 {
					return nil
				}
			}
		}
		return fmt.Errorf("not yet")
	})
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	printed := output.String()
	for _, secret := range []string{right, wrong, nonce} {
		if strings.Contains(printed, secret) {
			t.Errorf("the output shows a password (%s):\n%s", secret, printed)
		}
		if strings.Contains(metrics, secret) {
			t.Errorf("/metrics shows a password (%s)", secret)
		}
	}
	if !strings.Contains(printed, "authentication failed") {
		t.Errorf("the output does not say why the sync failed:\n%s", printed)
	}
	t.Logf("result: %d bytes of output and %d of /metrics after 3+ failed authenticated syncs, no password in either", len(printed), len(metrics))
}

// TestAOneGigabyteFileIsCheckedOutWithinTheRoot: a repository holding a 1 GiB file (zeros: its blob is about
// 1 MB, so pushing it costs the attacker nothing). git-sync checks it out like any file, inside
// GITSYNC_ROOT: what bounds the disk it takes is the volume's sizeLimit (the git-sync catalog's volume-size,
// 2Gi by default, which the kubelet enforces by evicting the pod). The sidecar itself does not read the
// file: its heap stays flat while git writes it.
func TestAOneGigabyteFileIsCheckedOutWithinTheRoot(t *testing.T) {
	u := newUpstream(t)
	u.Commit(map[string]string{"index.html": "small"})
	const size = 1 << 30
	hash := exec.Command("git", "--git-dir="+u.Bare, "hash-object", "-w", "--stdin")
	hash.Stdin = io.LimitReader(zeros{}, size)
	out, err := hash.Output()
	if err != nil {
		t.Fatalf("git hash-object: %v", err)
	}
	blob := strings.TrimSpace(string(out))
	head := strings.TrimSpace(hostGit(t, "", "--git-dir="+u.Bare, "rev-parse", "HEAD^{tree}"))
	listing := hostGit(t, "", "--git-dir="+u.Bare, "ls-tree", head)
	mk := exec.Command("git", "--git-dir="+u.Bare, "mktree")
	mk.Stdin = strings.NewReader(strings.TrimSpace(listing) + "\n100644 blob " + blob + "\tbig.bin\n")
	treeOut, err := mk.Output()
	if err != nil {
		t.Fatalf("git mktree: %v", err)
	}
	commit := strings.TrimSpace(hostGit(t, "", "--git-dir="+u.Bare, "commit-tree", strings.TrimSpace(string(treeOut)), "-p", "HEAD", "-m", "big"))
	branch := strings.TrimSpace(hostGit(t, "", "--git-dir="+u.Bare, "symbolic-ref", "HEAD"))
	hostGit(t, "", "--git-dir="+u.Bare, "update-ref", branch, commit)

	cfg := testConfig(t, u.FileURL(), nil)
	s := newTestSyncer(t, cfg)
	var heapBefore, heapAfter runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapBefore)
	began := time.Now()
	mustSync(t, s)
	took := time.Since(began)
	runtime.ReadMemStats(&heapAfter)
	fi, err := os.Stat(filepath.Join(cfg.Link, "big.bin"))
	if err != nil || fi.Size() != size {
		entries, _ := os.ReadDir(cfg.Link)
		t.Fatalf("big.bin in the checkout: %v, %v (commit %s, published %v, checkout has %v)", fi, err, commit, mustEval(t, cfg.Link), entries)
	}
	if !strings.HasPrefix(mustEval(t, filepath.Join(cfg.Link, "big.bin")), cfg.Root+"/") {
		t.Fatalf("big.bin resolves outside GITSYNC_ROOT")
	}
	if grew := int64(heapAfter.HeapInuse) - int64(heapBefore.HeapInuse); grew > 64<<20 {
		t.Errorf("the sidecar's heap grew by %d MiB checking out a 1 GiB file: it should not read it", grew>>20)
	}
	var repoBytes int64
	filepath.Walk(u.Bare, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			repoBytes += info.Size()
		}
		return nil
	})
	t.Logf("result: a 1 GiB file, %d KiB in the repository, checked out within GITSYNC_ROOT in %s; the sidecar's heap %d → %d MiB",
		repoBytes>>10, took.Round(time.Millisecond), heapBefore.HeapInuse>>20, heapAfter.HeapInuse>>20)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func mustEval(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
