package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
	"github.com/outrigger-dev/outrigger/webhook/certs"
)

const (
	webhookDeployment = "outrigger-webhook"
	webhookSecret     = "outrigger-webhook-tls"
)

// TestTheChartRunsAsUsersRunIt checks what `helm install` made (TestMain ran the README's command): the
// webhook runs as the chart's Deployment from its own image, two replicas behind the chart's Service; the
// API server calls it through that Service (clientConfig.service, not patched to a URL) with the caBundle
// the self-managed rotator keeps; and `helm test` passes, its pod running in the cluster.
func TestTheChartRunsAsUsersRunIt(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	cs := env.cluster.Client()

	t.Run("two replicas of the webhook image behind the Service", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments(injectorNamespace).Get(ctx, webhookDeployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != 2 || d.Spec.Template.Spec.Containers[0].Image != image("outrigger-webhook") {
			t.Errorf("Deployment %s: %d ready replicas of %s, want 2 of %s", webhookDeployment, d.Status.ReadyReplicas, d.Spec.Template.Spec.Containers[0].Image, image("outrigger-webhook"))
		}
		if ips := serviceEndpoints(t, injectorNamespace, webhookDeployment); len(ips) != 2 {
			t.Errorf("Service %s has ready endpoints %v, want the two webhook pods", webhookDeployment, ips)
		}
	})
	t.Run("the API server calls the Service with the rotator's caBundle", func(t *testing.T) {
		cc := webhookConfig(t).Webhooks[0].ClientConfig
		if cc.URL != nil || cc.Service == nil || cc.Service.Name != webhookDeployment || cc.Service.Namespace != injectorNamespace {
			t.Fatalf("clientConfig %+v: want the chart's Service and no URL", cc)
		}
		s, err := cs.CoreV1().Secrets(injectorNamespace).Get(ctx, webhookSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(cc.CABundle) == 0 || !bytes.Equal(cc.CABundle, s.Data[certs.KeyCABundle]) {
			t.Errorf("caBundle (%d bytes) is not the rotator's ca.crt (%d bytes)", len(cc.CABundle), len(s.Data[certs.KeyCABundle]))
		}
		for _, ip := range serviceEndpoints(t, injectorNamespace, webhookDeployment) {
			leaf := servedCert(t, ip)
			if !slices.Contains(leaf.DNSNames, webhookDeployment+"."+injectorNamespace+".svc") {
				t.Errorf("replica %s serves a certificate for %v, want %s.%s.svc", ip, leaf.DNSNames, webhookDeployment, injectorNamespace)
			}
		}
	})
	t.Run("helm test passes", func(t *testing.T) {
		out := helm(t, "test", release, "-n", injectorNamespace, "--timeout", "2m")
		if !strings.Contains(out, "Phase:          Succeeded") {
			t.Errorf("helm test:\n%s", out)
		}
	})
}

// TestNoPodIsRefusedWhileAReplicaGoesAndTheCARotates creates pods through the API server all along two
// events a cluster lives through: a webhook replica evicted (a node drain; the PodDisruptionBudget lets one
// go and refuses the second), and a forced CA rotation. Not one create may fail or come back uninjected.
func TestNoPodIsRefusedWhileAReplicaGoesAndTheCARotates(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	cs := env.cluster.Client()
	const ns = "load"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	load := startLoad(t, ns)
	defer load.stop()
	time.Sleep(time.Second)

	t.Run("evicting a replica: the PDB lets one go, not two", func(t *testing.T) {
		pods := webhookPods(t)
		if len(pods) != 2 {
			t.Fatalf("%d webhook pods, want 2", len(pods))
		}
		evict := func(name string) error {
			return cs.PolicyV1().Evictions(injectorNamespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: injectorNamespace}})
		}
		if err := evict(pods[0]); err != nil {
			t.Fatalf("evicting %s: %v", pods[0], err)
		}
		if err := evict(pods[1]); !apierrors.IsTooManyRequests(err) {
			t.Errorf("evicting the second replica while the first is gone: %v, want the PodDisruptionBudget's refusal (429)", err)
		}
		clustertest.Eventually(t, 2*time.Minute, func() error {
			d, err := cs.AppsV1().Deployments(injectorNamespace).Get(ctx, webhookDeployment, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Status.ReadyReplicas != 2 || d.Status.UpdatedReplicas != 2 || d.Status.Replicas != 2 {
				return fmt.Errorf("%d of 2 replicas ready (%d in all)", d.Status.ReadyReplicas, d.Status.Replicas)
			}
			if got := serviceEndpoints(t, injectorNamespace, webhookDeployment); len(got) != 2 {
				return fmt.Errorf("Service endpoints %v", got)
			}
			return nil
		})
		time.Sleep(2 * time.Second)
	})

	t.Run("a forced CA rotation", func(t *testing.T) {
		oldCA := pemCerts(t, webhookConfig(t).Webhooks[0].ClientConfig.CABundle)[0]
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, certs.AnnotationRotate, certs.RotateCA)
		if _, err := cs.CoreV1().Secrets(injectorNamespace).Patch(ctx, webhookSecret, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		rotated := time.Now()
		clustertest.Eventually(t, 90*time.Second, func() error {
			bundle := pemCerts(t, webhookConfig(t).Webhooks[0].ClientConfig.CABundle)
			if len(bundle) == 0 || bundle[0].Equal(oldCA) {
				return fmt.Errorf("the caBundle does not lead with a new CA yet")
			}
			for _, ip := range serviceEndpoints(t, injectorNamespace, webhookDeployment) {
				if servedCert(t, ip).CheckSignatureFrom(bundle[0]) != nil {
					return fmt.Errorf("replica %s still serves the old CA's certificate", ip)
				}
			}
			return nil
		})
		t.Logf("both replicas serve the new CA's certificate %s after the rotation was asked for", time.Since(rotated).Round(time.Millisecond))
		time.Sleep(2 * time.Second)
	})

	total, failures := load.stop()
	t.Logf("pods created through the eviction and the rotation: %d, failed: %d", total, len(failures))
	if len(failures) > 0 {
		t.Fatalf("%d of %d creates failed:\n%s", len(failures), total, strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if total < 100 {
		t.Fatalf("only %d pods were created: the load did not run", total)
	}
}

// TestHelmUpgradeToANewCatalogKeepsAdmitting upgrades the release to a config whose sidecar images have a
// new tag (what a sidecar release looks like to users) while pods are being created: none is refused, and
// once the kubelet has updated the webhook's mounted ConfigMap, new pods get the new image. It upgrades
// back the same way.
func TestHelmUpgradeToANewCatalogKeepsAdmitting(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "upgrade"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	for _, tag := range []string{"0.1.1", env.version} {
		load := startLoad(t, ns)
		helm(t, "upgrade", release, env.root+"/charts/outrigger", "-n", injectorNamespace, "--reuse-values", "--set", "config.images.tag="+tag, "--wait", "--timeout", "3m")
		want := "ghcr.io/outrigger-dev/topz:" + tag
		switched := time.Now()
		clustertest.Eventually(t, 2*time.Minute, func() error {
			pod, err := env.cluster.CreatePod(ctx, ns, cluster.AppPod("after", map[string]string{"outrigger.dev/inject": "topz"}), true)
			if err != nil {
				return err
			}
			if got := pod.Spec.InitContainers[0].Image; got != want {
				return fmt.Errorf("a new pod's topz is %s, want %s", got, want)
			}
			return nil
		})
		t.Logf("tag %s: new pods got it %s after helm upgrade returned", tag, time.Since(switched).Round(time.Millisecond))
		time.Sleep(time.Second)
		total, failures := load.stop()
		t.Logf("tag %s: %d pods created through the upgrade, %d failed", tag, total, len(failures))
		if len(failures) > 0 {
			t.Fatalf("%d of %d creates failed through helm upgrade:\n%s", len(failures), total, strings.Join(failures[:min(len(failures), 10)], "\n"))
		}
	}
}

// TestUninstallLeavesNothingAndReinstalls runs `helm uninstall`: the webhook configuration goes first (no
// pod is refused by a webhook that is gone), no object of the release or of the webhook's own making is
// left, and a pod asking for a sidecar is created as it is. Then it installs again, as a user would, for the
// tests that follow.
func TestUninstallLeavesNothingAndReinstalls(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	helm(t, "uninstall", release, "-n", injectorNamespace, "--wait", "--timeout", "2m")
	if out, err := runCmd(env.kubectl, "--kubeconfig", env.cluster.Kubeconfig(), "get", "mutatingwebhookconfiguration", release, "-o", "name"); err == nil {
		t.Errorf("the webhook configuration is still there after helm uninstall: %s", out)
	}
	// The pods go once the garbage collector has followed the Deployment's ReplicaSet.
	sel := "app.kubernetes.io/instance=" + release
	clustertest.Eventually(t, time.Minute, func() error {
		var left []string
		for _, where := range [][]string{
			{"-n", injectorNamespace, "get", "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,leases,roles,rolebindings,poddisruptionbudgets"},
			{"-n", "default", "get", "roles,rolebindings"},
			{"get", "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations"},
		} {
			if out := strings.TrimSpace(kubectl(t, append(where, "-l", sel, "-o", "name")...)); out != "" {
				left = append(left, out)
			}
		}
		for _, obj := range []string{"secret/" + webhookSecret, "lease/" + webhookSecret} {
			if out, err := runCmd(env.kubectl, "--kubeconfig", env.cluster.Kubeconfig(), "-n", injectorNamespace, "get", obj, "-o", "name"); err == nil {
				left = append(left, strings.TrimSpace(out))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left behind after helm uninstall:\n%s", strings.Join(left, "\n"))
		}
		return nil
	})
	const ns = "after-uninstall"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	pod, err := env.cluster.CreatePod(ctx, ns, cluster.AppPod("plain", map[string]string{"outrigger.dev/inject": "topz"}), true)
	if err != nil {
		t.Fatalf("after uninstall a pod is refused: %v", err)
	}
	if got := cluster.NativeSidecars(pod); len(got) != 0 {
		t.Errorf("after uninstall a pod got sidecars %v", got)
	}
	if err := installOutrigger(ctx, "install"); err != nil {
		t.Fatalf("installing again: %v", err)
	}
}

// TestAnOptedOutNamespaceIsUntouched: in a namespace labelled outrigger.dev/injection=disabled the API
// server does not call the webhook, so a pod that asks for a sidecar runs exactly as written.
func TestAnOptedOutNamespaceIsUntouched(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "opted-out"
	clustertest.CreateNamespace(t, env.cluster, ns, map[string]string{"outrigger.dev/injection": "disabled"}, nil)
	pod := appPod("plain", map[string]string{"outrigger.dev/inject": "topz"}, "-listen=:8000", "-name=plain")
	got, err := env.cluster.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dumpPod(t, ns, "plain")
	if len(got.Spec.InitContainers) != 0 || len(got.Spec.Containers) != 1 || got.Annotations["outrigger.dev/status"] != "" {
		t.Fatalf("the pod in an opted-out namespace was changed: %d init containers, %d containers, status %q", len(got.Spec.InitContainers), len(got.Spec.Containers), got.Annotations["outrigger.dev/status"])
	}
	waitPod(t, ns, "plain", 2*time.Minute, podReady)
}

// appPod is a one-container pod of the test app with args.
func appPod(name string, annotations map[string]string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever, Args: args,
		}}},
	}
}

