package install

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

// run runs a command with a timeout and returns stdout, stderr and its error.
func run(stdin string, name string, args ...string) (string, string, error) {
	return runIn("", stdin, name, args...)
}

// runEnv runs binary with the test's environment plus vars (later ones win).
func runEnv(vars []string, binary string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), vars...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// runIn is run in directory dir.
func runIn(dir, stdin string, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// helm runs helm against the test cluster and fails the test on error.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := run("", env.helm, append(args, "--kubeconfig", env.cluster.Kubeconfig())...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, errOut, out)
	}
	return out
}

// kubectl runs kubectl against the test cluster (stdin may be "") and fails the test on error.
func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := run(stdin, env.kubectl, append([]string{"--kubeconfig", env.cluster.Kubeconfig()}, args...)...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, errOut, out)
	}
	return out
}

// render is `helm template` of the chart for release in ns with values (key=value, as --set).
func render(t *testing.T, release, ns string, values ...string) string {
	t.Helper()
	args := []string{"template", release, env.chart, "--namespace", ns}
	for _, v := range values {
		args = append(args, "--set", v)
	}
	out, errOut, err := run("", env.helm, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// objects decodes a multi-document YAML stream; empty documents are dropped.
func objects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("decoding rendered YAML: %v", err)
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// find returns the one object of kind (and name, if not "") in objs.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s %q in the rendered chart, found %d", kind, name, len(found))
	}
	return found[0]
}

// into converts an unstructured object to a typed one; a field the type does not know is an error.
func into(t *testing.T, u *unstructured.Unstructured, typed any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, typed, true); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// kubeconfigAs writes a kubeconfig that impersonates user (the admin token asks the API server to
// authorize every request as that user: RBAC decides exactly as for the real ServiceAccount).
func kubeconfigAs(t *testing.T, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-"+strings.ReplaceAll(user, ":", "-"))
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// configMapVolume mirrors ConfigMap ns/name into dir as the kubelet would.
func configMapVolume(t *testing.T, ns, name, dir string) {
	t.Helper()
	cm, err := env.cluster.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the chart's ConfigMap: %v", err)
	}
	files := map[string][]byte{}
	for k, v := range cm.Data {
		files[k] = []byte(v)
	}
	if err := cluster.WriteVolume(dir, files); err != nil {
		t.Fatal(err)
	}
}
