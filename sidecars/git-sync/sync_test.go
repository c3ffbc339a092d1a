package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestFollowsNewCommitsOverEveryTransport syncs the same repository over file://, smart HTTP with basic
// auth and SSH: the first commit, a new commit, a deleted file, and a noop when nothing changed.
func TestFollowsNewCommitsOverEveryTransport(t *testing.T) {
	u := newUpstream(t)
	first := u.Commit(map[string]string{"index.html": "v1", "old.txt": "old"})
	passwordFile := filepath.Join(t.TempDir(), "password")
	os.WriteFile(passwordFile, []byte("s3cret\n"), 0o600)
	web := newHTTPServer(t, u, "alice", "s3cret")
	ssh := newSSHServer(t)

	transports := map[string]map[string]string{
		"file": {"GITSYNC_REPO": u.FileURL()},
		"http": {"GITSYNC_REPO": web.URL(), "GITSYNC_USERNAME": "alice", "GITSYNC_PASSWORD_FILE": passwordFile},
		"ssh":  {"GITSYNC_REPO": ssh.URL(u), "GITSYNC_SSH_KEY_FILE": ssh.KeyFile, "GITSYNC_SSH_KNOWN_HOSTS_FILE": ssh.KnownHostsFile},
	}
	syncers := map[string]*syncer{}
	for name, env := range transports {
		cfg := testConfig(t, env["GITSYNC_REPO"], env)
		s := newTestSyncer(t, cfg)
		syncers[name] = s
		if res := mustSync(t, s); !res.Changed || res.Hash != first {
			t.Fatalf("%s: first sync = %+v, want a change to %s", name, res, first)
		}
		if hash, content := published(t, cfg, "index.html"); hash != first || content != "v1" {
			t.Errorf("%s: published %s with index.html %q, want %s with v1", name, hash, content, first)
		}
	}
	second := u.Commit(map[string]string{"index.html": "v2", "old.txt": ""})
	for name, s := range syncers {
		if res := mustSync(t, s); !res.Changed || res.Hash != second {
			t.Fatalf("%s: second sync = %+v, want a change to %s", name, res, second)
		}
		if hash, content := published(t, s.cfg, "index.html"); hash != second || content != "v2" {
			t.Errorf("%s: published %s with index.html %q, want %s with v2", name, hash, content, second)
		}
		if _, err := os.Stat(filepath.Join(s.cfg.Link, "old.txt")); !os.IsNotExist(err) {
			t.Errorf("%s: old.txt deleted upstream is still in the checkout (err %v)", name, err)
		}
		if res := mustSync(t, s); res.Changed {
			t.Errorf("%s: a sync with nothing new reported a change: %+v", name, res)
		}
		// The replaced checkout stays for readers that resolved the link before the swap, then goes.
		if _, err := os.Stat(s.worktree(first)); err != nil {
			t.Errorf("%s: the replaced checkout %s was removed at once: %v", name, first, err)
		}
		// After keepReplaced it is the spare that the next commit is written into (TestANewCommitCostsWhatChanged).
		s.replaced[first] = time.Now().Add(-keepReplaced)
		mustSync(t, s)
		if _, err := os.Stat(s.worktree(first)); err != nil {
			t.Errorf("%s: the spare checkout %s was removed: %v", name, first, err)
		}
	}
}

