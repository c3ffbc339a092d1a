package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// CheckSidecar is the sidecar CheckInjection asks for: built in, and needs no parameter.
const CheckSidecar = "topz"

// CheckInjection proves an installation from the API server's side (the chart's `helm test`): it creates
// a server-side dry-run pod asking for CheckSidecar in namespace ns and returns nil only if the pod the
// API server returns has it. Nothing is stored. While the webhook cannot be reached (just installed, not
// ready yet) it retries for up to 30 s; a refusal that will not change (RBAC, a pod without the sidecar)
// fails at once. The error says what to look at. cfg nil means
// ctrl.GetConfig (in-cluster or KUBECONFIG).
func CheckInjection(ctx context.Context, cfg *rest.Config, ns string, log logr.Logger) error {
	if cfg == nil {
		var err error
		if cfg, err = ctrl.GetConfig(); err != nil {
			return fmt.Errorf("finding the API server (KUBECONFIG or in-cluster): %w", err)
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	no, yes := false, true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "outrigger-check-",
			Annotations:  map[string]string{inject.AnnotationInject: CheckSidecar},
		},
		// Acceptable to the "restricted" Pod Security Standard, so that the check works in such namespaces.
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "app", Image: "outrigger.invalid/check:0",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		var retry bool
		retry, err = checkOnce(ctx, cs, ns, pod)
		if err == nil {
			log.Info("injection works: a dry-run pod came back with the sidecar", "namespace", ns, "sidecar", CheckSidecar, "attempts", attempt)
			return nil
		}
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		log.Info("injection check failed; retrying", "attempt", attempt, "error", err.Error())
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(time.Duration(attempt)*time.Second, 5*time.Second)):
		}
	}
}

// checkOnce makes one attempt; retry says whether another might succeed (the webhook not reachable yet,
// a timeout), as opposed to a refusal that will not change (RBAC, a missing namespace, no sidecar).
func checkOnce(ctx context.Context, cs kubernetes.Interface, ns string, pod *corev1.Pod) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		final := apierrors.IsForbidden(err) && !strings.Contains(err.Error(), "failed calling webhook") ||
			apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsUnauthorized(err)
		return !final, fmt.Errorf("creating a dry-run pod in namespace %s: %w", ns, err)
	}
	var containers []string
	for _, c := range append(got.Spec.InitContainers, got.Spec.Containers...) {
		containers = append(containers, c.Name)
	}
	status, _ := inject.ReadStatus(got)
	if slices.Contains(containers, CheckSidecar) && slices.Contains(status.Sidecars, CheckSidecar) {
		return false, nil
	}
	return false, fmt.Errorf("a dry-run pod in namespace %s asking for %s came back without it (containers %v): the API server did not call the webhook "+
		"(check the MutatingWebhookConfiguration's namespaceSelector, objectSelector and matchConditions), or the call failed and failurePolicy Ignore "+
		"admitted the pod (check the caBundle and the webhook's logs)", ns, CheckSidecar, containers)
}
