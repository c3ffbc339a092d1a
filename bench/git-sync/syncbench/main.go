// Command syncbench measures the git-sync sidecar against plain git on one repository served over smart
// HTTP (`git http-backend` behind net/http/cgi on 127.0.0.1):
//
//   - initial sync: wall time and peak RSS (the largest process of the tree: the sidecar or one of its git
//     children) of `git-sync --one-time`, against `git clone` with the same depth, alternated -runs times;
//   - push-to-flip: -n commits pushed one at a time for each -changed size; for each, one sync's time
//     (git-sync woken by a signal) against `git fetch` + `git checkout` in a clone, and, for the first size,
//     the time from the end of `git push` until a polling sidecar's (-period) link points at the new commit.
//
// Usage: syncbench -gitsync _output/bin/git-sync -repo /tmp/big.git [-n 30] [-period 1s] [-runs 3] [-changed 1,50,5000]
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
	"strconv"
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
	changed := flag.String("changed", "1,50,5000", "files each push rewrites, one measurement per number")
	k8s := flag.String("k8s-gitsync", os.Getenv("K8S_GIT_SYNC"), "a kubernetes/git-sync v4 binary to measure side by side (default $K8S_GIT_SYNC; its columns are left out when empty)")
	flag.Parse()
	var changedSets []int
	for _, f := range strings.Split(*changed, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			fmt.Fprintf(os.Stderr, "syncbench: -changed %q: want a comma-separated list of positive numbers\n", *changed)
			os.Exit(2)
		}
		changedSets = append(changedSets, v)
	}
	if *gitsync == "" || *repo == "" {
		fmt.Fprintln(os.Stderr, "syncbench: -gitsync and -repo are required")
		os.Exit(2)
	}
	if err := bench(*gitsync, *k8s, *repo, *n, *period, *runs, *depth, changedSets); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

// k8sName is how the tables call kubernetes/git-sync.
const k8sName = "kubernetes/git-sync"

func bench(gitsync, k8s, repo string, n int, period time.Duration, runs, depth int, changedSets []int) error {
	repo, _ = filepath.Abs(repo)
	gitsync, _ = filepath.Abs(gitsync)
	if k8s != "" {
		k8s, _ = filepath.Abs(k8s)
	}
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
	results := map[string]*sample{"git-sync --one-time": {}, "git clone": {}, k8sName + " --one-time": {}}
	order := []string{"git-sync --one-time", "git clone"}
	if k8s != "" {
		order = append(order, k8sName+" --one-time")
	}
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
			k8sName + " --one-time": exec.Command(k8s, "--repo="+url, "--root="+filepath.Join(dir, "k8s"), "--one-time",
				fmt.Sprint("--depth=", depth)),
		}
		for _, name := range order {
			cmd := cmds[name]
			cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+dir)
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
	for _, name := range order {
		fmt.Printf("| %s | %.2f s | %.0f MiB |\n", name, median(results[name].wall), median(results[name].rss))
	}
	fmt.Printf("| ratio git-sync / git clone | %.2f | %.2f |\n",
		median(results["git-sync --one-time"].wall)/median(results["git clone"].wall),
		median(results["git-sync --one-time"].rss)/median(results["git clone"].rss))
	if k8s != "" {
		fmt.Printf("| ratio git-sync / %s | %.2f | %.2f |\n", k8sName,
			median(results["git-sync --one-time"].wall)/median(results[k8sName+" --one-time"].wall),
			median(results["git-sync --one-time"].rss)/median(results[k8sName+" --one-time"].rss))
	}
	fmt.Println()

	return pushToFlip(gitsync, k8s, repo, url, tmp, n, period, depth, changedSets)
}

