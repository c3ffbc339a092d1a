package clustertest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestControlPlane proves the harness gives a real API server: RBAC refuses an unprivileged user, and
// objects survive a restart of kube-apiserver (they live in etcd).
func TestControlPlane(t *testing.T) {
	c := Start(t)
	ctx := context.Background()
	CreateNamespace(t, c, "harness", nil, nil)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "harness"}, Data: map[string]string{"k": "v"}}
	if _, err := c.Client().CoreV1().ConfigMaps("harness").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	RestartAPIServer(t, c)
	got, err := c.Client().CoreV1().ConfigMaps("harness").Get(ctx, "x", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("after restart: %v %v", got, err)
	}
	_, err = kubernetes.NewForConfigOrDie(c.Impersonate("system:serviceaccount:harness:default")).CoreV1().ConfigMaps("harness").Get(ctx, "x", metav1.GetOptions{})
	if err == nil {
		t.Fatal("an unprivileged service account read a ConfigMap: RBAC is not enforced")
	}
}
