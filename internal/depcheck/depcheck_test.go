package depcheck

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/outrigger-dev/outrigger"

type pkg struct {
	ImportPath  string
	Name        string
	Imports     []string
	TestImports []string
	Deps        []string
}

// list runs `go list -json` on patterns from the repository root (Deps lists every package linked).
func list(t *testing.T, patterns ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, patterns...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go list: %v\n%s", err, exit.Stderr)
		}
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %v matched nothing", patterns)
	}
	return pkgs
}

// A sidecar is its own small image: it never links the injector.
func TestNoSidecarImportsTheWebhook(t *testing.T) {
	for _, p := range list(t, "./sidecars/...") {
		for _, dep := range p.Deps {
			if strings.HasPrefix(dep, module+"/webhook") {
				t.Errorf("%s depends on %s: a sidecar must not link the injector", p.ImportPath, dep)
			}
		}
	}
}

// What users run links neither the test harness nor the testing package.
func TestNoProductionBinaryLinksTestCode(t *testing.T) {
	mains := 0
	for _, p := range list(t, "./cmd/...", "./sidecars/...") {
		if p.Name != "main" {
			continue
		}
		mains++
		for _, dep := range p.Deps {
			if dep == "testing" || strings.HasPrefix(dep, module+"/e2e") || strings.HasPrefix(dep, module+"/bench") {
				t.Errorf("binary %s links %s", p.ImportPath, dep)
			}
		}
	}
	if mains < 7 {
		t.Errorf("found %d production mains (cmd/outrigger, cmd/outrigger-webhook and five sidecars expected)", mains)
	}
}

// internal/ is the floor every other part builds on: it imports nothing of the module above it, so a
// sidecar linking internal/ links no injector, CLI or test harness through it.
func TestInternalImportsNothingAboveIt(t *testing.T) {
	for _, p := range list(t, "./internal/...") {
		for _, imp := range append(append([]string{}, p.Imports...), p.TestImports...) {
			if strings.HasPrefix(imp, module+"/") && !strings.HasPrefix(imp, module+"/internal/") {
				t.Errorf("%s imports %s: internal/ must import only internal/ of this module", p.ImportPath, imp)
			}
		}
	}
}

// The local cluster (e2e/cluster) is a library for make demo, make cluster and the benchmarks as well as
// for tests: it and those mains link no testing (its testing.TB helpers are e2e/cluster/clustertest).
func TestTheClusterLibraryLinksNoTesting(t *testing.T) {
	mains := 0
	for _, p := range list(t, "./e2e/...", "./bench/...") {
		if p.Name != "main" && p.ImportPath != module+"/e2e/cluster" {
			continue
		}
		mains++
		if slices.Contains(p.Deps, "testing") {
			t.Errorf("%s links testing", p.ImportPath)
		}
	}
	if mains < 5 {
		t.Errorf("found %d mains and libraries to check, want the cluster library, make demo's, make cluster's and the benchmarks'", mains)
	}
}

// Certificates are made in two places only: webhook/certs (the rotator users run) and internal/testpki
// (every test's and the local cluster's), so that no test grows a PKI of its own again.
func TestCertificatesAreMadeInTwoPlaces(t *testing.T) {
	allowed := map[string]bool{"webhook/certs/pki.go": true, "internal/testpki/testpki.go": true}
	needle := "x509." + "CreateCertificate(" // split, so that this file does not match itself
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "_output" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel("../..", path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), needle) && !allowed[filepath.ToSlash(rel)] {
			t.Errorf("%s creates certificates: use internal/testpki", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