// pushToFlip measures how long a new commit takes to reach the app. Each push rewrites `changed` files of the
// tree (every size in changedSets, n pushes each), and then, one after the other so they never compete:
//
//   - git-sync, woken by SIGHUP (GITSYNC_SYNC_ON_SIGNAL; the period is an hour): signal → link flip, the cost
//     of one sync (ls-remote, fetch, checkout, swap) with no period in it;
//   - kubernetes/git-sync v4 (when -k8s-gitsync is given), woken the same way (--sync-on-signal);
//   - the peer, in a clone of its own: `git fetch --depth N origin <hash>` + `git checkout --force <hash>`,
//     the least a tool that keeps a checkout in step can do (it has no atomic swap);
//
// and, for the first size only, a second sidecar polling with GITSYNC_PERIOD=period: push done → link flip,
// what a user waits for (the period's wait, on average half of it, included).
func pushToFlip(gitsync, k8s, repo, url, tmp string, n int, period time.Duration, depth int, changedSets []int) error {
	if n <= 0 {
		return nil
	}
	work := filepath.Join(tmp, "work")
	if out, err := exec.Command("git", "clone", "-q", "--depth=1", "file://"+repo, work).CombinedOutput(); err != nil {
		return fmt.Errorf("cloning a work copy: %v\n%s", err, out)
	}
	git := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	list, err := git(work, "ls-files")
	if err != nil {
		return fmt.Errorf("ls-files: %v %s", err, list)
	}
	files := strings.Split(list, "\n")
	peer := filepath.Join(tmp, "peer")
	cloneArgs := []string{"clone", "-q", "--no-tags", "--single-branch"}
	if depth > 0 {
		cloneArgs = append(cloneArgs, fmt.Sprint("--depth=", depth))
	}
	if out, err := exec.Command("git", append(cloneArgs, url, peer)...).CombinedOutput(); err != nil {
		return fmt.Errorf("cloning the peer's copy: %v\n%s", err, out)
	}
	fetchArgs := []string{"fetch", "-q", "--no-tags"}
	if depth > 0 {
		fetchArgs = append(fetchArgs, fmt.Sprint("--depth=", depth))
	}

	start := func(name string, extra ...string) (*exec.Cmd, string, error) {
		root := filepath.Join(tmp, name)
		args := append([]string{"--repo=" + url, "--root=" + root, "--link=current", fmt.Sprint("--depth=", depth),
			fmt.Sprint("--status-port=", freePort()), "--max-failures=-1"}, extra...)
		cmd := exec.Command(gitsync, args...)
		if err := cmd.Start(); err != nil {
			return nil, "", err
		}
		return cmd, filepath.Join(root, "current"), nil
	}
	onSignal, signalLink, err := start("on-signal", "--period=1h", "--sync-on-signal=SIGHUP")
	if err != nil {
		return err
	}
	defer func() { onSignal.Process.Signal(syscall.SIGTERM); onSignal.Wait() }()
	polling, pollLink, err := start("polling", "--period="+period.String())
	if err != nil {
		return err
	}
	defer func() { polling.Process.Signal(syscall.SIGTERM); polling.Wait() }()
	links := []string{signalLink, pollLink}
	var k8sCmd *exec.Cmd
	k8sLink := filepath.Join(tmp, "k8s", "current")
	if k8s != "" {
		k8sCmd = exec.Command(k8s, "--repo="+url, "--root="+filepath.Dir(k8sLink), "--link=current", fmt.Sprint("--depth=", depth),
			"--period=1h", "--sync-on-signal=SIGHUP", "--max-failures=-1")
		k8sCmd.Env = append(os.Environ(), "HOME="+filepath.Join(tmp, "k8s-home"))
		os.MkdirAll(filepath.Join(tmp, "k8s-home"), 0o755)
		if err := k8sCmd.Start(); err != nil {
			return err
		}
		defer func() { k8sCmd.Process.Signal(syscall.SIGTERM); k8sCmd.Wait() }()
		links = append(links, k8sLink)
	}
	head, _ := git(work, "rev-parse", "HEAD")
	for _, link := range links {
		if _, err := waitLink(link, head, 5*time.Minute); err != nil {
			return err
		}
	}

	push := 0
	if k8s != "" {
		fmt.Printf("| one sync after a push (%d pushes each, depth %d, HTTP) | git-sync p50 | p99 | %s p50 | p99 | git fetch + checkout p50 | p99 | ratio to fetch + checkout p50 | p99 | ratio to %s p50 | p99 |\n|---|---|---|---|---|---|---|---|---|---|---|\n", n, depth, k8sName, k8sName)
	} else {
		fmt.Printf("| one sync after a push (%d pushes each, depth %d, HTTP) | git-sync p50 | p99 | git fetch + checkout p50 | p99 | ratio p50 | ratio p99 |\n|---|---|---|---|---|---|---|\n", n, depth)
	}
	var pollLat, pushLat []float64
	for k, changed := range changedSets {
		if changed > len(files) {
			return fmt.Errorf("-changed %d: the tree has only %d files", changed, len(files))
		}
		var ours, theirs, peers []float64
		for i := 0; i < n; i++ {
			push++
			for _, f := range files[:changed] {
				os.WriteFile(filepath.Join(work, f), []byte(fmt.Sprintf("push %d of %s at %s\n", push, f, time.Now())), 0o644)
			}
			if out, err := git(work, "commit", "-q", "-a", "-m", fmt.Sprint("push ", push)); err != nil {
				return fmt.Errorf("commit: %v %s", err, out)
			}
			hash, _ := git(work, "rev-parse", "HEAD")
			pushStart := time.Now()
			if out, err := git(work, "push", "-q", "origin", "HEAD:main"); err != nil {
				return fmt.Errorf("push: %v %s", err, out)
			}
			pushed := time.Now()
			if k == 0 {
				pushLat = append(pushLat, pushed.Sub(pushStart).Seconds())
				took, err := waitLink(pollLink, hash, time.Minute)
				if err != nil {
					return err
				}
				pollLat = append(pollLat, took.Seconds())
			}
			t0 := time.Now()
			onSignal.Process.Signal(syscall.SIGHUP)
			if _, err := waitLink(signalLink, hash, time.Minute); err != nil {
				return err
			}
			ours = append(ours, time.Since(t0).Seconds())
			if k8sCmd != nil {
				t0 = time.Now()
				k8sCmd.Process.Signal(syscall.SIGHUP)
				if _, err := waitLink(k8sLink, hash, time.Minute); err != nil {
					return fmt.Errorf("%s: %w", k8sName, err)
				}
				theirs = append(theirs, time.Since(t0).Seconds())
			}
			t0 = time.Now()
			if out, err := git(peer, append(fetchArgs, "origin", hash)...); err != nil {
				return fmt.Errorf("peer fetch: %v %s", err, out)
			}
			if out, err := git(peer, "checkout", "-q", "--force", "--detach", hash); err != nil {
				return fmt.Errorf("peer checkout: %v %s", err, out)
			}
			peers = append(peers, time.Since(t0).Seconds())
		}
		slices.Sort(ours)
		slices.Sort(theirs)
		slices.Sort(peers)
		if k8sCmd != nil {
			fmt.Printf("| %d of %d files changed | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.2f | %.2f | %.2f | %.2f |\n", changed, len(files),
				1000*pct(ours, 0.5), 1000*pct(ours, 0.99), 1000*pct(theirs, 0.5), 1000*pct(theirs, 0.99), 1000*pct(peers, 0.5), 1000*pct(peers, 0.99),
				pct(ours, 0.5)/pct(peers, 0.5), pct(ours, 0.99)/pct(peers, 0.99), pct(ours, 0.5)/pct(theirs, 0.5), pct(ours, 0.99)/pct(theirs, 0.99))
			continue
		}
		fmt.Printf("| %d of %d files changed | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.2f | %.2f |\n", changed, len(files),
			1000*pct(ours, 0.5), 1000*pct(ours, 0.99), 1000*pct(peers, 0.5), 1000*pct(peers, 0.99),
			pct(ours, 0.5)/pct(peers, 0.5), pct(ours, 0.99)/pct(peers, 0.99))
	}
	slices.Sort(pollLat)
	slices.Sort(pushLat)
	fmt.Printf("\n| push done → link flip (GITSYNC_PERIOD=%s, %d pushes of %d file(s)) | p50 | p99 | max | goal (period + 200 ms) | git push itself, p50 |\n|---|---|---|---|---|---|\n", period, n, changedSets[0])
	goal := period + 200*time.Millisecond
	fmt.Printf("| git-sync | %.0f ms | %.0f ms | %.0f ms | %s: %s | %.0f ms |\n", 1000*pct(pollLat, 0.5), 1000*pct(pollLat, 0.99),
		1000*pollLat[len(pollLat)-1], goal, met(pct(pollLat, 0.99) <= goal.Seconds()), 1000*pct(pushLat, 0.5))
	return nil
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
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
