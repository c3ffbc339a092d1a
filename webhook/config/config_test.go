package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNamesEveryProblem(t *testing.T) {
	_, err := Parse([]byte("defaults: [topz, git-sync, nonesuch]\nsidecarMode: sidecar\nexcludedNamespaces: [Bad_NS]\nimages: {pullPolicy: Sometimes, overrides: {nope: x}}\n"), "")
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`defaults[1] "git-sync": it needs the parameter repo`,
		`defaults[2] "nonesuch": not a sidecar; accepted: config-sync, git-sync, https-proxy, shard-ambassador, topz`,
		`sidecarMode "sidecar": want native or containers`,
		`excludedNamespaces[0] "Bad_NS"`,
		`images.pullPolicy "Sometimes": want Always, IfNotPresent or Never`,
		`images.overrides: "nope" is not a sidecar`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestUnknownKeyIsNamed(t *testing.T) {
	if _, err := Parse([]byte("default: [topz]\n"), ""); err == nil || !strings.Contains(err.Error(), `unknown field "default"`) {
		t.Fatalf("err = %v, want the unknown key named", err)
	}
}

func TestExcludedAndImages(t *testing.T) {
	c, err := Parse([]byte("excludedNamespaces: [legacy]\nimages: {registry: reg.local/o/, tag: \"2\", overrides: {topz: pinned/topz@sha256:abc}}\n"), "outrigger-system")
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"kube-system": true, "kube-public": true, "outrigger-system": true, "legacy": true, "shop": false} {
		if got, _ := c.Excluded(ns); got != want {
			t.Errorf("Excluded(%s) = %v, want %v", ns, got, want)
		}
	}
	gs, _ := c.Catalog.Get("git-sync")
	tz, _ := c.Catalog.Get("topz")
	if got := c.Image(gs); got != "reg.local/o/git-sync:2" {
		t.Errorf("git-sync image %q", got)
	}
	if got := c.Image(tz); got != "pinned/topz@sha256:abc" {
		t.Errorf("topz image %q", got)
	}
	if a, b := c.CatalogHash([]string{"topz", "git-sync"}), c.CatalogHash([]string{"git-sync", "topz"}); a != b || !strings.HasPrefix(a, "sha256:") {
		t.Errorf("catalog hash depends on order or has no prefix: %s %s", a, b)
	}
}

// TestStoreKeepsTheLastGoodConfig: a bad file is refused and the previous config stays in force.
func TestStoreKeepsTheLastGoodConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("defaults: [topz]\n")
	s, err := NewStore(path, "")
	if err != nil {
		t.Fatal(err)
	}
	var reloads []error
	s.OnReload = func(err error) { reloads = append(reloads, err) }
	if err := s.Reload(); err != nil || len(reloads) != 0 {
		t.Fatalf("reloading an unchanged file: err %v, %d reload callbacks (want none)", err, len(reloads))
	}
	write("defaults: [nonesuch]\n")
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "nonesuch") {
		t.Fatalf("bad file: err = %v", err)
	}
	if got := s.Current().Defaults; len(got) != 1 || got[0] != "topz" {
		t.Fatalf("after a bad reload the defaults are %v, want the last good [topz]", got)
	}
	write("defaults: []\n")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(s.Current().Defaults) != 0 || len(reloads) != 2 || reloads[0] == nil || reloads[1] != nil {
		t.Fatalf("defaults %v, reload callbacks %v", s.Current().Defaults, reloads)
	}
	os.Remove(path)
	if err := s.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestResourcesAreCheckedAndBecomeTheDefaults(t *testing.T) {
	_, err := Parse([]byte("resources:\n  tpoz: {requests: {cpu: 1m}}\n  topz: {requests: {gpu: \"1\", memory: 64Mi}}\n  git-sync: {requests: {memory: 64Mi}, limits: {memory: 32Mi}}\n"), "")
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`resources: "tpoz" is not a sidecar; accepted: config-sync`,
		`resources.topz.requests.gpu: unknown resource; accepted: cpu, memory, ephemeral-storage`,
		`resources.git-sync: memory limit 32Mi (resources.git-sync.limits.memory in the config, or the catalog's) is below its request 64Mi`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	c, err := Parse([]byte("resources:\n  topz: {requests: {cpu: 2m}}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := c.Catalog.Get("topz")
	p, _ := e.Parameter("cpu-request")
	if q := e.Container.Resources.Requests["cpu"]; q.String() != "2m" || p.Default != "2m" || p.DefaultSource != "config resources.topz.requests.cpu" {
		t.Errorf("topz cpu request %s, parameter default %q from %q; want 2m from the config", q.String(), p.Default, p.DefaultSource)
	}
	if q := e.Container.Resources.Requests["memory"]; q.String() != "16Mi" {
		t.Errorf("the config's cpu request dropped the catalog's memory request: %s", q.String())
	}
}

func TestOrderIsChecked(t *testing.T) {
	_, err := Parse([]byte("order: {tpoz: first, topz: middle}\n"), "")
	for _, want := range []string{`order: "tpoz" is not a sidecar`, `order.topz "middle": want first or last`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	c, err := Parse([]byte("order: {https-proxy: first}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := c.Catalog.Get("https-proxy"); e.Last() {
		t.Error("the config's order did not override https-proxy's catalog order (last)")
	}
}
