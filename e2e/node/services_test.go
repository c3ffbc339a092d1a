package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestPodsUseTheClustersServicesAndNames shows what the book's examples need from a cluster and the API-only
// harness never had: from inside a pod, the kubernetes Service's name resolves through cluster DNS, the API
// server answers through that Service's ClusterIP (TLS verified with the service account's CA), and the
// pods of a headless StatefulSet have stable names (redis-0.redis in the book) that resolve to their IPs.
func TestPodsUseTheClustersServicesAndNames(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "names"
	clustertest.CreateNamespace(t, env.cluster, ns, map[string]string{"outrigger.dev/injection": "disabled"}, nil)
	labels := map[string]string{"app": "web"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}},
	}
	if _, err := env.cluster.Client().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := int32(2)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "web", Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever, Args: []string{"-listen=:8000", "-name=web"},
				}}},
			},
		},
	}
	if _, err := env.cluster.Client().AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer dumpPod(t, ns, "web-0")
	waitPod(t, ns, "web-0", 2*time.Minute, podReady)
	waitPod(t, ns, "web-1", 2*time.Minute, podReady)
	ip0, ip1 := podIP(t, ns, "web-0"), podIP(t, ns, "web-1")
	app := "http://" + net.JoinHostPort(ip0, "8000")

	t.Run("the kubernetes Service resolves to its ClusterIP", func(t *testing.T) {
		for _, name := range []string{"kubernetes.default.svc.cluster.local", "kubernetes.default"} {
			if got := strings.TrimSpace(get(t, nil, app+"/resolve?name="+name)); got != cluster.KubernetesSvcIP {
				t.Errorf("in a pod, %s resolves to %q, want %s", name, got, cluster.KubernetesSvcIP)
			}
		}
	})
	t.Run("the API server answers through the kubernetes Service", func(t *testing.T) {
		body := get(t, nil, app+"/kube")
		if !strings.HasPrefix(body, "200 ") || !strings.Contains(body, `"gitVersion": "v1.34`) {
			t.Errorf("GET https://kubernetes.default.svc/version from a pod: %q", body)
		}
	})
	t.Run("StatefulSet pods have stable names", func(t *testing.T) {
		// From web-0: its own name and its sibling's, short (the pod's search path) and in full.
		for name, want := range map[string]string{
			"web-0.web":                         ip0,
			"web-1.web":                         ip1,
			"web-1.web.names.svc.cluster.local": ip1,
		} {
			clustertest.Eventually(t, 30*time.Second, func() error {
				got, err := getErr(nil, app+"/resolve?name="+name)
				if err != nil {
					return err
				}
				if strings.TrimSpace(got) != want {
					return fmt.Errorf("in pod web-0, %s resolves to %q, want %s", name, got, want)
				}
				return nil
			})
		}
	})
	t.Run("the host resolves the cluster's names too", func(t *testing.T) {
		addrs, err := cluster.LookupHost(ctx, "web-0.web.names.svc.cluster.local")
		if err != nil || len(addrs) != 1 || addrs[0] != ip0 {
			t.Errorf("from the host, web-0.web.names.svc.cluster.local: %v %v, want %s", addrs, err, ip0)
		}
	})
}
