package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/outrigger-dev/outrigger/webhook/drift"
)

const restartHelp = `Usage: outrigger restart (--stale | --missing | KIND/NAME ...) [-n NS | -A] [--dry-run] [--wait=false] [--timeout 5m] [--include-pods]

Rolls the workloads whose pods carry stale sidecars or miss one (as "outrigger status" reports them), one
at a time, the way "kubectl rollout restart" does: a kubectl.kubernetes.io/restartedAt annotation on the pod
template, then (unless --wait=false) waiting for the rollout to finish before the next workload. New pods
go through the webhook and get today's sidecars.

Deployments, StatefulSets and DaemonSets are rolled. Jobs and CronJobs are not (their next run gets today's
sidecars); bare pods are deleted only with --include-pods, and nothing recreates them. A workload whose pods
today's config refuses is never restarted: its new pods would be denied.

Examples:
  outrigger restart -A --stale --dry-run
  outrigger restart -n shop --stale --missing
  outrigger restart -n shop deployment/web statefulset/cache

Flags:
`

// restartAnnotation is kubectl's: the same annotation makes "kubectl rollout history" read naturally.
const restartAnnotation = "kubectl.kubernetes.io/restartedAt"

func restartCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outrigger restart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, restartHelp); fs.PrintDefaults() }
	var cf clusterFlags
	cf.register(fs)
	stale := fs.Bool("stale", false, "restart the workloads with stale sidecars")
	missing := fs.Bool("missing", false, "restart the workloads whose pods miss a sidecar")
	dryRun := fs.Bool("dry-run", false, "print the plan, change nothing")
	waitFor := fs.Bool("wait", true, "wait for each rollout to finish before the next")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for one rollout")
	includePods := fs.Bool("include-pods", false, "also delete bare pods (owned by nothing: nothing recreates them)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	named := fs.Args()
	if !*stale && !*missing && len(named) == 0 {
		fmt.Fprintln(stderr, "outrigger restart: say what to restart: --stale, --missing, or workloads as KIND/NAME (deployment/web)")
		return 2
	}
	var refs []string
	for _, n := range named {
		ref, err := canonicalRef(n)
		if err != nil {
			fmt.Fprintf(stderr, "outrigger restart: %v\n", err)
			return 2
		}
		refs = append(refs, ref)
	}
	s, err := cf.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger restart: %v\n", err)
		return 1
	}
	workloads, _, err := collectWorkloads(ctx, s)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger restart: %v\n", err)
		return 1
	}
	var plan []*Workload
	for _, w := range workloads {
		if slices.Contains(refs, w.Ref()) || *stale && w.Has(drift.Stale) || *missing && w.Has(drift.Missing) {
			plan = append(plan, w)
		}
	}
	for _, ref := range refs {
		if !slices.ContainsFunc(plan, func(w *Workload) bool { return w.Ref() == ref }) {
			fmt.Fprintf(stderr, "outrigger restart: %s: no pods with Outrigger sidecars%s\n", ref, inNamespace(s.namespace))
			return 1
		}
	}
	if len(plan) == 0 {
		fmt.Fprintln(stdout, "nothing to restart: no workload is", strings.Join(asked(*stale, *missing), " or "))
		return 0
	}
	failed := false
	for _, w := range plan {
		name := fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name)
		why := w.describeStates()
		if skip := notRestartable(w, *includePods); skip != "" {
			fmt.Fprintf(stdout, "%s (%s): skipped: %s\n", name, why, skip)
			continue
		}
		if *dryRun {
			verb := "would restart"
			if w.Kind == "Pod" {
				verb = "would delete"
			}
			fmt.Fprintf(stdout, "%s (%s): %s\n", name, why, verb)
			continue
		}
		start := time.Now()
		if err := restart(ctx, s, w); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			failed = true
			continue
		}
		if w.Kind == "Pod" {
			fmt.Fprintf(stdout, "%s (%s): deleted\n", name, why)
			continue
		}
		if !*waitFor {
			fmt.Fprintf(stdout, "%s (%s): restarted\n", name, why)
			continue
		}
		if err := waitRollout(ctx, s, w, *timeout); err != nil {
			fmt.Fprintf(stderr, "%s: restarted, but %v\n", name, err)
			failed = true
			break // the next rollout would stack on a broken one
		}
		fmt.Fprintf(stdout, "%s (%s): restarted, rolled out in %s\n", name, why, time.Since(start).Round(100*time.Millisecond))
	}
	if failed {
		return 1
	}
	return 0
}

func asked(stale, missing bool) []string {
	var out []string
	if stale {
		out = append(out, "stale")
	}
	if missing {
		out = append(out, "missing a sidecar")
	}
	return out
}

