package catalog

import (
	"strings"
	"testing"
)

func TestBuiltinEntriesAreValid(t *testing.T) {
	entries, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"config-sync", "git-sync", "https-proxy", "shard-ambassador", "topz"}
	c, err := New(entries...)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != strings.Join(want, ",") {
		t.Fatalf("built-in names = %s, want %s", got, strings.Join(want, ","))
	}
}

func TestParameterNames(t *testing.T) {
	entries, _ := Builtin()
	c, _ := New(entries...)
	for _, tc := range []struct{ entry, param, env string }{
		{"https-proxy", "proxy-port", "PROXY_PORT"},
		{"git-sync", "repo", "GITSYNC_REPO"},
		{"shard-ambassador", "shards", "SHARDS"},
		{"topz", "addr", "TOPZ_ADDR"},
	} {
		e, _ := c.Get(tc.entry)
		p, ok := e.Parameter(tc.param)
		if !ok || p.Env != tc.env {
			t.Errorf("%s.%s: got %+v, want env %s", tc.entry, tc.param, p, tc.env)
		}
	}
}

func TestValidateNamesTheFieldAndWhatIsAccepted(t *testing.T) {
	bad := Entry{Name: "Bad_Name", Parameters: []Parameter{
		{Env: "PORT", Type: "port", Default: "99999"},
		{Env: "MODE", Type: "colour"},
		{Name: "secret", Sets: "volumes.nope.secretName", Type: "object-name"},
	}, Pod: PodNeeds{ShareProcessNamespace: "sometimes"}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`name "Bad_Name": want a DNS label`,
		"image: must be set",
		`parameters[0] (port): default "99999": want a port number from 1 to 65535`,
		`parameters[1] (mode): type "colour": want one of`,
		`no volume named nope`,
		`pod.shareProcessNamespace "sometimes"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestSharesProcessNamespace(t *testing.T) {
	entries, _ := Builtin()
	c, _ := New(entries...)
	cs, _ := c.Get("config-sync")
	if cs.SharesProcessNamespace(map[string]string{"configmap": "app"}) {
		t.Error("config-sync without reload-process should not share the PID namespace")
	}
	if !cs.SharesProcessNamespace(map[string]string{"reload-process": "nginx"}) {
		t.Error("config-sync with reload-process should share the PID namespace")
	}
	tz, _ := c.Get("topz")
	if !tz.SharesProcessNamespace(nil) {
		t.Error("topz always shares the PID namespace")
	}
}

func TestDurationBounds(t *testing.T) {
	p := Parameter{Env: "X", Type: "duration", Min: "10ms", Max: "10s"}
	for value, ok := range map[string]bool{"200ms": true, "10s": true, "5ms": false, "11s": false, "soon": false} {
		if err := p.Check(value); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok=%v", value, err, ok)
		}
	}
	if err := p.Check("11s"); err == nil || !strings.Contains(err.Error(), "from 10ms to 10s") {
		t.Errorf("error %v does not say the bounds", err)
	}
}

// TestEachSidecarHasAUIDOfItsOwn: the kernel lets a process read another's /proc/<pid>/root and environ
// only when both run as the same UID (or it has CAP_SYS_PTRACE). topz and config-sync share the pod's PID
// namespace, so a sidecar running as a UID an app commonly uses, or as another sidecar's, would hand that
// app its TLS key, git credentials or token.
func TestEachSidecarHasAUIDOfItsOwn(t *testing.T) {
	// root, nginx, redis, www-data, the usual first user, bitnami's, distroless's nonroot, nobody.
	common := map[int64]string{0: "root", 101: "nginx", 999: "redis", 33: "www-data", 1000: "the first user",
		1001: "bitnami's images", 65532: "distroless's nonroot", 65534: "nobody"}
	entries, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]string{}
	for _, e := range entries {
		sc := e.Container.SecurityContext
		if sc == nil || sc.RunAsUser == nil || sc.RunAsGroup == nil {
			t.Errorf("%s: no runAsUser/runAsGroup", e.Name)
			continue
		}
		for _, id := range []int64{*sc.RunAsUser, *sc.RunAsGroup} {
			if who, ok := common[id]; ok {
				t.Errorf("%s runs as %d, the ID of %s", e.Name, id, who)
			}
		}
		if other, ok := seen[*sc.RunAsUser]; ok && other != e.Name {
			t.Errorf("%s and %s share UID %d", e.Name, other, *sc.RunAsUser)
		}
		seen[*sc.RunAsUser] = e.Name
	}
}
