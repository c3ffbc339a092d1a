// Command syncbench measures the git-sync sidecar against plain git on one repository served over smart
// HTTP (`git http-backend` behind net/http/cgi on 127.0.0.1):
//
//   - initial sync: wall time and peak RSS (the largest process of the tree: the sidecar or one of its git
//     children) of `git-sync --one-time`, against `git clone` with the same depth, alternated -runs times;
//   - push-to-flip: a running sidecar (-period), then -n commits pushed one at a time; for each, the time from
//     the start of `git push` until the link points at the new commit.
//
// Usage: syncbench -gitsync _output/bin/git-sync -repo /tmp/big.git [-n 30] [-period 1s] [-runs 3]
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	gitsync := flag.String("gitsync", "", "the git-sync binary")
	repo := flag.String("repo", "", "the bare repository to serve (from genrepo)")
	n := flag.Int("n", 30, "pushes for the push-to-flip measurement")
	period := flag.Duration("period", time.Second, "the sidecar's GITSYNC_PERIOD for push-to-flip")
	runs := flag.Int("runs", 3, "initial-sync runs of each tool")
	depth := flag.Int("depth", 1, "GITSYNC_DEPTH and git clone --depth (0: full history)")
	flag.Parse()
	if *gitsync == "" || *repo == "" {
		fmt.Fprintln(os.Stderr, "syncbench: -gitsync and -repo are required")
		os.Exit(2)
	}
	if err := bench(*gitsync, *repo, *n, *period, *runs, *depth); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

func bench(gitsync, repo string, n int, period time.Duration, runs, depth int) error {
	repo, _ = filepath.Abs(repo)
	gitsync, _ = filepath.Abs(gitsync)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return fmt.Errorf("git not found: run `make deps`: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo), "GIT_HTTP_EXPORT_ALL=1"},
	}}
	go srv.Serve(ln)
	defer srv.Close()
	url := fmt.Sprintf("http://%s/%s", ln.Addr(), filepath.Base(repo))
	tmp, err := os.MkdirTemp("", "syncbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	files, _ := exec.Command("git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD").Output()
	commits, _ := exec.Command("git", "-C", repo, "rev-list", "--count", "HEAD").Output()
	fmt.Printf("repository: %d files, %s commits, served over smart HTTP on 127.0.0.1; depth %d\n\n",
		strings.Count(string(files), "\n"), strings.TrimSpace(string(commits)), depth)

	// Initial sync, alternated so that both see the same page cache and machine load.
	type sample struct{ wall, rss []float64 }
	results := map[string]*sample{"git-sync --one-time": {}, "git clone": {}}
	for i := 0; i < runs; i++ {
		dir := filepath.Join(tmp, fmt.Sprint("run", i))
		cloneArgs := []string{"clone", "-q", "--no-tags", "--single-branch"}
		if depth > 0 {
			cloneArgs = append(cloneArgs, fmt.Sprint("--depth=", depth))
		}
		cmds := map[string]*exec.Cmd{
			"git-sync --one-time": exec.Command(gitsync, "--repo="+url, "--root="+filepath.Join(dir, "sidecar"), "--one-time=true",
				fmt.Sprint("--depth=", depth), fmt.Sprint("--status-port=", freePort())),
			"git clone": exec.Command("git", append(cloneArgs, url, filepath.Join(dir, "clone"))...),
		}
		for _, name := range []string{"git-sync --one-time", "git clone"} {
			cmd := cmds[name]
			cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
			start := time.Now()
			out, err := cmd.CombinedOutput()
			took := time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", name, err, out)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			results[name].wall = append(results[name].wall, took.Seconds())
			results[name].rss = append(results[name].rss, float64(ru.Maxrss)/1024)
		}
		os.RemoveAll(dir)
	}
	fmt.Printf("| initial sync (%d runs, median) | wall time | peak RSS (largest process) |\n|---|---|---|\n", runs)
	for _, name := range []string{"git-sync --one-time", "git clone"} {
		fmt.Printf("| %s | %.2f s | %.0f MiB |\n", name, median(results[name].wall), median(results[name].rss))
	}
	fmt.Printf("| ratio git-sync / git clone | %.2f | %.2f |\n\n",
		median(results["git-sync --one-time"].wall)/median(results["git clone"].wall),
		median(results["git-sync --one-time"].rss)/median(results["git clone"].rss))

	return pushToFlip(gitsync, repo, url, tmp, n, period, depth)
}

func pushToFlip(gitsync, repo, url, tmp string, n int, period time.Duration, depth int) error {
	if n <= 0 {
		return nil
	}
	work := filepath.Join(tmp, "work")
	if out, err := exec.Command("git", "clone", "-q", "--depth=1", "file://"+repo, work).CombinedOutput(); err != nil {
		return fmt.Errorf("cloning a work copy: %v\n%s", err, out)
	}
	root := filepath.Join(tmp, "root")
	link := filepath.Join(root, "current")
	sidecar := exec.Command(gitsync, "--repo="+url, "--root="+root, "--link=current", "--period="+period.String(),
		fmt.Sprint("--depth=", depth), fmt.Sprint("--status-port=", freePort()), "--max-failures=-1")
	if err := sidecar.Start(); err != nil {
		return err
	}
	defer func() { sidecar.Process.Signal(syscall.SIGTERM); sidecar.Wait() }()
	head, _ := exec.Command("git", "-C", work, "rev-parse", "HEAD").Output()
	if _, err := waitLink(link, strings.TrimSpace(string(head)), 5*time.Minute); err != nil {
		return err
	}
	var lat []float64
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", work, "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"}, args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for i := 0; i < n; i++ {
		os.WriteFile(filepath.Join(work, "dir000", "file00000.txt"), []byte(fmt.Sprintf("push %d at %s\n", i, time.Now())), 0o644)
		if out, err := git("commit", "-q", "-a", "-m", fmt.Sprint("push ", i)); err != nil {
			return fmt.Errorf("commit: %v %s", err, out)
		}
		hash, _ := git("rev-parse", "HEAD")
		start := time.Now()
		if out, err := git("push", "-q", "origin", "HEAD:main"); err != nil {
			return fmt.Errorf("push: %v %s", err, out)
		}
		if _, err := waitLink(link, hash, time.Minute); err != nil {
			return err
		}
		lat = append(lat, time.Since(start).Seconds())
	}
	slices.Sort(lat)
	fmt.Printf("| push → link flip (period %s, %d pushes, %s) | p50 | p99 | max |\n|---|---|---|---|\n", period, n, "HTTP")
	fmt.Printf("| git-sync | %.0f ms | %.0f ms | %.0f ms |\n", 1000*pct(lat, 0.5), 1000*pct(lat, 0.99), 1000*lat[len(lat)-1])
	return nil
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitLink polls the link every millisecond until it points at hash.
func waitLink(link, hash string, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < within {
		if target, err := os.Readlink(link); err == nil && filepath.Base(target) == hash {
			return time.Since(start), nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("the link did not point at %s within %s", hash, within)
}

func median(v []float64) float64 { return pct(slices.Sorted(slices.Values(v)), 0.5) }

// pct is the nearest-rank percentile of sorted v.
func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(p*float64(len(v))+0.5) - 1
	return v[max(0, min(len(v)-1, i))]
}
