// Package images checks the images `make images` built with podman: small, static, non-root, labelled,
// and runnable with a read-only root filesystem, each sidecar started as in a pod with its probes passing
// (pod_test.go). `make test-images` builds them and runs these tests.
package images

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// maxSize is each image's size budget in bytes (from the issues).
var maxSize = map[string]int64{
	"outrigger-webhook": 40 << 20,
	"https-proxy":       15 << 20,
	"topz":              10 << 20,
	"config-sync":       20 << 20,
	"git-sync":          40 << 20, // ≤ 15 MB with go-git, ≤ 40 MB with git: see sidecars/git-sync/README.md
	"shard-ambassador":  15 << 20,
}

type inspect struct {
	Size   int64 `json:"Size"`
	Config struct {
		User   string            `json:"User"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

func TestImages(t *testing.T) {
	if os.Getenv("OUTRIGGER_IMAGES") == "" {
		t.Skip("run through `make test-images`, which builds the images first")
	}
	version := os.Getenv("OUTRIGGER_VERSION")
	for name, max := range maxSize {
		t.Run(name, func(t *testing.T) {
			ref := "localhost/outrigger/" + name + ":" + version
			out, err := exec.Command("podman", "image", "inspect", ref).Output()
			if err != nil {
				t.Fatalf("podman image inspect %s: %v (build it with make image-%s)", ref, err, name)
			}
			var infos []inspect
			if err := json.Unmarshal(out, &infos); err != nil || len(infos) != 1 {
				t.Fatalf("inspect output: %v", err)
			}
			img := infos[0]
			t.Logf("%s: %.1f MB, user %s", name, float64(img.Size)/(1<<20), img.Config.User)
			if img.Size > max {
				t.Errorf("%s is %.1f MB, over its %.0f MB budget", name, float64(img.Size)/(1<<20), float64(max)/(1<<20))
			}
			if u := strings.Split(img.Config.User, ":")[0]; u == "" || u == "0" || u == "root" {
				t.Errorf("runs as %q, want a non-root numeric user", img.Config.User)
			}
			for _, l := range []string{"title", "description", "source", "version", "licenses", "vendor", "url", "documentation"} {
				if img.Config.Labels["org.opencontainers.image."+l] == "" {
					t.Errorf("label org.opencontainers.image.%s missing", l)
				}
			}
			if v := img.Config.Labels["org.opencontainers.image.version"]; v != version {
				t.Errorf("version label %q, want %q", v, version)
			}
			if name == "git-sync" {
				checkGitVersion(t, ref, img.Config.Labels["dev.outrigger.git.version"])
			}
			// The binary starts as the image's user on a read-only root filesystem, with nothing to pull.
			cmd := exec.Command("podman", "run", "--rm", "--read-only", "--pull=never", "--network=none", ref, "--help")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("podman run %s --help: %v\n%s", ref, err, b)
			} else if !strings.Contains(string(b), "ENV") && !strings.Contains(strings.ToLower(string(b)), "usage") {
				t.Errorf("--help printed no usage:\n%s", b)
			}
		})
	}
}

// checkGitVersion: git-sync's image runs the host's git (image-context.sh copies it); its label must
// name the version the image's own git reports, so that a user can see which git a release runs.
func checkGitVersion(t *testing.T, ref, label string) {
	t.Helper()
	out, err := exec.Command("podman", "run", "--rm", "--read-only", "--pull=never", "--network=none", "--entrypoint", "/usr/bin/git", ref, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("git --version in %s: %v\n%s", ref, err, out)
	}
	fields := strings.Fields(string(out)) // "git version 2.39.5"
	if len(fields) < 3 || label == "" || label == "unknown" || fields[2] != label {
		t.Errorf("label dev.outrigger.git.version=%q, but the image's git says %q", label, strings.TrimSpace(string(out)))
	}
	t.Logf("git-sync runs git %s", label)
}
