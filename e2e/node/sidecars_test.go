package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestEverySidecarInADeployment deploys an app whose Deployment template asks for all five sidecars, with
// the parameters a user would set, through the helm-installed webhook. Its pod reaches Ready with the five
// running as native sidecars, and each does its job in the pod: https-proxy serves the app (which listens on
// 127.0.0.1 only) over TLS, topz lists the app's process, git-sync and shard-ambassador reach a git server
// through its Service's DNS name, and config-sync, in API mode with the chart's ClusterRole bound by a
// RoleBinding, carries a `kubectl apply` of the app's ConfigMap to the app's file and makes it reload.
func TestEverySidecarInADeployment(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns, host = "every", "all.every.test"
	cs := env.cluster.Client()
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	caPEM := createTLSSecret(t, ns, "all-tls", host)
	repo := newRepository(t, "v1\n")
	gitURL := serveRepository(t, ns, repo)
	kubectlApply(t, configMapYAML(ns, "greeting=v1\n"))
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "all-config-sync"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "outrigger-config-sync"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	labels := map[string]string{"app": "all"}
	one := int32(1)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "all"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"outrigger.dev/inject":                           "https-proxy,topz,config-sync,git-sync,shard-ambassador",
					"https-proxy.outrigger.dev/tls-secret":           "all-tls",
					"https-proxy.outrigger.dev/proxy-port":           "8000",
					"config-sync.outrigger.dev/configmap":            "app-config",
					"config-sync.outrigger.dev/reload-url":           "http://127.0.0.1:8000/reload",
					"git-sync.outrigger.dev/repo":                    gitURL,
					"git-sync.outrigger.dev/link":                    "current",
					"git-sync.outrigger.dev/depth":                   "0", // dumb HTTP cannot serve shallow fetches
					"git-sync.outrigger.dev/period":                  "1s",
					"shard-ambassador.outrigger.dev/protocol":        "http",
					"shard-ambassador.outrigger.dev/listen":          "127.0.0.1:8090",
					"shard-ambassador.outrigger.dev/shards":          "git." + ns + ".svc.cluster.local:8000:1",
					"shard-ambassador.outrigger.dev/http-key-header": "X-Tenant",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever,
					Args: []string{"-listen=127.0.0.1:8000", "-name=all", "-config=/etc/config/app.conf", "-files=/git"},
				}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	clustertest.Eventually(t, 3*time.Minute, func() error {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=all"})
		if err != nil || len(list.Items) != 1 {
			return fmt.Errorf("pods of Deployment all: %v %v", len(list.Items), err)
		}
		pod = &list.Items[0]
		return podReady(pod)
	})
	defer dumpPod(t, ns, pod.Name)

	t.Run("five native sidecars, started and ready", func(t *testing.T) {
		want := []string{"topz", "config-sync", "git-sync", "shard-ambassador", "https-proxy"} // https-proxy's order is last
		if got := cluster.NativeSidecars(pod); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("native sidecars %v, want %v", got, want)
		}
		for _, s := range pod.Status.InitContainerStatuses {
			if s.State.Running == nil || !s.Ready || s.Started == nil || !*s.Started {
				t.Errorf("sidecar %s: running=%v ready=%v", s.Name, s.State.Running != nil, s.Ready)
			}
		}
	})
	ip := podIP(t, ns, pod.Name)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host}}}
	defer client.CloseIdleConnections()
	app := "https://" + net.JoinHostPort(ip, "8443")

	t.Run("https-proxy serves the app, topz lists it", func(t *testing.T) {
		if body := get(t, client, app+"/"); !strings.HasPrefix(body, "hello from all\n") {
			t.Errorf("through the proxy: %q", body)
		}
		if body := get(t, nil, "http://"+net.JoinHostPort(ip, "8080")+"/topz"); !strings.Contains(body, "/app -listen=127.0.0.1:8000 -name=all") {
			t.Errorf("/topz does not list the app:\n%s", body)
		}
	})
	t.Run("git-sync reaches the repository by its Service's name", func(t *testing.T) {
		if body := get(t, client, app+"/files/current/index.txt"); body != "v1\n" {
			t.Errorf("the app reads %q from the synced checkout, want %q", body, "v1\n")
		}
	})
	t.Run("shard-ambassador reaches its shard by DNS", func(t *testing.T) {
		metrics := get(t, nil, "http://"+net.JoinHostPort(ip, "9804")+"/readyz")
		t.Logf("shard-ambassador /readyz: %s", strings.TrimSpace(metrics))
	})
	t.Run("kubectl apply of the ConfigMap reaches the app's file and its reload", func(t *testing.T) {
		before := get(t, client, app+"/config")
		if !strings.Contains(before, "greeting=v1") {
			t.Fatalf("the app's config at start: %q, want greeting=v1", before)
		}
		applied := time.Now()
		kubectlApply(t, configMapYAML(ns, "greeting=v2\n"))
		clustertest.Eventually(t, 30*time.Second, func() error {
			body, err := getErr(client, app+"/config")
			if err != nil {
				return err
			}
			if !strings.Contains(body, "greeting=v2") || strings.HasPrefix(body, "loads: 1\n") {
				return fmt.Errorf("the app's config is %q, want greeting=v2 after a reload", body)
			}
			return nil
		})
		t.Logf("kubectl apply → the app reloaded the new file in %s", time.Since(applied).Round(time.Millisecond))
	})
}

