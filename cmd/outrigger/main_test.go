package main

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const stream = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {outrigger.dev/inject: topz, topz.outrigger.dev/addr: ":9805"}
    spec:
      containers: [{name: app, image: web:1}]
---
apiVersion: v1
kind: Service
metadata: {name: web, annotations: {outrigger.dev/inject: topz}}
spec: {ports: [{port: 80}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: jobs}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {outrigger.dev/inject: git-sync, git-sync.outrigger.dev/repo: "file:///repo"}}
        spec:
          restartPolicy: Never
          containers: [{name: report, image: report:1}]
---
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
   "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": {
     "metadata": {"labels": {"app": "db"}, "annotations": {"outrigger.dev/inject": "shard-ambassador", "shard-ambassador.outrigger.dev/shards": "a:6379:1,b:6379:1"}},
     "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}},
  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"}, "spec": {"containers": [{"name": "c", "image": "c:1"}]}}
]}
`

// docs decodes the CLI's YAML stream into generic objects.
func docs(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var all []map[string]any
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			break
		}
		all = append(all, m)
	}
	return all
}

func podSpecAt(t *testing.T, obj map[string]any, path ...string) corev1.PodSpec {
	t.Helper()
	cur := obj
	for _, p := range path {
		cur = cur[p].(map[string]any)
	}
	data, _ := yaml.Marshal(cur["spec"])
	var spec corev1.PodSpec
	if err := yaml.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestInjectStream(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"inject", "-f", "-"}, strings.NewReader(stream), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	got := docs(t, out.Bytes())
	if len(got) != 4 {
		t.Fatalf("%d documents out, want 4:\n%s", len(got), out.String())
	}
	if spec := podSpecAt(t, got[0], "spec", "template"); len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != "topz" || spec.InitContainers[0].Ports[0].ContainerPort != 9805 {
		t.Errorf("Deployment: init containers %+v", spec.InitContainers)
	}
	if ann := got[1]["metadata"].(map[string]any)["annotations"].(map[string]any); len(ann) != 1 {
		t.Errorf("Service changed: %v", got[1])
	}
	cron := podSpecAt(t, got[2], "spec", "jobTemplate", "spec", "template")
	if len(cron.InitContainers) != 1 || cron.InitContainers[0].Name != "git-sync" || cron.Containers[0].VolumeMounts[0].MountPath != "/git" {
		t.Errorf("CronJob: %+v", cron)
	}
	items := got[3]["items"].([]any)
	if sts := podSpecAt(t, items[0].(map[string]any), "spec", "template"); len(sts.InitContainers) != 1 || sts.InitContainers[0].Name != "shard-ambassador" {
		t.Errorf("StatefulSet in a List: %+v", sts.InitContainers)
	}
	if plain := podSpecAt(t, items[1].(map[string]any)); len(plain.InitContainers) != 0 {
		t.Errorf("a pod that asked for nothing got %v", plain.InitContainers)
	}
	for _, want := range []string{"Deployment default/web: topz: topz injected", "CronJob jobs/report: git-sync: git-sync injected"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestInjectRefusesAndWritesNothing(t *testing.T) {
	bad := strings.Replace(stream, `"a:6379:1,b:6379:1"`, `""`, 1)
	bad = strings.Replace(bad, "topz.outrigger.dev/addr: \":9805\"", "topz.outrigger.dev/adr: \":9805\"", 1)
	var out, errOut bytes.Buffer
	if code := run([]string{"inject", "-f", "-"}, strings.NewReader(bad), &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %d bytes despite a refusal", out.Len())
	}
	for _, want := range []string{
		`document 1 (Deployment web)`, `topz has no parameter "adr"; accepted: addr`,
		`document 4 (List): items[0] (StatefulSet db)`, `needs one of the annotations shard-ambassador.outrigger.dev/shards, shard-ambassador.outrigger.dev/config-file`,
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("error lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"injct"}, 2, `unknown command "injct"; accepted: inject, sidecars, status, restart, explain, render, version`},
		{[]string{"inject"}, 2, "-f is required"},
		{[]string{"inject", "-f", "/nonexistent.yaml"}, 1, "no such file"},
		{[]string{"sidecars", "-o", "xml"}, 2, `-o "xml": want text or yaml`},
		{[]string{"inject", "-f", "-", "--config", "/nonexistent"}, 1, "reading the config file"},
		{[]string{"status", "-o", "xml"}, 2, `-o "xml": want table, json or yaml`},
		{[]string{"status", "--fail-on", "stale,old"}, 2, `--fail-on "stale,old": unknown state "old"; accepted: current, stale, missing, unexpected, refused`},
		{[]string{"restart"}, 2, "say what to restart: --stale, --missing, or workloads as KIND/NAME"},
		{[]string{"restart", "job/nightly"}, 2, `"job/nightly": want KIND/NAME with KIND one of deployment, statefulset, daemonset or pod`},
		{[]string{"explain"}, 2, "want `pod NAME` (read from the cluster) or `-f FILE` (offline)"},
		{[]string{"render"}, 2, "say what to render: --policy"},
		{[]string{"render", "--policy", "--api-version", "v2"}, 2, `--api-version "v2": want v1beta1 or v1`},
		{[]string{"render", "--policy", "--sidecars", "tpoz"}, 1, `sidecar "tpoz": not in the catalog`},
		{[]string{"status", "--kubeconfig", "/nonexistent/kubeconfig"}, 1, "no cluster to talk to"},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, strings.NewReader(""), &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d %q, want %d containing %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

func TestSidecarsListsEveryParameter(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"sidecars"}, nil, &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	for _, want := range []string{"https-proxy.outrigger.dev/tls-secret", "git-sync.outrigger.dev/repo", "(required)", "topz.outrigger.dev/addr", "shard-ambassador.outrigger.dev/shards", "config-sync.outrigger.dev/mount-path"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("sidecars output lacks %q", want)
		}
	}
}

// Two messages a new user met: a missing required parameter reported once (not followed by a line that lists
// every parameter), and a pod with only generateName named by it.
func TestMessagesNameWhatIsWrongOnce(t *testing.T) {
	in := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {outrigger.dev/inject: https-proxy}}
    spec: {containers: [{name: app, image: web:1}]}
`
	var out, errOut bytes.Buffer
	if code := run([]string{"inject", "-f", "-"}, strings.NewReader(in), &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if got := strings.Count(errOut.String(), "https-proxy.outrigger.dev/tls-secret"); got != 1 || strings.Contains(errOut.String(), "listen-port") {
		t.Errorf("the missing tls-secret is reported %d times, or with every parameter listed:\n%s", got, errOut.String())
	}

	pod := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-", "namespace": "shop", "annotations": {"outrigger.dev/inject": "topz"}},
  "spec": {"containers": [{"name": "app", "image": "web:1"}]}}`
	out.Reset()
	errOut.Reset()
	if code := run([]string{"inject", "-f", "-"}, strings.NewReader(pod), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "Pod shop/web-: topz: topz injected") {
		t.Errorf("a generateName pod is not named by its generateName:\n%s", errOut.String())
	}
}

// explain -f says, for each sidecar, why it is or is not injected, with each parameter's source.
func TestExplainOffline(t *testing.T) {
	in := `apiVersion: v1