// TestANewCommitCostsWhatChanged: once the replaced checkout has outlived keepReplaced, the next commit is
// written into it, so that only the files that changed are written: an unchanged file keeps its inode;
// changed, added and deleted files, and a file an exec hook left behind, end up exactly as a whole checkout
// of the new commit would have them, with git's view of it clean; older checkouts are removed, and a
// restart resumes from the recycled one.
func TestANewCommitCostsWhatChanged(t *testing.T) {
	u := newUpstream(t)
	c1 := u.Commit(map[string]string{"same.txt": "same", "change.txt": "v1", "gone/x.txt": "x", ".gitignore": "*.out\n"})
	cfg := testConfig(t, u.FileURL(), nil)
	s := newTestSyncer(t, cfg)
	mustSync(t, s)
	inode := func(path string) uint64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	sameIno := inode(filepath.Join(s.worktree(c1), "same.txt"))
	c2 := u.Commit(map[string]string{"change.txt": "v2"})
	if res := mustSync(t, s); res.Hash != c2 || res.Recycled {
		t.Fatalf("second sync = %+v: want %s checked out whole (%s was replaced just now, readers may be in it)", res, c2, c1)
	}
	// What an exec hook could leave in a checkout: an untracked file, an ignored one, an edited tracked one.
	os.WriteFile(filepath.Join(s.worktree(c1), "hook-output"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(s.worktree(c1), "build.out"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(s.worktree(c1), "change.txt"), []byte("edited by a hook"), 0o644)
	s.replaced[c1] = time.Now().Add(-keepReplaced)
	c3 := u.Commit(map[string]string{"change.txt": "v3", "gone/x.txt": "", "new/y.txt": "y"})
	res := mustSync(t, s)
	if res.Hash != c3 || !res.Recycled {
		t.Fatalf("third sync = %+v: want %s written into the spare checkout of %s", res, c3, c1)
	}
	dir := s.worktree(c3)
	if inode(filepath.Join(dir, "same.txt")) != sameIno {
		t.Errorf("same.txt, unchanged since %s, was written again", c1)
	}
	for name, want := range map[string]string{"same.txt": "same", "change.txt": "v3", "new/y.txt": "y", "gone/x.txt": "", "hook-output": "", "build.out": ""} {
		b, err := os.ReadFile(filepath.Join(cfg.Link, name))
		switch {
		case want == "" && !os.IsNotExist(err):
			t.Errorf("%s is in the published checkout (%q, %v); a whole checkout of %s has no such file", name, b, err, c3)
		case want != "" && string(b) != want:
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
		t.Errorf("the emptied directory gone/ is still there (%v)", err)
	}
	if head := hostGit(t, dir, "rev-parse", "HEAD"); head != c3 {
		t.Errorf("the recycled checkout's HEAD is %s, want %s", head, c3)
	}
	if st := hostGit(t, dir, "status", "--porcelain", "--ignored"); st != "" {
		t.Errorf("git status of the recycled checkout is not clean:\n%s", st)
	}
	if _, err := os.Stat(s.worktree(c1)); !os.IsNotExist(err) {
		t.Errorf("the recycled checkout is still under its old name %s (%v)", c1, err)
	}
	list := hostGit(t, s.gitDir(), "worktree", "list", "--porcelain")
	for _, want := range []string{s.worktree(c2), dir} {
		if !strings.Contains(list, "worktree "+want+"\n") {
			t.Errorf("git worktree list lacks %s:\n%s", want, list)
		}
	}
	if strings.Contains(list, c1) || strings.Contains(list, "prunable") {
		t.Errorf("git worktree list still has the recycled checkout or a stale entry:\n%s", list)
	}
	// c2 is the spare now; an older one would go.
	s.replaced[c2] = time.Now().Add(-keepReplaced)
	mustSync(t, s)
	if entries, _ := os.ReadDir(filepath.Join(cfg.Root, worktreesDir)); len(entries) != 2 {
		t.Errorf("%d checkouts on the volume, want 2 (the published one and the spare): %v", len(entries), entries)
	}
	if r := newTestSyncer(t, cfg); r.current != c3 {
		t.Errorf("a restarted syncer adopted %q, want the recycled checkout of %s", r.current, c3)
	}
}

// TestTheFirstCommitAfterAStartIsRecycled: between the first sync and the next, the sidecar checks the
// published commit out a second time as the spare, so the first new commit after a (re)start costs what
// changed as well; a restart replaces a spare it finds rather than trusting it.
func TestTheFirstCommitAfterAStartIsRecycled(t *testing.T) {
	u := newUpstream(t)
	u.Commit(map[string]string{"a.txt": "a1", "b.txt": "b"})
	cfg := testConfig(t, u.FileURL(), nil)
	s := newTestSyncer(t, cfg)
	mustSync(t, s)
	s.prepareSpare(context.Background())
	if _, err := os.Stat(filepath.Join(s.worktree(spareName), "b.txt")); err != nil {
		t.Fatalf("no spare checkout after the first sync: %v", err)
	}
	c2 := u.Commit(map[string]string{"a.txt": "a2"})
	res := mustSync(t, s)
	if res.Hash != c2 || !res.Recycled {
		t.Fatalf("first new commit = %+v: want %s written into the spare", res, c2)
	}
	if hash, content := published(t, cfg, "a.txt"); hash != c2 || content != "a2" {
		t.Errorf("published %s with a.txt %q, want %s with a2", hash, content, c2)
	}
	if _, err := os.Stat(s.worktree(spareName)); !os.IsNotExist(err) {
		t.Errorf("the spare is still there under its own name after it was used (%v)", err)
	}
	s.prepareSpare(context.Background()) // there is a replaced checkout now: nothing to do
	if _, err := os.Stat(s.worktree(spareName)); !os.IsNotExist(err) {
		t.Errorf("a second spare was made while the replaced checkout can serve (%v)", err)
	}

	// A restart: the spare it finds is not trusted (it may be half written); it is removed by the first
	// sync and made again.
	os.MkdirAll(s.worktree(spareName), 0o755)
	os.WriteFile(filepath.Join(s.worktree(spareName), "half"), []byte("x"), 0o644)
	r := newTestSyncer(t, cfg)
	mustSync(t, r)
	r.prepareSpare(context.Background())
	if _, err := os.Stat(filepath.Join(r.worktree(spareName), "half")); !os.IsNotExist(err) {
		t.Errorf("the restarted sidecar kept a spare it did not make (%v)", err)
	}
	c3 := u.Commit(map[string]string{"b.txt": "b3"})
	if res := mustSync(t, r); res.Hash != c3 || !res.Recycled {
		t.Errorf("first new commit after the restart = %+v: want %s written into the new spare", res, c3)
	}
	if st := hostGit(t, r.worktree(c3), "status", "--porcelain", "--ignored"); st != "" {
		t.Errorf("git status of the recycled checkout is not clean:\n%s", st)
	}
}

// TestCommitsFasterThanKeepReplacedWaitForTheSpare: when the replaced checkout is too young to recycle but
// will be old enough before a whole checkout would finish, the sync waits for it instead.
func TestCommitsFasterThanKeepReplacedWaitForTheSpare(t *testing.T) {
	u := newUpstream(t)
	u.Commit(map[string]string{"a.txt": "a1"})
	cfg := testConfig(t, u.FileURL(), nil)
	s := newTestSyncer(t, cfg)
	mustSync(t, s)
	u.Commit(map[string]string{"a.txt": "a2"})
	mustSync(t, s) // whole: the first checkout was replaced just now
	c3 := u.Commit(map[string]string{"a.txt": "a3"})
	s.wholeCheckout = time.Hour // as on a tree far larger than this one
	if res := mustSync(t, s); res.Hash != c3 || !res.Recycled {
		t.Errorf("sync = %+v: want %s written into the first checkout once it had outlived keepReplaced", res, c3)
	}
	c4 := u.Commit(map[string]string{"a.txt": "a4"})
	s.wholeCheckout = 0 // a whole checkout is quicker than the wait
	if res := mustSync(t, s); res.Hash != c4 || res.Recycled {
		t.Errorf("sync = %+v: want %s checked out whole rather than waiting", res, c4)
	}
}

func TestBranchSwitchTagMoveAndCommitRef(t *testing.T) {
	u := newUpstream(t)
	mainOld := u.Commit(map[string]string{"f": "main-1"})
	u.Tag("v1")
	mainNew := u.Commit(map[string]string{"f": "main-2"})
	u.Branch("dev")
	devHead := u.Commit(map[string]string{"f": "dev-1"})

	root := t.TempDir()
	cfgFor := func(ref string) *Config {
		return testConfig(t, u.FileURL(), map[string]string{"GITSYNC_ROOT": root, "GITSYNC_REF": ref})
	}
	steps := []struct {
		name, ref, wantHash, wantContent string
		before                           func()
	}{
		{name: "branch main", ref: "main", wantHash: mainNew, wantContent: "main-2"},
		{name: "switch to branch dev (a restart with a new GITSYNC_REF)", ref: "dev", wantHash: devHead, wantContent: "dev-1"},
		{name: "annotated tag v1", ref: "v1", wantHash: mainOld, wantContent: "main-1"},
		{name: "tag v1 moved to dev's head", ref: "v1", before: func() { u.Tag("v1") }, wantHash: devHead, wantContent: "dev-1"},
		{name: "a commit hash that is no branch tip", ref: mainOld, wantHash: mainOld, wantContent: "main-1"},
		{name: "HEAD (the remote's default branch, main)", ref: "HEAD", wantHash: mainNew, wantContent: "main-2"},
	}
	for _, step := range steps {
		if step.before != nil {
			step.before()
		}
		cfg := cfgFor(step.ref)
		s := newTestSyncer(t, cfg) // a restart: adopts what the link points at
		mustSync(t, s)
		if hash, content := published(t, cfg, "f"); hash != step.wantHash || content != step.wantContent {
			t.Errorf("%s: published %s with f=%q, want %s with %q", step.name, hash, content, step.wantHash, step.wantContent)
		}
	}

	_, err := newTestSyncer(t, cfgFor("no-such-branch")).sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), `ref "no-such-branch" not found`) {
		t.Errorf("a missing ref: err = %v, want it to name the ref", err)
	}
}

func TestForcePushPublishesTheRewrittenHistory(t *testing.T) {
	u := newUpstream(t)
	base := u.Commit(map[string]string{"f": "base"})
	u.Commit(map[string]string{"f": "doomed"})
	cfg := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_REF": "main"})
	s := newTestSyncer(t, cfg)
	mustSync(t, s)

	u.ResetHard(base)
	rewritten := u.Commit(map[string]string{"f": "rewritten"})
	if res := mustSync(t, s); !res.Changed || res.Hash != rewritten {
		t.Fatalf("after a force-push: %+v, want %s", res, rewritten)
	}
	if _, content := published(t, cfg, "f"); content != "rewritten" {
		t.Errorf("f = %q after the force-push, want rewritten", content)
	}
}

func TestDepth(t *testing.T) {
	u := newUpstream(t)
	for i := 0; i < 5; i++ {
		u.Commit(map[string]string{"f": fmt.Sprint(i)})
	}
	for _, tc := range []struct{ depth, wantCommits string }{{"1", "1"}, {"3", "3"}, {"0", "5"}} {
		cfg := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_DEPTH": tc.depth})
		s := newTestSyncer(t, cfg)
		res := mustSync(t, s)
		if got := hostGit(t, s.worktree(res.Hash), "rev-list", "--count", "HEAD"); got != tc.wantCommits {
			t.Errorf("GITSYNC_DEPTH=%s: the checkout has %s commits of history, want %s", tc.depth, got, tc.wantCommits)
		}
	}
}

func TestWrongPasswordIsAClearError(t *testing.T) {
	u := newUpstream(t)
	u.Commit(map[string]string{"f": "x"})
	web := newHTTPServer(t, u, "alice", "right")
	passwordFile := filepath.Join(t.TempDir(), "password")
	os.WriteFile(passwordFile, []byte("wrong"), 0o600)
	cfg := testConfig(t, web.URL(), map[string]string{"GITSYNC_USERNAME": "alice", "GITSYNC_PASSWORD_FILE": passwordFile})
	_, err := newTestSyncer(t, cfg).sync(context.Background())
	if err == nil {
		t.Fatal("a sync with a wrong password succeeded")
	}
	for _, want := range []string{"authentication failed", "GITSYNC_PASSWORD_FILE", web.Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q shows the password", err)
	}
	if _, err := os.Lstat(cfg.Link); !os.IsNotExist(err) {
		t.Errorf("a link was published after a failed first sync (err %v)", err)
	}
}

// TestReadersNeverSeeAPartialTree publishes 100 commits, each changing every file, while readers resolve
// the link and read every file of the checkout it points at: each read must find all files, all of one
// commit. The swaps come keep apart, so that nearly every one is written into a recycled checkout (the
// guarantee is for readers that resolved the link less than keepReplaced before a swap: keep stands in
// for it, and a reader that took longer than keep to read its snapshot is not held to it).
func TestReadersNeverSeeAPartialTree(t *testing.T) {
	const files, swaps, keep = 100, 100, 40 * time.Millisecond
	u := newUpstream(t)
	version := func(v int) map[string]string {
		m := map[string]string{}
		for i := 0; i < files; i++ {
			m[fmt.Sprintf("d%d/f%02d", i%3, i)] = fmt.Sprintf("version %d\n", v)
		}
		return m
	}
	// Every version is written up front (one git fast-import), so that each swap costs one update-ref.
	var stream strings.Builder
	for v := 0; v <= swaps; v++ {
		fmt.Fprintf(&stream, "commit refs/heads/all\ncommitter T <t@example.invalid> %d +0000\ndata 2\nv\n", 1700000000+v)
		for name, content := range version(v) {
			fmt.Fprintf(&stream, "M 100644 inline %s\ndata %d\n%s\n", name, len(content), content)
		}
	}
	importer := exec.Command("git", "fast-import", "--quiet")
	importer.Dir, importer.Stdin = u.Bare, strings.NewReader(stream.String())
	if out, err := importer.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	publish := func(v int) string {
		hash := hostGit(t, u.Bare, "rev-parse", fmt.Sprintf("all~%d", swaps-v))
		hostGit(t, u.Bare, "update-ref", "refs/heads/main", hash)
		return hash
	}
	publish(0)
	cfg := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_REF": "main"})
	s := newTestSyncer(t, cfg)
	s.keep = keep
	mustSync(t, s)
	s.prepareSpare(context.Background())

	var stop atomic.Bool
	var reads, late atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				start := time.Now()
				err := readSnapshot(cfg.Link, files)
				if time.Since(start) >= keep {
					late.Add(1) // descheduled past the window: what it saw proves nothing either way
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
				time.Sleep(200 * time.Microsecond) // leave the CPUs to git: readers are not the load under test
			}
		}()
	}
	recycled := 0
	for v := 1; v <= swaps; v++ {
		hash := publish(v)
		res, err := s.sync(context.Background())
		if err != nil || res.Hash != hash {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("swap %d: %+v, %v", v, res, err)
		}
		if res.Recycled {
			recycled++
		}
		time.Sleep(keep)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, content := published(t, cfg, "d0/f00"); content != fmt.Sprintf("version %d\n", swaps) {
		t.Errorf("after %d swaps the link shows %q", swaps, content)
	}
	if recycled < swaps*9/10 {
		t.Errorf("only %d of %d swaps were written into a recycled checkout", recycled, swaps)
	}
	t.Logf("%d consistent reads across %d swaps (%d into recycled checkouts); %d reads took longer than %s", reads.Load(), swaps, recycled, late.Load(), keep)
}

