package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGitSyncFollowsTheRepository injects git-sync into a pod and shows the app reading the repository's
// files from the shared volume, then a new commit arriving there. The repository is a bare repository on the
// host, served over git's "dumb HTTP" protocol by a second pod (the test app serving a hostPath volume)
// behind a Service, which git-sync reaches by its DNS name.
func TestGitSyncFollowsTheRepository(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "site"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	repo := newRepository(t, "v1\n")
	cs := env.cluster.Client().CoreV1().Pods(ns)

	repoURL := serveRepository(t, ns, repo)
	defer dumpPod(t, ns, "git-server")

	site := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "site", Annotations: map[string]string{
			"outrigger.dev/inject":        "git-sync",
			"git-sync.outrigger.dev/repo": repoURL,
			"git-sync.outrigger.dev/link": "current",
			// Dumb HTTP cannot serve shallow fetches.
			"git-sync.outrigger.dev/depth":  "0",
			"git-sync.outrigger.dev/period": "1s",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever,
			// The injector mounts the synced volume read-only at /git in the app.
			Args: []string{"-listen=:8000", "-name=site", "-files=/git"},
		}}},
	}
	defer dumpPod(t, ns, "site")
	created := time.Now()
	if _, err := cs.Create(ctx, site, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := waitPod(t, ns, "site", 2*time.Minute, podRunning)
	t.Logf("timing: git-sync pod created → Running %s (the app waits for the first sync)", running.Sub(created).Round(time.Millisecond))
	page := "http://" + net.JoinHostPort(podIP(t, ns, "site"), "8000") + "/files/current/index.txt"
	// The app started after git-sync's startup probe (ready after the first sync): the files are there.
	if got := get(t, nil, page); got != "v1\n" {
		t.Fatalf("the app reads %q from the synced checkout, want the first commit's %q", got, "v1\n")
	}

	repo.commit(t, "v2\n")
	pushed := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get(page)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			if string(body) == "v2\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app still does not read the second commit a minute after it was pushed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("timing: a pushed commit reached the app's volume in %s (period 1s)", time.Since(pushed).Round(time.Millisecond))
}

// repository is a bare repository on the host, served over dumb HTTP, and a work tree that pushes to it.
type repository struct{ work, bare string }

func newRepository(t *testing.T, content string) *repository {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git not found: run `make deps`")
	}
	// Under the run's directory, not t.TempDir: the pod outlives the test until the node's teardown, and
	// git-sync exits when its repository disappears.
	dir, err := os.MkdirTemp(env.dir, "repo-")
	if err != nil {
		t.Fatal(err)
	}
	// The pods read the repository as UID 65532 through a hostPath volume.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &repository{work: filepath.Join(dir, "work"), bare: filepath.Join(dir, "srv", "site.git")}
	git(t, dir, "init", "-q", "--bare", "-b", "main", r.bare)
	git(t, dir, "init", "-q", "-b", "main", r.work)
	r.commit(t, content)
	return r
}

// commit writes index.txt with content, commits and pushes it (commitFile).
func (r *repository) commit(t *testing.T, content string) {
	t.Helper()
	r.commitFile(t, "index.txt", content)
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
