package images

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/internal/testpki"
	"github.com/outrigger-dev/outrigger/webhook/catalog"
)

// TestEachSidecarImageStartsAsInAPod runs each sidecar image the way the injector has the kubelet run it:
// the catalog's UID and GID, a read-only root filesystem, every capability dropped, no privilege
// escalation, the shared volume as a writable mount and nothing else writable, and the smallest
// configuration that lets it work (a TLS Secret's files, a ConfigMap directory, a file:// repository, a
// shard address). The probe the kubelet waits on before it starts the app (the startup probe, else the
// readiness probe) and the liveness probe must both pass on the status port, as the catalog declares
// them: an image that could only print --help would fail here.
func TestEachSidecarImageStartsAsInAPod(t *testing.T) {
	if os.Getenv("OUTRIGGER_IMAGES") == "" {
		t.Skip("run through `make test-images`, which builds the images first")
	}
	version := os.Getenv("OUTRIGGER_VERSION")
	entries, err := catalog.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	// https-proxy: a kubernetes.io/tls Secret's files, readable as the kubelet makes them (0644).
	ca, err := testpki.NewCA("image test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.ServingCert(time.Time{}, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	if err := leaf.WriteFiles(tlsDir, ca); err != nil {
		t.Fatal(err)
	}
	// config-sync: a mounted ConfigMap directory (volume mode).
	sourceDir := filepath.Join(dir, "config-source")
	os.MkdirAll(sourceDir, 0o755)
	os.WriteFile(filepath.Join(sourceDir, "app.conf"), []byte("greeting=hello\n"), 0o644)
	// git-sync: a bare repository with one commit, reached as file://.
	repo := filepath.Join(dir, "repo", "site.git")
	work := filepath.Join(dir, "work")
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", repo}, {"init", "-q", "-b", "main", work},
		{"-C", work, "-c", "user.name=t", "-c", "user.email=t@example", "commit", "-q", "--allow-empty", "-m", "one"},
		{"-C", work, "push", "-q", repo, "main"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	// Readable by the sidecars' own UIDs, as the kubelet makes a Secret's or ConfigMap's files (0644).
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			mode := info.Mode().Perm() | 0o444
			if info.IsDir() {
				mode |= 0o111
			}
			os.Chmod(p, mode)
		}
		return nil
	})

	run := map[string][]string{
		"https-proxy":      {"-v", tlsDir + ":/etc/https-proxy/tls:ro"},
		"topz":             nil,
		"config-sync":      {"-v", sourceDir + ":/etc/config-source:ro", "--tmpfs", "/etc/config", "-e", "SOURCE_DIR=/etc/config-source"},
		"git-sync":         {"-v", filepath.Dir(repo) + ":/repo:ro", "--tmpfs", "/git", "-e", "GITSYNC_REPO=file:///repo/site.git"},
		"shard-ambassador": {"-e", "SHARDS=127.0.0.1:6379:1"},
	}
	for _, e := range entries {
		t.Run(e.Name, func(t *testing.T) {
			extra, ok := run[e.Name]
			if !ok {
				t.Fatalf("no run configuration for %s: add one", e.Name)
			}
			sc := e.Container.SecurityContext
			gate := e.Container.StartupProbe
			if gate == nil {
				gate = e.Container.ReadinessProbe
			}
			live := e.Container.LivenessProbe
			if sc == nil || sc.RunAsUser == nil || gate == nil || gate.HTTPGet == nil || live == nil || live.HTTPGet == nil {
				t.Fatalf("%s's catalog entry lacks a UID or HTTP probes", e.Name)
			}
			if gate.HTTPGet.Port != live.HTTPGet.Port {
				t.Fatalf("the probes use two ports, %v and %v", gate.HTTPGet.Port, live.HTTPGet.Port)
			}
			hostPort := freePort(t)
			name := fmt.Sprintf("outrigger-image-test-%s-%d", e.Name, hostPort)
			args := []string{"run", "-d", "--name", name, "--pull=never", "--read-only", "--read-only-tmpfs=false",
				"--user", fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsGroup), "--cap-drop=ALL", "--security-opt=no-new-privileges",
				"-p", fmt.Sprintf("127.0.0.1:%d:%d", hostPort, gate.HTTPGet.Port.IntValue())}
			args = append(append(args, extra...), "localhost/outrigger/"+e.Name+":"+version)
			if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
				t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			defer func() {
				if t.Failed() {
					logs, _ := exec.Command("podman", "logs", name).CombinedOutput()
					t.Logf("%s's logs:\n%s", e.Name, logs)
				}
				exec.Command("podman", "rm", "-f", name).Run()
			}()
			for _, probe := range []*corev1.Probe{gate, live} {
				url := fmt.Sprintf("http://127.0.0.1:%d%s", hostPort, probe.HTTPGet.Path)
				var last string
				deadline := time.Now().Add(60 * time.Second) // a safety net, not a timing assertion
				for {
					resp, err := http.Get(url)
					if err == nil {
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
						last = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(body)))
					} else {
						last = err.Error()
					}
					if out, _ := exec.Command("podman", "inspect", "--format", "{{.State.Running}}", name).Output(); strings.TrimSpace(string(out)) != "true" {
						t.Fatalf("the container exited before %s answered 200 (last: %s)", probe.HTTPGet.Path, last)
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s never answered 200: %s", url, last)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			t.Logf("result: %s runs as %d:%d, read-only, no capabilities; %s and %s answer 200", e.Name, *sc.RunAsUser, *sc.RunAsGroup, gate.HTTPGet.Path, live.HTTPGet.Path)
		})
	}
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
