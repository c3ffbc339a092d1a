package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// These tests run config-sync against a real kube-apiserver and etcd (e2e/cluster, binaries from
// `make tools`): no fake client.

// apiEnv is one test's namespace and admin client.
type apiEnv struct {
	c      *cluster.Cluster
	client kubernetes.Interface
	ns     string
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	c := sharedCluster(t)
	ns := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(t.Name(), "Test"), "/", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	clustertest.CreateNamespace(t, c, ns, nil, nil)
	return &apiEnv{c: c, client: c.Client(), ns: ns}
}

func (e *apiEnv) putConfigMap(t *testing.T, name string, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Data: data}
	cur, err := e.client.CoreV1().ConfigMaps(e.ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		cur.Data = data
		_, err = e.client.CoreV1().ConfigMaps(e.ns).Update(ctx, cur, metav1.UpdateOptions{})
	} else {
		_, err = e.client.CoreV1().ConfigMaps(e.ns).Create(ctx, cm, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("writing ConfigMap %s/%s: %v", e.ns, name, err)
	}
}

// serviceAccount is the user a pod's service account "app" authenticates as; RBAC decides as for a pod.
func (e *apiEnv) serviceAccount() (string, []string) {
	return "system:serviceaccount:" + e.ns + ":app", []string{"system:serviceaccounts", "system:serviceaccounts:" + e.ns, "system:authenticated"}
}

// grant gives the service account "app" verbs on resources (restricted to names when given).
func (e *apiEnv) grant(t *testing.T, role string, verbs, resources, names []string) {
	t.Helper()
	ctx := context.Background()
	r := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: role, Namespace: e.ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: resources, Verbs: verbs, ResourceNames: names}}}
	if _, err := e.client.RbacV1().Roles(e.ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role, Namespace: e.ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "app", Namespace: e.ns}}}
	if _, err := e.client.RbacV1().RoleBindings(e.ns).Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// fileIs waits until path holds want.
func fileIs(t *testing.T, s *sidecar, path, want string) {
	t.Helper()
	eventually(t, 30*time.Second, func() (bool, string) {
		got := readFile(t, path)
		if len(got) > 80 {
			got = got[:80] + "..."
		}
		return got == want || (len(want) > 80 && readFile(t, path) == want), fmt.Sprintf("%s holds %q\nlogs:\n%s", path, got, s.logs)
	})
}

// bigVersion is two equal keys of 300 KB each: a reader can tell a torn or mixed read.
func bigVersion(n int) map[string]string {
	v := strings.Repeat(fmt.Sprintf("version %06d\n", n), 20000)
	return map[string]string{"a": v, "b": v}
}

// TestAPIAtomicUpdatesAndOneSIGHUPPerBurst: a ConfigMap is created and updated in bursts while readers
// read the files thousands of times; no read sees a torn file or two versions, a real process gets exactly
// one SIGHUP per burst (none for the first write, none for an update that changes no key).
func TestAPIAtomicUpdatesAndOneSIGHUPPerBurst(t *testing.T) {
	e := newAPIEnv(t)
	e.putConfigMap(t, "app", bigVersion(0))
	app := startHUPApp(t)
	target := filepath.Join(t.TempDir(), "config")
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "app", "NAMESPACE": e.ns, "TARGET_DIR": target,
		"RELOAD_PROCESS": app.name, "DEBOUNCE": "2s"}) // long: on a loaded 2-core box one update can take a second
	cfg.restConfig = e.c.RESTConfig()
	s := start(t, cfg)
	s.waitReady(t)
	if got := readFile(t, filepath.Join(target, "a")); got != bigVersion(0)["a"] {
		t.Fatalf("a holds %d bytes, want version 0", len(got))
	}

	stop := make(chan struct{})
	var pairReads, fileReads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- readWholeFiles(target, stop, &fileReads) }()
	go func() { defer wg.Done(); errs <- readConsistentPairs(target, stop, &pairReads) }()

	version := 0
	for burst := 1; burst <= 2; burst++ {
		for i := 0; i < 5; i++ {
			version++
			e.putConfigMap(t, "app", bigVersion(version))
		}
		fileIs(t, s, filepath.Join(target, "b"), bigVersion(version)["b"])
		eventually(t, 30*time.Second, func() (bool, string) {
			return app.hups() == burst, fmt.Sprintf("after burst %d the app got %d SIGHUPs", burst, app.hups())
		})
		time.Sleep(cfg.Debounce + 500*time.Millisecond) // a second SIGHUP for the same burst would arrive by now
		if n := app.hups(); n != burst {
			t.Fatalf("after burst %d (5 updates) the app got %d SIGHUPs in all, want exactly %d", burst, n, burst)
		}
	}
	// Keep updating while the readers reach thousands of reads.
	for pairReads.Load() < 1000 || fileReads.Load() < 2000 {
		version++
		e.putConfigMap(t, "app", bigVersion(version))
		time.Sleep(5 * time.Millisecond)
		if len(errs) > 0 {
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d updates; %d pair reads and %d file reads saw no torn or mixed state", version, pairReads.Load(), fileReads.Load())
	fileIs(t, s, filepath.Join(target, "a"), bigVersion(version)["a"])

	// An update that changes no key (a label) writes nothing and signals nobody.
	eventually(t, 30*time.Second, func() (bool, string) {
		return s.metric(t, `config_sync_reloads_total{method="signal",result="ok"}`) >= 2, "reload metric not counted"
	})
	// The last updates' reload may still be waiting out its debounce (slow under -race): let it fire before
	// counting, so that it is not taken for the label-only update's.
	time.Sleep(cfg.Debounce + 500*time.Millisecond)
	hups := app.hups()
	dataBefore, _ := os.Readlink(filepath.Join(target, "..data"))
	unchanged := s.metric(t, `config_sync_syncs_total{result="unchanged"}`)
	cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(context.Background(), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Labels = map[string]string{"touched": "yes"}
	if _, err := e.client.CoreV1().ConfigMaps(e.ns).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		return s.metric(t, `config_sync_syncs_total{result="unchanged"}`) > unchanged, "the label-only update was not seen"
	})
	time.Sleep(cfg.Debounce + 500*time.Millisecond)
	if dataAfter, _ := os.Readlink(filepath.Join(target, "..data")); dataAfter != dataBefore || app.hups() != hups {
		t.Errorf("a label-only update rewrote the files (..data %s -> %s) or signalled (%d -> %d SIGHUPs)", dataBefore, dataAfter, hups, app.hups())
	}
}

