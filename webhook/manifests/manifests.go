// Package manifests injects sidecars into Kubernetes manifests offline, for `outrigger inject`: Pods and
// the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and
// CronJobs, in Lists and multi-document YAML or JSON streams. It calls the same injection core as the
// webhook, with the same config file, so the output is what the webhook would admit.
//
// Only the pod template is replaced in each object; every other field is written back as it was read
// (as a generic map), so that the tool does not add or drop fields it does not own.
package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// Options for Inject.
type Options struct {
	Config *config.Config
	// Namespace is used for objects that name none (like kubectl's -n); "default" when empty.
	Namespace string
	// NamespaceAnnotations and NamespaceLabels stand for the target namespace's (optional).
	NamespaceAnnotations, NamespaceLabels map[string]string
	// NamespaceLookup, when set, gives each object's namespace's labels and annotations (read from a cluster)
	// in place of NamespaceAnnotations and NamespaceLabels.
	NamespaceLookup func(namespace string) (labels, annotations map[string]string, err error)
	// Explain fills the decisions' parameter records (inject.Input.Explain), for `outrigger explain -f`.
	Explain bool
}

// Report says, per object, what was decided.
type Report struct {
	Objects []ObjectReport
}

// ObjectReport is the outcome for one object.
type ObjectReport struct {
	Kind, Namespace, Name string
	Decisions             []inject.Decision
	Warnings              []string
	// Requested and Source are inject.Result's: the sidecars asked for and where the list came from.
	Requested []string
	Source    string
	// Denied is the injection core's refusal of this object, if any (Inject then writes nothing).
	Denied error
}

// templatePaths says where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// Inject reads YAML or JSON documents from r and writes them to w as YAML documents, with sidecars
// injected into every pod and pod template. Objects of other kinds are written back unchanged. If any
// object is denied, Inject writes nothing and returns an error naming each denied object and why.
func Inject(r io.Reader, w io.Writer, opts Options) (*Report, error) {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 64<<10)
	var out bytes.Buffer
	report := &Report{}
	var problems []error
	for doc := 1; ; doc++ {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: not valid YAML or JSON: %w", doc, err)
		}
		if obj == nil {
			continue // an empty document
		}
		u := &unstructured.Unstructured{Object: obj}
		if err := injectObject(u, opts, report); err != nil {
			problems = append(problems, fmt.Errorf("document %d (%s): %w", doc, describe(u), err))
			continue
		}
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("document %d: encoding: %w", doc, err)
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(data)
	}
	if len(problems) > 0 {
		return report, errors.Join(problems...)
	}
	_, err := w.Write(out.Bytes())
	return report, err
}

func injectObject(u *unstructured.Unstructured, opts Options, report *Report) error {
	kind := u.GetKind()
	if strings.HasSuffix(kind, "List") && u.IsList() {
		items, _, _ := unstructured.NestedSlice(u.Object, "items")
		for i, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				return fmt.Errorf("items[%d]: not an object", i)
			}
			child := &unstructured.Unstructured{Object: m}
			if err := injectObject(child, opts, report); err != nil {
				return fmt.Errorf("items[%d] (%s): %w", i, describe(child), err)
			}
			items[i] = child.Object
		}
		return unstructured.SetNestedSlice(u.Object, items, "items")
	}
	ns := u.GetNamespace()
	if ns == "" {
		ns = opts.Namespace
	}
	var path []string
	switch {
	case kind == "Pod" && (u.GetAPIVersion() == "v1"):
	case templatePaths[kind] != nil:
		path = templatePaths[kind]
	default:
		return nil // not a workload: written back as it was
	}

	// The pod (or a pod built from the template's metadata and spec) goes through the injection core.
	var podMap map[string]any
	if path == nil {
		podMap = u.Object
	} else {
		tmpl, found, err := unstructured.NestedMap(u.Object, path...)
		if err != nil || !found {
			return fmt.Errorf("%s has no pod template at %s", kind, strings.Join(path, "."))
		}
		podMap = tmpl
	}
	pod := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(podMap, pod); err != nil {
		return fmt.Errorf("reading the pod spec: %w", err)
	}
	nsLabels, nsAnnotations := opts.NamespaceLabels, opts.NamespaceAnnotations
	if opts.NamespaceLookup != nil {
		var err error
		if nsLabels, nsAnnotations, err = opts.NamespaceLookup(ns); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	res, err := inject.Inject(inject.Input{Pod: pod, Namespace: ns, Config: opts.Config,
		NamespaceAnnotations: nsAnnotations, NamespaceLabels: nsLabels, Explain: opts.Explain})
	if err != nil {
		report.Objects = append(report.Objects, ObjectReport{Kind: kind, Namespace: ns, Name: objectName(u), Denied: err})
		return err
	}
	report.Objects = append(report.Objects, ObjectReport{Kind: kind, Namespace: ns, Name: objectName(u), Decisions: res.Decisions, Warnings: res.Warnings,
		Requested: res.Requested, Source: res.Source})
	if !res.Changed {
		return nil
	}
	// Write back only metadata.annotations and spec; everything else in the object stays as read.
	annotations := res.Pod.Annotations
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&res.Pod.Spec)
	if err != nil {
		return fmt.Errorf("encoding the injected spec: %w", err)
	}
	target := u.Object
	if path != nil {
		target = podMap
	}
	if err := unstructured.SetNestedStringMap(target, annotations, "metadata", "annotations"); err != nil {
		return err
	}
	target["spec"] = spec
	if path != nil {
		return unstructured.SetNestedMap(u.Object, target, path...)
	}
	return nil
}

// describe names an object for messages: "Deployment web", or just "List".
func describe(u *unstructured.Unstructured) string {
	name := u.GetName()
	if name == "" {
		name = u.GetGenerateName()
	}
	return strings.TrimSpace(u.GetKind() + " " + name)
}

// objectName is the object's name, else its generateName ("web-": the API server completes it), else
// "(unnamed)".
func objectName(u *unstructured.Unstructured) string {
	switch {
	case u.GetName() != "":
		return u.GetName()
	case u.GetGenerateName() != "":
		return u.GetGenerateName()
	}
	return "(unnamed)"
}