// readSnapshot resolves the link once and reads every file of that checkout.
func readSnapshot(link string, files int) error {
	target, err := os.Readlink(link)
	if err != nil {
		return fmt.Errorf("the link is missing: %v", err)
	}
	dir := filepath.Join(filepath.Dir(link), target)
	want := ""
	for i := 0; i < files; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("d%d/f%02d", i%3, i)))
		if err != nil {
			return fmt.Errorf("partial tree %s: %v", target, err)
		}
		if want == "" {
			want = string(b)
		} else if string(b) != want {
			return fmt.Errorf("mixed tree %s: %q and %q", target, want, b)
		}
	}
	return nil
}

func TestRestartResumesThePublishedCheckout(t *testing.T) {
	u := newUpstream(t)
	hash := u.Commit(map[string]string{"f": "x"})
	cfg := testConfig(t, u.FileURL(), nil)
	mustSync(t, newTestSyncer(t, cfg))
	s := newTestSyncer(t, cfg)
	if s.current != hash {
		t.Fatalf("a restarted syncer adopted %q, want %s", s.current, hash)
	}
	if res := mustSync(t, s); res.Changed {
		t.Errorf("a restarted syncer re-published the same commit: %+v", res)
	}
}

// A submodule is another repository, possibly another host: the sidecar fetches it only when asked
// (GITSYNC_SUBMODULES=shallow or recursive). By default the published checkout has the submodule's
// directory and nothing in it.
func TestSubmodulesAreOptIn(t *testing.T) {
	sub := newUpstream(t)
	sub.Commit(map[string]string{"lib.txt": "from the submodule"})
	subServer := newHTTPServer(t, sub, "", "")
	main := newUpstream(t)
	main.Commit(map[string]string{"index.html": "site"})
	hostGit(t, main.Work, "submodule", "add", "-q", subServer.URL(), "lib")
	main.Commit(nil)

	for _, tc := range []struct{ setting, want string }{{"", ""}, {"shallow", "from the submodule"}, {"recursive", "from the submodule"}} {
		env := map[string]string{}
		if tc.setting != "" {
			env["GITSYNC_SUBMODULES"] = tc.setting
		}
		cfg := testConfig(t, main.FileURL(), env)
		mustSync(t, newTestSyncer(t, cfg))
		if _, got := published(t, cfg, "lib/lib.txt"); got != tc.want {
			t.Errorf("GITSYNC_SUBMODULES=%q: lib/lib.txt is %q, want %q", tc.setting, got, tc.want)
		}
		if _, site := published(t, cfg, "index.html"); site != "site" {
			t.Errorf("GITSYNC_SUBMODULES=%q: index.html is %q", tc.setting, site)
		}
	}
}