// TestAPIHTTPReloadWithSecret follows a ConfigMap and a Secret together and calls an HTTP hook that fails
// twice before it answers 2xx.
func TestAPIHTTPReloadWithSecret(t *testing.T) {
	e := newAPIEnv(t)
	e.putConfigMap(t, "web", map[string]string{"web.conf": "listen 80\n"})
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Namespace: e.ns}, Data: map[string][]byte{"tls.key": []byte("KEY-1")}}
	if _, err := e.client.CoreV1().Secrets(e.ns).Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hook := newFlakyHook(t, 2)
	target := t.TempDir()
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "web", "SECRET": "web-tls", "NAMESPACE": e.ns, "TARGET_DIR": target,
		"RELOAD_URL": hook.url, "DEBOUNCE": "0s"})
	cfg.restConfig = e.c.RESTConfig()
	s := start(t, cfg)
	s.waitReady(t)
	if got := readFile(t, filepath.Join(target, "tls.key")); got != "KEY-1" {
		t.Fatalf("tls.key = %q", got)
	}
	sec.Data["tls.key"] = []byte("KEY-2")
	if _, err := e.client.CoreV1().Secrets(e.ns).Update(context.Background(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	fileIs(t, s, filepath.Join(target, "tls.key"), "KEY-2")
	if got := readFile(t, filepath.Join(target, "web.conf")); got != "listen 80\n" {
		t.Errorf("web.conf = %q after the Secret changed", got)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		return hook.calls.Load() == 3 && s.metric(t, `config_sync_reloads_total{method="http",result="ok"}`) == 1,
			fmt.Sprintf("hook called %d times, want 3 (two 503s, then 200)", hook.calls.Load())
	})
}

// TestAPIRBACDeniedThenGranted: without permission config-sync logs what to grant, stays not ready and
// keeps running; once a Role restricted to the ConfigMap's name is bound, it syncs and follows changes
// through the watch (UPDATE_FREQUENCY is long, so polling cannot be what delivers them).
func TestAPIRBACDeniedThenGranted(t *testing.T) {
	e := newAPIEnv(t)
	e.putConfigMap(t, "app", map[string]string{"app.conf": "v1"})
	target := t.TempDir()
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "app", "NAMESPACE": e.ns, "TARGET_DIR": target, "UPDATE_FREQUENCY": "600"})
	user, groups := e.serviceAccount()
	cfg.restConfig = e.c.Impersonate(user, groups...)
	s := start(t, cfg)
	eventually(t, 30*time.Second, func() (bool, string) {
		logs := s.logs.String()
		return strings.Contains(logs, "permission denied: grant the pod's service account get, list and watch on configmaps") &&
			strings.Contains(logs, "forbidden"), "no clear RBAC log line yet:\n" + logs
	})
	code, body := s.get(t, "/readyz")
	if code != 503 || !strings.Contains(body, "permission denied") {
		t.Errorf("/readyz = %d %q, want 503 naming the permission problem", code, body)
	}
	if s.metric(t, `config_sync_errors_total{reason="forbidden"}`) < 1 {
		t.Errorf("config_sync_errors_total{reason=\"forbidden\"} not counted")
	}
	s.running(t)

	e.grant(t, "config-sync", []string{"get", "list", "watch"}, []string{"configmaps"}, []string{"app"})
	s.waitReady(t)
	fileIs(t, s, filepath.Join(target, "app.conf"), "v1")
	e.putConfigMap(t, "app", map[string]string{"app.conf": "v2"})
	fileIs(t, s, filepath.Join(target, "app.conf"), "v2")
}