func inNamespace(ns string) string {
	if ns == "" {
		return ""
	}
	return " in namespace " + ns
}

// kindNames maps what a user may write (kubectl's names and short names) to a Kind.
var kindNames = map[string]string{
	"deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
	"statefulset": "StatefulSet", "statefulsets": "StatefulSet", "sts": "StatefulSet",
	"daemonset": "DaemonSet", "daemonsets": "DaemonSet", "ds": "DaemonSet",
	"pod": "Pod", "pods": "Pod", "po": "Pod",
}

// canonicalRef turns "deploy/web" into "Deployment/web".
func canonicalRef(s string) (string, error) {
	kind, name, ok := strings.Cut(s, "/")
	k, known := kindNames[strings.ToLower(kind)]
	if !ok || name == "" || !known {
		return "", fmt.Errorf("%q: want KIND/NAME with KIND one of deployment, statefulset, daemonset or pod", s)
	}
	return k + "/" + name, nil
}

// notRestartable says why a workload is left alone, or "".
func notRestartable(w *Workload, includePods bool) string {
	if w.Has(drift.Refused) {
		return "today's config refuses its pods' annotations, so new pods would be denied; fix them first (outrigger explain)"
	}
	switch w.Kind {
	case "Deployment", "StatefulSet", "DaemonSet":
		return ""
	case "Pod":
		if includePods {
			return ""
		}
		return "a bare pod: nothing would recreate it; delete and recreate it yourself, or pass --include-pods to delete it"
	case "Job", "CronJob":
		return "a " + w.Kind + "'s pods run to completion; its next run gets today's sidecars"
	}
	return "a " + w.Kind + " cannot be rolled; restart the workload that manages it"
}

func restart(ctx context.Context, s *clusterSession, w *Workload) error {
	if w.Kind == "Pod" {
		return s.client.CoreV1().Pods(w.Namespace).Delete(ctx, w.Name, metav1.DeleteOptions{})
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, restartAnnotation, time.Now().Format(time.RFC3339))
	var err error
	switch w.Kind {
	case "Deployment":
		_, err = s.client.AppsV1().Deployments(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "outrigger"})
	case "StatefulSet":
		ss, getErr := s.client.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if ss.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
			return fmt.Errorf("its updateStrategy is OnDelete: a new template rolls nothing; delete its pods one at a time instead")
		}
		_, err = s.client.AppsV1().StatefulSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "outrigger"})
	case "DaemonSet":
		ds, getErr := s.client.AppsV1().DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			return fmt.Errorf("its updateStrategy is OnDelete: a new template rolls nothing; delete its pods one at a time instead")
		}
		_, err = s.client.AppsV1().DaemonSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "outrigger"})
	}
	return err
}

// waitRollout waits as "kubectl rollout status" does: the controller has seen the new template, every
// replica is updated and available, and no old one is left.
func waitRollout(ctx context.Context, s *clusterSession, w *Workload, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		var done bool
		var err error
		done, last, err = rolledOut(ctx, s, w)
		return done, err
	})
	if err != nil && last != "" {
		return fmt.Errorf("the rollout did not finish in %s: %s", timeout, last)
	}
	return err
}

func rolledOut(ctx context.Context, s *clusterSession, w *Workload) (bool, string, error) {
	switch w.Kind {
	case "Deployment":
		d, err := s.client.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
				return false, "", fmt.Errorf("the rollout exceeded its progress deadline: %s", c.Message)
			}
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		if d.Generation <= st.ObservedGeneration && st.UpdatedReplicas == want && st.Replicas == st.UpdatedReplicas && st.AvailableReplicas == st.UpdatedReplicas {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d of %d replicas updated, %d available, %d in all", st.UpdatedReplicas, want, st.AvailableReplicas, st.Replicas), nil
	case "StatefulSet":
		ss, err := s.client.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := int32(1)
		if ss.Spec.Replicas != nil {
			want = *ss.Spec.Replicas
		}
		st := ss.Status
		if ss.Generation <= st.ObservedGeneration && st.UpdatedReplicas == want && st.ReadyReplicas == want && st.CurrentRevision == st.UpdateRevision {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d of %d replicas updated, %d ready", st.UpdatedReplicas, want, st.ReadyReplicas), nil
	case "DaemonSet":
		ds, err := s.client.AppsV1().DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		st := ds.Status
		if ds.Generation <= st.ObservedGeneration && st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberAvailable == st.DesiredNumberScheduled {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d of %d pods updated, %d available", st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberAvailable), nil
	}
	return true, "", nil
}