// TestAJobWithASidecarCompletes: a Job's pod with a native sidecar completes when its app exits (the kubelet
// stops the sidecar), which plain sidecar containers never allowed.
func TestAJobWithASidecarCompletes(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "batch"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	backoff := int32(0)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "report"},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"outrigger.dev/inject": "topz"}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever, Args: []string{"-listen=:8000", "-exit-after=3s"},
					}},
				},
			},
		},
	}
	if _, err := env.cluster.Client().BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clustertest.Eventually(t, 2*time.Minute, func() error {
		j, err := env.cluster.Client().BatchV1().Jobs(ns).Get(ctx, "report", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				return fmt.Errorf("the Job failed: %s", c.Message)
			}
			if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not complete: %d active, %d succeeded", j.Status.Active, j.Status.Succeeded)
	})
	t.Logf("the Job completed %s after it was created (its app runs 3 s)", time.Since(start).Round(time.Millisecond))
	pods, err := env.cluster.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=report"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the Job's pods: %v %v", pods, err)
	}
	if got := cluster.NativeSidecars(&pods.Items[0]); len(got) != 1 || got[0] != "topz" {
		t.Errorf("the Job's pod has native sidecars %v, want [topz]", got)
	}
}

// serveRepository runs a git server pod (the test app serving the repository's directory over git's dumb
// HTTP protocol from a hostPath volume) behind a Service named git, and returns the repository's URL by
// that Service's DNS name.
func serveRepository(t *testing.T, ns string, repo *repository) string {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "git-server", "outrigger.dev/injection": "disabled"}
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "git-server", Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "http", Image: env.appRef, ImagePullPolicy: corev1.PullNever,
				Args:         []string{"-listen=:8000", "-name=git-server", "-files=/srv"},
				VolumeMounts: []corev1.VolumeMount{{Name: "repo", MountPath: "/srv", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "repo", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: filepath.Dir(repo.bare)}}}},
		},
	}
	if _, err := env.cluster.Client().CoreV1().Pods(ns).Create(ctx, server, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "git"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "git-server"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8000, TargetPort: intstr.FromInt32(8000)},
		}},
	}
	if _, err := env.cluster.Client().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ns, "git-server", time.Minute, podReady)
	return "http://git." + ns + ".svc.cluster.local:8000/files/" + filepath.Base(repo.bare)
}

func configMapYAML(ns, content string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\n  namespace: %s\ndata:\n  app.conf: %q\n", ns, content)
}

// kubectlApply runs `kubectl apply -f -` with manifest on its standard input.
func kubectlApply(t *testing.T, manifest string) {
	t.Helper()
	out, err := runCmdIn(manifest, env.kubectl, "--kubeconfig", env.cluster.Kubeconfig(), "apply", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}