// TestAPIPollsWhenOnlyGetIsAllowed: RBAC grants get but not list/watch, so no watch can be held; the
// ConfigMap is polled every UPDATE_FREQUENCY instead.
func TestAPIPollsWhenOnlyGetIsAllowed(t *testing.T) {
	e := newAPIEnv(t)
	e.putConfigMap(t, "app", map[string]string{"app.conf": "v1"})
	e.grant(t, "get-only", []string{"get"}, []string{"configmaps"}, nil)
	target := t.TempDir()
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "app", "NAMESPACE": e.ns, "TARGET_DIR": target, "UPDATE_FREQUENCY": "1"})
	user, groups := e.serviceAccount()
	cfg.restConfig = e.c.Impersonate(user, groups...)
	s := start(t, cfg)
	s.waitReady(t)
	fileIs(t, s, filepath.Join(target, "app.conf"), "v1")
	e.putConfigMap(t, "app", map[string]string{"app.conf": "v2"})
	fileIs(t, s, filepath.Join(target, "app.conf"), "v2")
}

// TestAPIConfigMapDeletedKeepsLastGood: deleting the ConfigMap leaves the files as they were and reports
// the error (log, errors metric, source_healthy 0); /readyz stays ready (the app runs on the last good
// files). Creating it again syncs and signals.
func TestAPIConfigMapDeletedKeepsLastGood(t *testing.T) {
	e := newAPIEnv(t)
	e.putConfigMap(t, "app", map[string]string{"app.conf": "good"})
	app := startHUPApp(t)
	target := t.TempDir()
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "app", "NAMESPACE": e.ns, "TARGET_DIR": target,
		"RELOAD_PROCESS": app.name, "DEBOUNCE": "0s"})
	cfg.restConfig = e.c.RESTConfig()
	s := start(t, cfg)
	s.waitReady(t)
	if err := e.client.CoreV1().ConfigMaps(e.ns).Delete(context.Background(), "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(s.logs.String(), "keeping the last written configuration") &&
			strings.Contains(s.logs.String(), "ConfigMap "+e.ns+"/app not found") &&
			s.metric(t, `config_sync_errors_total{reason="missing"}`) >= 1 &&
			s.metric(t, "config_sync_source_healthy") == 0, "the deletion was not reported:\n" + s.logs.String()
	})
	if got := readFile(t, filepath.Join(target, "app.conf")); got != "good" {
		t.Errorf("after the deletion app.conf = %q, want the last good %q", got, "good")
	}
	if code, _ := s.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d after the deletion, want 200 (the last good files are in place)", code)
	}
	if app.hups() != 0 {
		t.Errorf("the deletion signalled the app")
	}
	e.putConfigMap(t, "app", map[string]string{"app.conf": "back"})
	fileIs(t, s, filepath.Join(target, "app.conf"), "back")
	eventually(t, 30*time.Second, func() (bool, string) {
		return app.hups() == 1 && s.metric(t, "config_sync_source_healthy") == 1, fmt.Sprintf("%d SIGHUPs after re-creation, want 1", app.hups())
	})
}

// TestAPIWatchResumesAfterAPIServerRestart: kube-apiserver is stopped and started again; an update made
// after the restart still arrives, through the resumed watch (UPDATE_FREQUENCY is too long for polling).
func TestAPIWatchResumesAfterAPIServerRestart(t *testing.T) {
	e := newAPIEnv(t)
	e.putConfigMap(t, "app", map[string]string{"app.conf": "before"})
	target := t.TempDir()
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "app", "NAMESPACE": e.ns, "TARGET_DIR": target, "UPDATE_FREQUENCY": "600"})
	cfg.restConfig = e.c.RESTConfig()
	s := start(t, cfg)
	s.waitReady(t)
	clustertest.RestartAPIServer(t, e.c)
	e.putConfigMap(t, "app", map[string]string{"app.conf": "after"})
	fileIs(t, s, filepath.Join(target, "app.conf"), "after")
	s.running(t)
}

// flakyHook is a reload endpoint that answers 503 to its first failures requests, then 200.
type flakyHook struct {
	url   string
	calls atomic.Int32
}

func newFlakyHook(t *testing.T, failures int32) *flakyHook {
	t.Helper()
	h := &flakyHook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.calls.Add(1) <= failures {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/-/reload"
	return h
}
