// Command quick is `make demo-quick`: Outrigger's main job on a machine that cannot run a node (not root,
// no podman), with the built-in catalog and no config file. It starts a local control plane (etcd +
// kube-apiserver from ./bin), builds and runs the webhook with a fresh serving certificate, registers it,
// creates annotated pods through the API server and prints what was injected. It needs no existing
// cluster and leaves nothing behind; `make demo` shows the sidecars at work on a complete cluster instead.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "outrigger-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	start := time.Now()
	step("Starting a local control plane (etcd + kube-apiserver built from source in ./bin)")
	c, err := cluster.New(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster")})
	if err != nil {
		return err
	}
	defer c.Stop()
	done("API server ready at %s", c.RESTConfig().Host)

	step("Building and starting outrigger-webhook (built-in catalog, no config file)")
	bin, err := cluster.BuildWebhook(dir)
	if err != nil {
		return err
	}
	const ownNamespace = "outrigger-system"
	if err := c.EnsureNamespace(ctx, ownNamespace, nil, nil); err != nil {
		return err
	}
	hook, err := c.StartWebhook(ctx, cluster.WebhookOptions{Binary: bin, Namespace: ownNamespace})
	if err != nil {
		return err
	}
	defer hook.Stop()
	if err := c.Register(ctx, hook.Configuration("outrigger", admissionregistrationv1.Fail, ownNamespace)); err != nil {
		return err
	}
	done("webhook serving %s; MutatingWebhookConfiguration \"outrigger\" registered", hook.URL)

	if err := c.EnsureNamespace(ctx, "demo", nil, nil); err != nil {
		return err
	}
	var warnings []string
	cfg := c.RESTConfig()
	cfg.WarningHandlerWithContext = warningCollector{&warnings}
	client := kubernetes.NewForConfigOrDie(cfg)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy-web", Annotations: map[string]string{
			"outrigger.dev/inject":                 "https-proxy,topz,git-sync",
			"https-proxy.outrigger.dev/tls-secret": "legacy-web-tls",
			"https-proxy.outrigger.dev/proxy-port": "8000",
			"topz.outrigger.dev/addr":              ":9805",
			"git-sync.outrigger.dev/repo":          "https://git.example/site.git",
			"git-sync.outrigger.dev/mount-path":    "/srv/www",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/legacy-web:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8000}}}}},
	}
	step("Creating pod demo/legacy-web through the API server, annotated:")
	printAnnotations(pod.Annotations)
	// The webhook configuration reaches the API server's admission chain within a moment.
	var got *corev1.Pod
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err = client.CoreV1().Pods("demo").Create(ctx, pod, metav1.CreateOptions{})
		if err == nil && len(got.Spec.InitContainers) > 0 {
			break
		}
		if err == nil {
			_ = client.CoreV1().Pods("demo").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pod was not injected within 30s (last error: %v)\n--- webhook log ---\n%s", err, hook.LogTail(20))
		}
		time.Sleep(300 * time.Millisecond)
	}
	printPod(got)
	printWarnings(warnings)

	warnings = nil
	bad := pod.DeepCopy()
	bad.Name = "typo"
	bad.Annotations["https-proxy.outrigger.dev/proxy-port"] = "eighty"
	bad.Annotations["outrigger.dev/inject"] = "https-proxy,topz,git-sync,htps-proxy"
	step("Creating pod demo/typo with proxy-port=eighty and an unknown sidecar: the webhook denies it")
	if _, err := client.CoreV1().Pods("demo").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		fmt.Printf("    %s\n", wrap(err.Error(), 110, "    "))
	} else {
		return fmt.Errorf("a pod with a bad parameter was admitted")
	}
	fmt.Printf("\nDone in %s. Everything ran on loopback and is removed now.\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

func printPod(p *corev1.Pod) {
	done("admitted pod %s/%s:", p.Namespace, p.Name)
	for _, c := range p.Spec.InitContainers {
		kind := "init container"
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			kind = "native sidecar"
		}
		fmt.Printf("    %-15s %-12s %s%s%s\n", kind, c.Name, c.Image, ports(c), env(c))
	}
	for _, c := range p.Spec.Containers {
		fmt.Printf("    %-15s %-12s %s%s%s\n", "container", c.Name, c.Image, ports(c), mounts(c))
	}
	if p.Spec.ShareProcessNamespace != nil && *p.Spec.ShareProcessNamespace {
		fmt.Println("    shareProcessNamespace: true (for topz)")
	}
	for _, v := range p.Spec.Volumes {
		src := "emptyDir"
		if v.Secret != nil {
			src = "secret " + v.Secret.SecretName
		}
		fmt.Printf("    volume %s (%s)\n", v.Name, src)
	}
	fmt.Printf("    outrigger.dev/status: %s\n", p.Annotations["outrigger.dev/status"])
}

func ports(c corev1.Container) string {
	var ps []string
	for _, p := range c.Ports {
		ps = append(ps, fmt.Sprint(p.ContainerPort))
	}
	if len(ps) == 0 {
		return ""
	}
	return "  ports " + strings.Join(ps, ",")
}

func env(c corev1.Container) string {
	var es []string
	for _, e := range c.Env {
		es = append(es, e.Name+"="+e.Value)
	}
	if len(es) == 0 {
		return ""
	}
	return "  env " + strings.Join(es, " ")
}

func mounts(c corev1.Container) string {
	var ms []string
	for _, m := range c.VolumeMounts {
		ms = append(ms, m.Name+"→"+m.MountPath)
	}
	if len(ms) == 0 {
		return ""
	}
	return "  mounts " + strings.Join(ms, " ")
}

func printAnnotations(a map[string]string) {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("    %s: %q\n", k, a[k])
	}
}

func printWarnings(ws []string) {
	for _, w := range ws {
		fmt.Printf("    warning from the API server: %s\n", w)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
func done(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }

func wrap(s string, width int, indent string) string {
	var out []string
	for len(s) > width {
		cut := strings.LastIndex(s[:width], " ")
		if cut <= 0 {
			cut = width
		}
		out = append(out, s[:cut])
		s = strings.TrimSpace(s[cut:])
	}
	return strings.Join(append(out, s), "\n"+indent)
}

// warningCollector keeps the API server's warnings (admission warnings from the webhook among them).
type warningCollector struct{ into *[]string }

func (w warningCollector) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	*w.into = append(*w.into, text)
}

var _ rest.WarningHandlerWithContext = warningCollector{}