// load creates server-side dry-run pods asking for topz, one every 20 ms, and records every failure (an
// error, or a pod that came back without topz).
type load struct {
	once     sync.Once
	stopped  chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	total    int
	failures []string
}

func startLoad(t *testing.T, ns string) *load {
	t.Helper()
	l := &load{stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stopped:
				return
			default:
			}
			pod, err := env.cluster.CreatePod(context.Background(), ns, cluster.AppPod(fmt.Sprintf("load-%d", i), map[string]string{"outrigger.dev/inject": "topz"}), true)
			if err == nil && !slices.Equal(cluster.NativeSidecars(pod), []string{"topz"}) {
				err = fmt.Errorf("admitted without topz: %v", cluster.NativeSidecars(pod))
			}
			l.mu.Lock()
			l.total++
			if err != nil {
				l.failures = append(l.failures, time.Now().Format("15:04:05.000")+": "+err.Error())
			}
			l.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return l
}

// stop ends the load and returns how many pods it created and its failures.
func (l *load) stop() (int, []string) {
	l.once.Do(func() { close(l.stopped); <-l.done })
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.failures
}

func webhookConfig(t *testing.T) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	cfg, err := env.cluster.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// webhookPods lists the names of the webhook's pods that are not being deleted.
func webhookPods(t *testing.T) []string {
	t.Helper()
	list, err := env.cluster.Client().CoreV1().Pods(injectorNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	return names
}

// serviceEndpoints lists the ready addresses of the Service's EndpointSlices.
func serviceEndpoints(t *testing.T, ns, svc string) []string {
	t.Helper()
	epSlices, err := env.cluster.Client().DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, s := range epSlices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	return ips
}

// servedCert is the leaf certificate the webhook pod at ip serves on its HTTPS port.
func servedCert(t *testing.T, ip string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(ip, "9443"),
		&tls.Config{InsecureSkipVerify: true}) // only to read what it serves; the API server verifies
	if err != nil {
		t.Fatalf("connecting to the webhook pod %s: %v", ip, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func pemCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}
