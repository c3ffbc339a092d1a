package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/webhook/config"
)

// privilegeGained returns what injection gave submitted that annotations must never be able to give it:
// a container (sidecar) with an image the config does not name for that sidecar, privileged, added
// capabilities or privilege escalation; a volume outside the kinds the catalog uses (no hostPath, ever);
// hostNetwork, hostPID or hostIPC turned on. "" when nothing.
func privilegeGained(cfg *config.Config, submitted, injected *corev1.Pod) string {
	var gained []string
	images := map[string]string{}
	for _, name := range cfg.Catalog.Names() {
		e, _ := cfg.Catalog.Get(name)
		images[name] = cfg.Image(e)
	}
	had := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, submitted.Spec.InitContainers...), submitted.Spec.Containers...) {
		had[c.Name] = true
	}
	for _, c := range append(append([]corev1.Container{}, injected.Spec.InitContainers...), injected.Spec.Containers...) {
		if had[c.Name] {
			continue
		}
		if want, ok := images[c.Name]; !ok || c.Image != want {
			gained = append(gained, fmt.Sprintf("container %s has image %q (the config's for it: %q)", c.Name, c.Image, want))
		}
		if sc := c.SecurityContext; sc == nil {
			gained = append(gained, "container "+c.Name+" has no securityContext")
		} else {
			if sc.Privileged != nil && *sc.Privileged {
				gained = append(gained, "container "+c.Name+" is privileged")
			}
			if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
				gained = append(gained, fmt.Sprintf("container %s adds capabilities %v", c.Name, sc.Capabilities.Add))
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				gained = append(gained, "container "+c.Name+" may run as root")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				gained = append(gained, "container "+c.Name+" may escalate privileges")
			}
		}
	}
	hadVolume := map[string]bool{}
	for _, v := range submitted.Spec.Volumes {
		hadVolume[v.Name] = true
	}
	for _, v := range injected.Spec.Volumes {
		if hadVolume[v.Name] {
			continue
		}
		if v.HostPath != nil || (v.EmptyDir == nil && v.Secret == nil && v.ConfigMap == nil && v.Projected == nil && v.DownwardAPI == nil) {
			gained = append(gained, fmt.Sprintf("volume %s is not an emptyDir, secret, configMap, projected or downwardAPI volume", v.Name))
		}
	}
	if injected.Spec.HostNetwork != submitted.Spec.HostNetwork || injected.Spec.HostPID != submitted.Spec.HostPID || injected.Spec.HostIPC != submitted.Spec.HostIPC {
		gained = append(gained, "a host namespace changed")
	}
	return strings.Join(gained, "; ")
}

// Annotations that try to choose what only the catalog and the config choose. Each is refused (denied
// with the annotation named) or has no effect beyond the catalog's; none gains a privilege.
func TestNoPrivilegeThroughAnnotations(t *testing.T) {
	h := testInjector(t, "")
	cfg := h.Config()
	allowed := 0
	for _, annotations := range []map[string]string{
		{"topz.outrigger.dev/image": "evil/root:latest"},
		{"topz.outrigger.dev/privileged": "true"},
		{"topz.outrigger.dev/capabilities": "SYS_ADMIN"},
		{"topz.outrigger.dev/host-network": "true"},
		{"topz.outrigger.dev/host-pid": "true"},
		{"topz.outrigger.dev/volumes": `[{"name":"root","hostPath":{"path":"/"}}]`},
		{"topz.outrigger.dev/security-context": `{"privileged":true}`},
		// Real parameters with odd values: admitted, and the check below shows what they gain: nothing (the
		// mount is an emptyDir in the pod's own container; the root is a path inside the sidecar's own
		// filesystem; another namespace's ConfigMap is read with the pod's own service account, so RBAC,
		// not the injector, decides).
		{"git-sync.outrigger.dev/repo": "file:///r", "git-sync.outrigger.dev/mount-path": "/proc"},
		{"git-sync.outrigger.dev/repo": "file:///r", "git-sync.outrigger.dev/root": "/../../host"},
		{"https-proxy.outrigger.dev/tls-secret": "../kube-system/admin-token"},
		{"https-proxy.outrigger.dev/tls-secret": "kube-system/admin-token"},
		{"config-sync.outrigger.dev/configmap": "c", "config-sync.outrigger.dev/namespace": "kube-system"},
		{"topz.outrigger.dev/addr": ":8080\nprivileged: true"},
		{"topz.outrigger.dev/addr": strings.Repeat("9", 1<<20)},
		{"outrigger.dev/mode": "containers", "topz.outrigger.dev/cpu-limit": "-1"},
	} {
		sidecar, _, _ := strings.Cut(func() string {
			for k := range annotations {
				if strings.Contains(k, ".outrigger.dev/") && !strings.HasPrefix(k, "outrigger.dev/") {
					return k
				}
			}
			return "topz."
		}(), ".")
		all := map[string]string{"outrigger.dev/inject": sidecar}
		for k, v := range annotations {
			all[k] = v
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: all},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
		raw, _ := json.Marshal(pod)
		resp := h.Handle(context.Background(), review("team-a", raw))
		if !resp.Allowed {
			if resp.Result == nil || !mentionsAnyKey(resp.Result.Message, annotations) {
				t.Errorf("%v: denied without naming the annotation: %+v", annotations, resp.Result)
			}
			continue
		}
		injected := applyResponse(t, raw, resp)
		var out corev1.Pod
		if err := json.Unmarshal(injected, &out); err != nil {
			t.Fatal(err)
		}
		if gained := privilegeGained(cfg, pod, &out); gained != "" {
			t.Errorf("%v: %s", annotations, gained)
		}
		allowed++
	}
	// The three real parameters above are admitted; every other set is denied (an unknown parameter, a
	// value of the wrong type).
	t.Logf("%d hostile annotation sets admitted without a privilege, the others denied naming the annotation", allowed)
	if allowed != 3 {
		t.Errorf("%d hostile annotation sets were admitted, want the 3 real parameters only", allowed)
	}
}

func mentionsAnyKey(msg string, annotations map[string]string) bool {
	for k := range annotations {
		if strings.Contains(msg, k) {
			return true
		}
	}
	return false
}
