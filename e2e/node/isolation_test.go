package node

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestAnAppSharingThePIDNamespaceCannotReadSidecarSecrets: topz shares the pod's PID namespace, so the app
// sees the sidecars' processes. The kernel lets it read another process's /proc/<pid>/environ and reach
// its files through /proc/<pid>/root only as the same UID; each sidecar runs as a UID of its own, so an
// app running as 65532 (distroless's nonroot, the test app's) reads neither https-proxy's TLS key nor
// config-sync's service account token. The pod opts out of the token (automountServiceAccountToken:
// false): config-sync, alone, still gets one and syncs. The control pod runs its app as https-proxy's UID
// and reads the key the same way, so the test's method does reach the files when the UIDs allow it.
func TestAnAppSharingThePIDNamespaceCannotReadSidecarSecrets(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "isolation"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	createTLSSecret(t, ns, "web-tls", "web.isolation.test")
	client := env.cluster.Client()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-conf", Namespace: ns}, Data: map[string]string{"app.conf": "greeting=isolated\n"}}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "config-sync", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "outrigger-config-sync"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
	}
	if _, err := client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const key, token = "/etc/https-proxy/tls/tls.key", "/var/run/secrets/kubernetes.io/serviceaccount/token"

	pod := appPod("pry", map[string]string{
		"outrigger.dev/inject":                 "topz,https-proxy,config-sync",
		"https-proxy.outrigger.dev/tls-secret": "web-tls",
		"https-proxy.outrigger.dev/proxy-port": "8000",
		"config-sync.outrigger.dev/configmap":  "web-conf",
	}, "-listen=:8000", "-config=/etc/config/app.conf")
	pod.Spec.AutomountServiceAccountToken = ptr(false)
	// Control: the same app as https-proxy's UID (64101, its catalog entry's runAsUser).
	same := appPod("pry-same-uid", map[string]string{
		"outrigger.dev/inject":                 "topz,https-proxy",
		"https-proxy.outrigger.dev/tls-secret": "web-tls",
		"https-proxy.outrigger.dev/proxy-port": "8000",
	}, "-listen=:8000")
	same.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr(int64(64101)), RunAsGroup: ptr(int64(64101))}
	for _, p := range []*corev1.Pod{pod, same} {
		if _, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer dumpPod(t, ns, p.Name)
	}
	for _, p := range []*corev1.Pod{pod, same} {
		waitPod(t, ns, p.Name, 2*time.Minute, podReady)
	}
	pry := func(name, process, file string) string {
		return get(t, nil, "http://"+net.JoinHostPort(podIP(t, ns, name), "8000")+"/pry?process="+process+"&file="+file)
	}

	for _, c := range []struct{ process, file string }{{"https-proxy", key}, {"config-sync", token}} {
		got := pry("pry", c.process, c.file)
		t.Logf("result: the app (UID 65532) pried at %s:\n%s", c.process, got)
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if len(lines) != 3 {
			t.Fatalf("/pry answered %q, want a pid line and two results", got)
		}
		for _, line := range lines[1:] {
			if !strings.HasSuffix(line, "permission denied") {
				t.Errorf("the app read what a sidecar of another UID holds: %s", line)
			}
		}
	}
	if got := get(t, nil, "http://"+net.JoinHostPort(podIP(t, ns, "pry"), "8000")+"/config"); !strings.Contains(got, "greeting=isolated") {
		t.Errorf("config-sync did not write the ConfigMap with its own token: the app's /config says %q", got)
	}
	// The app's own way to the API server (the test app's /kube reads the service account's files).
	if resp, err := getErr(nil, "http://"+net.JoinHostPort(podIP(t, ns, "pry"), "8000")+"/kube"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("the app, in a pod with automountServiceAccountToken: false, has a service account file: %q, %v", resp, err)
	} else {
		t.Logf("result: the app has no token of its own: %v", err)
	}

	control := pry("pry-same-uid", "https-proxy", key)
	t.Logf("result: control, the app as https-proxy's UID:\n%s", control)
	if !strings.Contains(control, key+": read ") || !strings.Contains(control, "/environ: read ") {
		t.Errorf("the control app could not read what the same UID may read, so the test proves nothing: %s", control)
	}
}
