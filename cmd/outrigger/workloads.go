package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/webhook/drift"
)

// Workload is a set of pods with one owner: a Deployment, StatefulSet, DaemonSet, CronJob, Job,
// ReplicaSet or ReplicationController without an owner of its own, or a bare Pod.
type Workload struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	// State is the workload's worst sidecar state (see severity).
	State drift.State `json:"state"`
	// Sidecars sums up each sidecar over the pods.
	Sidecars []SidecarSummary `json:"sidecars"`
	Pods     []PodStatus      `json:"pods"`
}

// SidecarSummary is one sidecar of a workload: how many pods are in each state, and the distinct reasons
// and changes.
type SidecarSummary struct {
	Name    string              `json:"name"`
	States  map[drift.State]int `json:"states"`
	Reasons []string            `json:"reasons,omitempty"`
	Changes []string            `json:"changes,omitempty"`
}

// PodStatus is one pod's verdict.
type PodStatus struct {
	Name     string          `json:"name"`
	Sidecars []drift.Sidecar `json:"sidecars"`
}

// Ref is "Kind/name", how the workload is named on the command line and in the output.
func (w *Workload) Ref() string { return w.Kind + "/" + w.Name }

// severity orders states for a workload's summary: the worst one shows.
var severity = map[drift.State]int{drift.Current: 0, drift.Unexpected: 1, drift.Stale: 2, drift.Missing: 3, drift.Refused: 4}

// PodsIn counts the pods with at least one sidecar in state s.
func (w *Workload) PodsIn(s drift.State) int {
	n := 0
	for _, p := range w.Pods {
		if slices.ContainsFunc(p.Sidecars, func(sc drift.Sidecar) bool { return sc.State == s }) {
			n++
		}
	}
	return n
}

// Has reports whether any pod has a sidecar in one of states.
func (w *Workload) Has(states ...drift.State) bool {
	for _, s := range states {
		if w.PodsIn(s) > 0 {
			return true
		}
	}
	return false
}

// collectWorkloads compares every running pod in scope with today's config and groups the verdicts by
// workload. Pods that are finished or being deleted are left out (a rollout in progress). Workloads whose
// pods neither have nor should have a sidecar are counted in without.
func collectWorkloads(ctx context.Context, s *clusterSession) (workloads []*Workload, without int, err error) {
	namespaces, err := s.namespaces(ctx)
	if err != nil {
		return nil, 0, err
	}
	pods, err := s.client.CoreV1().Pods(s.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, 0, err
	}
	owners, err := newOwnerResolver(ctx, s)
	if err != nil {
		return nil, 0, err
	}
	byRef := map[string]*Workload{}
	plain := map[string]bool{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		kind, name := owners.workloadOf(pod)
		key := pod.Namespace + "/" + kind + "/" + name
		rep := drift.Compare(pod, namespaces[pod.Namespace], s.cfg)
		if len(rep.Sidecars) == 0 {
			plain[key] = true
			continue
		}
		w := byRef[key]
		if w == nil {
			w = &Workload{Namespace: pod.Namespace, Kind: kind, Name: name}
			byRef[key] = w
		}
		w.Pods = append(w.Pods, PodStatus{Name: pod.Name, Sidecars: rep.Sidecars})
	}
	for key := range plain {
		if byRef[key] == nil {
			without++
		}
	}
	for _, w := range byRef {
		w.summarize()
		workloads = append(workloads, w)
	}
	sort.Slice(workloads, func(i, j int) bool {
		a, b := workloads[i], workloads[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Ref() < b.Ref()
	})
	return workloads, without, nil
}

func (w *Workload) summarize() {
	sort.Slice(w.Pods, func(i, j int) bool { return w.Pods[i].Name < w.Pods[j].Name })
	byName := map[string]*SidecarSummary{}
	var order []string
	w.State = drift.Current
	for _, p := range w.Pods {
		for _, sc := range p.Sidecars {
			sum := byName[sc.Name]
			if sum == nil {
				sum = &SidecarSummary{Name: sc.Name, States: map[drift.State]int{}}
				byName[sc.Name] = sum
				order = append(order, sc.Name)
			}
			sum.States[sc.State]++
			if sc.State != drift.Current && !slices.Contains(sum.Reasons, sc.Reason) {
				sum.Reasons = append(sum.Reasons, sc.Reason)
			}
			for _, c := range sc.Changes {
				if !slices.Contains(sum.Changes, c) {
					sum.Changes = append(sum.Changes, c)
				}
			}
			if severity[sc.State] > severity[w.State] {
				w.State = sc.State
			}
		}
	}
	for _, name := range order {
		w.Sidecars = append(w.Sidecars, *byName[name])
	}
}

// ownerResolver maps a pod to its workload through its controller references: ReplicaSet → Deployment and
// Job → CronJob, from lists fetched once.
type ownerResolver struct {
	// owner["ns/Kind/name"] = the controller of that ReplicaSet or Job, when it has one.
	owner map[string]metav1.OwnerReference
}

func newOwnerResolver(ctx context.Context, s *clusterSession) (*ownerResolver, error) {
	r := &ownerResolver{owner: map[string]metav1.OwnerReference{}}
	rss, err := s.client.AppsV1().ReplicaSets(s.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing ReplicaSets: %w", err)
	}
	for _, rs := range rss.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil {
			r.owner[rs.Namespace+"/ReplicaSet/"+rs.Name] = *ref
		}
	}
	jobs, err := s.client.BatchV1().Jobs(s.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Jobs: %w", err)
	}
	for _, j := range jobs.Items {
		if ref := metav1.GetControllerOf(&j); ref != nil {
			r.owner[j.Namespace+"/Job/"+j.Name] = *ref
		}
	}
	return r, nil
}

func (r *ownerResolver) workloadOf(pod *corev1.Pod) (kind, name string) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return "Pod", pod.Name
	}
	kind, name = ref.Kind, ref.Name
	if up, ok := r.owner[pod.Namespace+"/"+kind+"/"+name]; ok {
		return up.Kind, up.Name
	}
	return kind, name
}

// describeStates is "stale: topz (2/3 pods); missing: config-sync (1/3 pods)", or "current".
func (w *Workload) describeStates() string {
	var parts []string
	for _, st := range []drift.State{drift.Refused, drift.Missing, drift.Stale, drift.Unexpected} {
		var names []string
		for _, sc := range w.Sidecars {
			if n := sc.States[st]; n > 0 {
				names = append(names, fmt.Sprintf("%s (%d/%d pods)", sc.Name, n, len(w.Pods)))
			}
		}
		if len(names) > 0 {
			parts = append(parts, string(st)+": "+strings.Join(names, ", "))
		}
	}
	if len(parts) == 0 {
		return string(drift.Current)
	}
	return strings.Join(parts, "; ")
}
