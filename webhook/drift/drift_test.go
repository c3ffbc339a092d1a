package drift_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/drift"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

func mustConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "outrigger-system")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func appPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:1"}}},
	}
}

// admitted is the pod as the API server stores it after the webhook: injected by cfg, then defaulted the way
// the API server defaults the fields the catalog leaves empty.
func admitted(t *testing.T, pod *corev1.Pod, ns drift.Namespace, cfg *config.Config) *corev1.Pod {
	t.Helper()
	res, err := inject.Inject(inject.Input{Pod: pod, Namespace: ns.Name, NamespaceAnnotations: ns.Annotations, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Pod
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			c := &list[i]
			c.TerminationMessagePath, c.TerminationMessagePolicy = "/dev/termination-log", corev1.TerminationMessageReadFile
			for j := range c.Ports {
				c.Ports[j].Protocol = corev1.ProtocolTCP
			}
			for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if probe != nil && probe.TimeoutSeconds == 0 {
					probe.TimeoutSeconds, probe.PeriodSeconds, probe.SuccessThreshold = 1, 10, 1
				}
			}
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "kube-api-access-x", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
		}
	}
	return p
}

func states(rep drift.Report) map[string]drift.Sidecar {
	m := map[string]drift.Sidecar{}
	for _, s := range rep.Sidecars {
		m[s.Name] = s
	}
	return m
}

var shop = drift.Namespace{Name: "shop"}

func TestAnUpgradeOfOneSidecarLeavesOnlyThatOneStale(t *testing.T) {
	before := mustConfig(t, "")
	pod := admitted(t, appPod(map[string]string{
		"outrigger.dev/inject":                 "https-proxy,topz",
		"https-proxy.outrigger.dev/tls-secret": "web-tls",
	}), shop, before)

	for name, s := range states(drift.Compare(pod, shop, before)) {
		if s.State != drift.Current {
			t.Errorf("with the config it was injected with, %s is %s (%s %v), want current", name, s.State, s.Reason, s.Changes)
		}
	}

	after := mustConfig(t, "images:\n  overrides:\n    topz: ghcr.io/outrigger-dev/topz:0.2.0\n")
	got := states(drift.Compare(pod, shop, after))
	if got["https-proxy"].State != drift.Current {
		t.Errorf("a new topz image flags https-proxy: %+v", got["https-proxy"])
	}
	topz := got["topz"]
	if topz.State != drift.Stale {
		t.Fatalf("topz after its image changed: %+v, want stale", topz)
	}
	if want := "image: ghcr.io/outrigger-dev/topz:0.1.0 → ghcr.io/outrigger-dev/topz:0.2.0"; len(topz.Changes) != 1 || topz.Changes[0] != want {
		t.Errorf("topz's changes: %q, want [%q]", topz.Changes, want)
	}
}

func TestAChangedEnvDefaultIsNamedField(t *testing.T) {
	entry := func(level string) string {
		return `sidecars:
- name: agent
  description: an operator's own sidecar
  image: registry.example/agent:1
  container:
    env: [{name: LOG_LEVEL, value: "` + level + `"}]
`
	}
	pod := admitted(t, appPod(map[string]string{"outrigger.dev/inject": "agent"}), shop, mustConfig(t, entry("info")))
	agent := states(drift.Compare(pod, shop, mustConfig(t, entry("debug"))))["agent"]
	if want := "env[LOG_LEVEL].value: info → debug"; agent.State != drift.Stale || len(agent.Changes) != 1 || agent.Changes[0] != want {
		t.Fatalf("agent after its env default changed: %+v, want stale with [%q]", agent, want)
	}
}

func TestAPodAdmittedWithoutItsSidecarIsMissing(t *testing.T) {
	cfg := mustConfig(t, "")
	ns := drift.Namespace{Name: "shop", Annotations: map[string]string{"outrigger.dev/inject": "topz"}}
	// Created while the webhook was down (failurePolicy Ignore): stored as submitted.
	pod := appPod(nil)
	got := drift.Compare(pod, ns, cfg)
	if len(got.Sidecars) != 1 || got.Sidecars[0].Name != "topz" || got.Sidecars[0].State != drift.Missing {
		t.Fatalf("got %+v, want topz missing", got.Sidecars)
	}
	if !strings.Contains(got.Sidecars[0].Reason, "namespace annotation") {
		t.Errorf("the reason %q does not say the namespace asks for it", got.Sidecars[0].Reason)
	}
}

func TestASidecarNoLongerAskedForIsUnexpected(t *testing.T) {
	cfg := mustConfig(t, "")
	ns := drift.Namespace{Name: "shop", Annotations: map[string]string{"outrigger.dev/inject": "topz"}}
	pod := admitted(t, appPod(nil), ns, cfg)
	ns.Annotations = nil // the namespace default was removed
	got := states(drift.Compare(pod, ns, cfg))["topz"]
	if got.State != drift.Unexpected {
		t.Fatalf("topz after the namespace default went: %+v, want unexpected", got)
	}
}

func TestAPodTodaysConfigWouldRefuseIsRefused(t *testing.T) {
	custom := `sidecars:
- name: agent
  description: an operator's own sidecar
  image: registry.example/agent:1
  container: {}
`
	pod := admitted(t, appPod(map[string]string{"outrigger.dev/inject": "agent"}), shop, mustConfig(t, custom))
	got := drift.Compare(pod, shop, mustConfig(t, ""))
	if got.Denied == nil || len(got.Sidecars) != 1 || got.Sidecars[0].State != drift.Refused || !strings.Contains(got.Sidecars[0].Reason, `unknown sidecar "agent"`) {
		t.Fatalf("agent after its entry was removed: %+v (denied: %v), want refused naming it", got.Sidecars, got.Denied)
	}
}

func TestSubmittedUndoesTheInjection(t *testing.T) {
	cfg := mustConfig(t, "")
	orig := appPod(map[string]string{"outrigger.dev/inject": "config-sync", "config-sync.outrigger.dev/configmap": "web-config"})
	res, err := inject.Inject(inject.Input{Pod: orig, Namespace: "shop", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	back := drift.Submitted(res.Pod, cfg)
	if len(back.Spec.InitContainers) != 0 || len(back.Spec.Volumes) != 0 || len(back.Spec.Containers[0].VolumeMounts) != 0 || back.Annotations[inject.AnnotationStatus] != "" {
		t.Fatalf("the pod as submitted still has Outrigger's parts: %+v", back.Spec)
	}
}

func TestADocumentationChangeLeavesPodsCurrent(t *testing.T) {
	entry := func(doc string) string {
		return `sidecars:
- name: agent
  description: "` + doc + `"
  image: registry.example/agent:1
  container:
    env: [{name: LOG_LEVEL, value: info}]
  parameters:
  - {env: LOG_LEVEL, default: info, type: string, doc: "` + doc + `"}
`
	}
	pod := admitted(t, appPod(map[string]string{"outrigger.dev/inject": "agent"}), shop, mustConfig(t, entry("the log level")))
	agent := states(drift.Compare(pod, shop, mustConfig(t, entry("how much the agent logs"))))["agent"]
	if agent.State != drift.Current {
		t.Fatalf("agent after a change of its docs only: %+v, want current", agent)
	}
}
