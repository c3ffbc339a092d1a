// Command compare measures the design choice of the git-sync sidecar: shelling out to git (what
// kubernetes/git-sync does, and what the sidecar does) against github.com/go-git/go-git/v5 (pure Go).
//
// It serves a bare repository over smart HTTP (`git http-backend` behind net/http/cgi on 127.0.0.1), then
// for each implementation runs in a fresh child process (so peak RSS is per implementation):
//   - the initial sync: a depth-1 fetch of the branch and a checkout of its 5,000 files;
//   - the same with full history (depth 0);
//   - the plumbing the sidecar needs: a depth-1 fetch of a commit that is not a branch tip (a SHA ref),
//     a history rewrite (force-push) followed by a fetch, and a second checkout directory per commit.
//
// Usage: go run ./bench/git-sync/compare -repo /tmp/big.git   (a repository from ./bench/git-sync/genrepo)
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

func main() {
	repo := flag.String("repo", "", "bare repository to serve (from genrepo)")
	child := flag.String("child", "", "internal: run one measurement (impl:case) and print its result")
	url := flag.String("url", "", "internal: the repository URL")
	dir := flag.String("dir", "", "internal: the work directory")
	flag.Parse()
	if *child != "" {
		start := time.Now()
		err := runCase(*child, *url, *dir)
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		var rc syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_CHILDREN, &rc)
		status := "ok"
		if err != nil {
			status = "FAILED: " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Printf("%-22s %8.2fs  peak RSS self %4d MiB, largest git child %4d MiB  %s\n", *child,
			time.Since(start).Seconds(), ru.Maxrss/1024, rc.Maxrss/1024, status)
		return
	}
	if *repo == "" {
		fmt.Fprintln(os.Stderr, "compare: -repo is required")
		os.Exit(2)
	}
	abs, _ := filepath.Abs(*repo)
	os.Setenv("COMPARE_REPO_DIR", abs) // the children read the served repository from here
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	gitExec, _ := exec.Command("git", "--exec-path").Output()
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(gitExec)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(abs), "GIT_HTTP_EXPORT_ALL=1"},
	}
	go http.Serve(ln, h)
	u := fmt.Sprintf("http://%s/%s", ln.Addr(), filepath.Base(abs))
	tmp, _ := os.MkdirTemp("", "compare-")
	defer os.RemoveAll(tmp)
	self, _ := os.Executable()
	exec.Command("git", "-C", abs, "branch", "-f", "rw", "main").Run()
	for _, c := range []string{"git:depth1", "gogit:depth1", "git:full", "gogit:full", "git:sha", "gogit:sha", "git:force", "gogit:force", "git:worktree", "gogit:worktree"} {
		d := filepath.Join(tmp, strings.ReplaceAll(c, ":", "-"))
		cmd := exec.Command(self, "-child", c, "-url", u, "-dir", d)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Run()
		os.RemoveAll(d)
		exec.Command("git", "-C", abs, "branch", "-f", "rw", "main").Run()
	}
}

func runGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// runCase runs one measurement.
func runCase(c, url, dir string) error {
	impl, what, _ := strings.Cut(c, ":")
	os.MkdirAll(dir, 0o755)
	// A commit 10 back from the tip: not advertised, so fetching it needs "a SHA in want".
	back, err := exec.Command("git", "ls-remote", url, "main").Output()
	if err != nil {
		return err
	}
	tip := strings.Fields(string(back))[0]
	if impl == "git" {
		repo := filepath.Join(dir, "repo")
		if _, err := runGit(dir, "init", "-q", repo); err != nil {
			return err
		}
		depth := []string{"--depth", "1"}
		if what == "full" {
			depth = nil
		}
		switch what {
		case "depth1", "full", "worktree":
			if _, err := runGit(repo, append(append([]string{"fetch", "-q", "--no-tags"}, depth...), url, "main")...); err != nil {
				return err
			}
			if _, err := runGit(repo, "worktree", "add", "-q", "--detach", filepath.Join(dir, "wt-"+tip), "FETCH_HEAD"); err != nil {
				return err
			}
			if what == "worktree" {
				_, err := runGit(repo, "worktree", "add", "-q", "--detach", filepath.Join(dir, "wt2"), "FETCH_HEAD")
				return err
			}
		case "sha":
			old := olderCommit(url)
			_, err := runGit(repo, "fetch", "-q", "--depth", "1", url, old)
			return err
		case "force":
			if _, err := runGit(repo, "fetch", "-q", "--depth", "1", url, "rw"); err != nil {
				return err
			}
			rewrite()
			if _, err := runGit(repo, "fetch", "-q", "--depth", "1", url, "rw"); err != nil {
				return err
			}
			_, err := runGit(repo, "worktree", "add", "-q", "--detach", filepath.Join(dir, "wt"), "FETCH_HEAD")
			return err
		}
		return nil
	}
	r, err := git.PlainInit(filepath.Join(dir, "repo"), false)
	_ = r
	if err != nil {
		return err
	}
	opts := &git.CloneOptions{URL: url, ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true, Depth: 1, NoCheckout: false}
	if what == "full" {
		opts.Depth = 0
	}
	os.RemoveAll(filepath.Join(dir, "repo"))
	switch what {
	case "depth1", "full":
		_, err := git.PlainClone(filepath.Join(dir, "repo"), false, opts)
		return err
	case "sha":
		rr, err := git.PlainInit(filepath.Join(dir, "repo"), false)
		if err != nil {
			return err
		}
		rem, err := rr.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}})
		if err != nil {
			return err
		}
		old := olderCommit(url)
		return rem.FetchContext(context.Background(), &git.FetchOptions{Depth: 1, RefSpecs: []config.RefSpec{config.RefSpec(old + ":refs/heads/synced")}})
	case "force":
		opts.ReferenceName = plumbing.NewBranchReferenceName("rw")
		rr, err := git.PlainClone(filepath.Join(dir, "repo"), false, opts)
		if err != nil {
			return err
		}
		rewrite()
		// The remote's branch now points at a rewritten history: fetch with the clone's own (forced) refspec.
		if err := rr.FetchContext(context.Background(), &git.FetchOptions{Depth: 1}); err != nil {
			return err
		}
		ref, err := rr.Reference(plumbing.NewRemoteReferenceName("origin", "rw"), true)
		if err != nil {
			return err
		}
		wt, err := rr.Worktree()
		if err != nil {
			return err
		}
		return wt.Checkout(&git.CheckoutOptions{Hash: ref.Hash(), Force: true})
	case "worktree":
		// go-git has no linked worktrees: a second checkout needs its own storage (a second clone) or a
		// shared object store with a separate index, which go-git's API does not offer.
		st := filesystem.NewStorage(osfs.New(filepath.Join(dir, "repo", ".git")), cache.NewObjectLRUDefault())
		_, err := git.Open(st, osfs.New(filepath.Join(dir, "wt2")))
		if err == nil {
			return fmt.Errorf("unexpected: opened")
		}
		return fmt.Errorf("no linked worktrees: %w", err)
	}
	return nil
}

// rewrite moves branch rw of the served repository to a new commit whose parent is main~10: a force-push.
func rewrite() {
	dir := os.Getenv("COMPARE_REPO_DIR")
	c, err := exec.Command("git", "-C", dir, "commit-tree", "-p", "main~10", "-m", "rewritten", "main^{tree}").Output()
	if err != nil {
		panic(err)
	}
	exec.Command("git", "-C", dir, "branch", "-f", "rw", strings.TrimSpace(string(c))).Run()
}

// olderCommit returns the commit 10 commits behind main's tip, read from the served repository itself.
func olderCommit(url string) string {
	dir := os.Getenv("COMPARE_REPO_DIR")
	out, _ := exec.Command("git", "-C", dir, "rev-parse", "main~10").Output()
	return strings.TrimSpace(string(out))
}