kind: Pod
metadata: {name: web, annotations: {topz.outrigger.dev/addr: ":9805"}}
spec: {containers: [{name: app, image: web:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, labels: {outrigger.dev/injection: disabled}}
spec: {containers: [{name: app, image: agent:1}]}
`
	var out, errOut bytes.Buffer
	if code := run([]string{"explain", "-f", "-", "--namespace-inject", "topz"}, strings.NewReader(in), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"Pod default/web, with the config from the built-in defaults:",
		"sidecars asked for: topz (namespace default's outrigger.dev/inject annotation)",
		"topz: injected (native, from the namespace annotation)",
		"addr    = :9805  (annotation topz.outrigger.dev/addr)",
		"sample  = 200ms  (catalog default)",
		"https-proxy: not injected: not in that list",
		"Pod default/agent",
		"topz: not injected: pod is labelled outrigger.dev/injection=disabled (the webhook's object and namespace selectors leave such pods out: the webhook is never called)",
	} {
		if !strings.Contains(squeeze(out.String()), squeeze(want)) {
			t.Errorf("explain lacks %q:\n%s", want, out.String())
		}
	}
}

// squeeze collapses runs of blanks (the explain table's alignment).
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for _, cmd := range []string{"inject", "sidecars", "status", "restart", "explain", "render"} {
		var out, errOut bytes.Buffer
		if code := run([]string{cmd, "--help"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "Examples:\n  outrigger "+cmd) {
			t.Errorf("outrigger %s --help: exit %d, no examples:\n%s", cmd, code, errOut.String())
		}
	}
}
