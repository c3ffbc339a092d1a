// Command demo is `make demo`: Outrigger at work on the local cluster that `make cluster` started (a real
// node: kubelet, containerd, kube-proxy, CoreDNS). It installs Outrigger with helm, as the README says,
// deploys a legacy app that serves plain HTTP on 127.0.0.1 only and asks for https-proxy, topz and
// config-sync by annotation, and shows each sidecar doing its job: the app answering over HTTPS through the
// proxy, /topz listing the app's processes, and a `kubectl apply` of the app's ConfigMap reaching the app.
// It leaves the cluster running and says how to use it and how to stop it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

const ns = "demo"

func main() {
	clusterDir := flag.String("cluster-dir", "_output/cluster", "the directory of the cluster `make cluster` started")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *clusterDir); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		os.Exit(1)
	}
}

// demo holds what every step uses.
type demo struct {
	root, bin, kubeconfig string
	client                kubernetes.Interface
}

func run(ctx context.Context, clusterDir string) error {
	start := time.Now()
	d, err := connect(clusterDir)
	if err != nil {
		return err
	}

	step("Installing Outrigger with helm (the README's command: self-managed certificates, 2 webhook replicas)")
	t := time.Now()
	if _, err := d.cmd("", "helm", "upgrade", "--install", "outrigger", filepath.Join(d.root, "charts", "outrigger"),
		"-n", "outrigger-system", "--create-namespace", "--set", "certificates.mode=self-managed", "--wait", "--timeout", "3m"); err != nil {
		return err
	}
	out, err := d.cmd("", "kubectl", "-n", "outrigger-system", "get", "pods", "-o", "wide")
	if err != nil {
		return err
	}
	indent(out)
	done(t, "webhook running behind Service outrigger-system/outrigger-webhook")

	step("Deploying legacy-web: an app that serves plain HTTP on 127.0.0.1:8000 only, and asks for sidecars")
	t = time.Now()
	manifest, err := legacyWeb()
	if err != nil {
		return err
	}
	if _, err := d.cmd(manifest, "kubectl", "apply", "-f", "-"); err != nil {
		return err
	}
	fmt.Println(`    annotations on the Deployment's pod template:
      outrigger.dev/inject: "https-proxy,topz,config-sync"
      https-proxy.outrigger.dev/tls-secret: legacy-web-tls
      https-proxy.outrigger.dev/proxy-port: "8000"
      config-sync.outrigger.dev/configmap: legacy-web-config
      config-sync.outrigger.dev/reload-url: http://127.0.0.1:8000/reload`)
	pod, err := d.waitReady(ctx, 3*time.Minute)
	if err != nil {
		return err
	}
	done(t, "pod %s is Ready; what the webhook made of it:", pod.Name)
	printPod(pod)

	ip := pod.Status.PodIP
	svc, err := d.client.CoreV1().Services(ns).Get(ctx, "legacy-web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	https := "https://" + svc.Spec.ClusterIP + "/"
	step("The app over HTTPS, through https-proxy (Service legacy-web, ClusterIP %s, port 443)", svc.Spec.ClusterIP)
	if err := show("curl", "-sk", https); err != nil {
		return err
	}
	fmt.Printf("    plain HTTP to the app's own port from outside the pod is refused:\n")
	if err := show("curl", "-sS", "--max-time", "3", "http://"+ip+":8000/"); err == nil {
		return errors.New("the app answered plain HTTP from outside its pod; it should be reachable only through the proxy")
	}

	step("/topz: every process of the pod (one PID namespace), from the topz sidecar")
	if err := show("curl", "-s", "http://"+ip+":8080/topz"); err != nil {
		return err
	}

	step("A config change: kubectl apply of ConfigMap legacy-web-config; config-sync writes it and calls the app's reload")
	if err := show("curl", "-sk", https+"config"); err != nil {
		return err
	}
	t = time.Now()
	if _, err := d.cmd(configMap("greeting=hello, changed by kubectl apply\n"), "kubectl", "apply", "-f", "-"); err != nil {
		return err
	}
	fmt.Println("    $ kubectl apply -f legacy-web-config.yaml   # greeting=hello, changed by kubectl apply")
	if err := waitFor(ctx, 30*time.Second, func() error {
		out, err := exec.CommandContext(ctx, "curl", "-sk", https+"config").Output()
		if err != nil || !bytes.Contains(out, []byte("changed by kubectl apply")) {
			return fmt.Errorf("the app's config is still %q (%v)", out, err)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := show("curl", "-sk", https+"config"); err != nil {
		return err
	}
	done(t, "the app had the new config")

	fmt.Printf(`
Done in %s. The cluster keeps running, with Outrigger and legacy-web in it:

  export KUBECONFIG=%s
  kubectl get pods -n demo
  kubectl describe pod -n demo -l app=legacy-web
  curl -sk https://%s/

Stop it, and put the host back, with:  make cluster-down
`, time.Since(start).Round(100*time.Millisecond), d.kubeconfig, svc.Spec.ClusterIP)
	return nil
}

// connect finds the running cluster of `make cluster`.
func connect(clusterDir string) (*demo, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(clusterDir, "info.json"))
	if err != nil {
		return nil, fmt.Errorf("no local cluster in %s (start one with `make cluster`): %w", clusterDir, err)
	}
	var info struct {
		Kubeconfig string `json:"kubeconfig"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", info.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	bin := os.Getenv("OUTRIGGER_BIN_DIR")
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	return &demo{root: root, bin: bin, kubeconfig: info.Kubeconfig, client: client}, nil
}

// cmd runs one of ./bin's tools (helm, kubectl) against the cluster, stdin as its input.
func (d *demo) cmd(stdin, tool string, args ...string) (string, error) {
	args = append(args, "--kubeconfig", d.kubeconfig)
	c := exec.Command(filepath.Join(d.bin, tool), args...)
	c.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// waitReady waits for the one Ready pod of Deployment legacy-web (the newest, after a re-run).
func (d *demo) waitReady(ctx context.Context, timeout time.Duration) (*corev1.Pod, error) {
	var ready *corev1.Pod
	err := waitFor(ctx, timeout, func() error {
		list, err := d.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=legacy-web"})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d pods of legacy-web", len(list.Items))
		}
		p := &list.Items[0]
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = p
				return nil
			}
		}
		return fmt.Errorf("pod %s is %s, not Ready yet", p.Name, p.Status.Phase)
	})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("namespace %s is gone: %w", ns, err)
	}
	return ready, err
}

// show prints a command and its output, indented, and returns its error.
func show(name string, args ...string) error {
	fmt.Printf("    $ %s %s\n", name, strings.Join(args, " "))
	out, err := exec.Command(name, args...).CombinedOutput()
	indent(string(out))
	return err
}

func printPod(p *corev1.Pod) {
	for _, c := range p.Spec.InitContainers {
		kind := "init container"
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			kind = "native sidecar"
		}
		fmt.Printf("      %-15s %-12s %s\n", kind, c.Name, c.Image)
	}
	for _, c := range p.Spec.Containers {
		fmt.Printf("      %-15s %-12s %s\n", "container", c.Name, c.Image)
	}
	if p.Spec.ShareProcessNamespace != nil && *p.Spec.ShareProcessNamespace {
		fmt.Println("      shareProcessNamespace: true (for topz)")
	}
	fmt.Printf("      outrigger.dev/status: %s\n", p.Annotations["outrigger.dev/status"])
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func indent(s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Println("      " + line)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func done(since time.Time, format string, args ...any) {
	fmt.Printf("    done in %s: %s\n", time.Since(since).Round(100*time.Millisecond), fmt.Sprintf(format, args...))
}
