package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/drift"
	"github.com/outrigger-dev/outrigger/webhook/inject"
	"github.com/outrigger-dev/outrigger/webhook/manifests"
)

const explainHelp = `Usage: outrigger explain pod NAME [-n NS] [--kubeconfig F] [--config FILE]
       outrigger explain -f FILE|- [--config FILE] [--namespace NS] [--namespace-inject LIST]

For each sidecar of the catalog: whether it is injected and why (the pod's annotation, the namespace's,
the cluster default, an excluded namespace, an opt-out label that keeps the webhook from being called,
hostNetwork), each parameter's effective value and where it comes from (an annotation or the catalog's
default), and what would be denied. The decisions are the injection core's own, as the webhook makes them.

With "pod NAME" the pod is read from the cluster, and the explanation is of today's config applied to the
pod as it was submitted, followed by how the running pod's sidecars compare with it (outrigger status).
With -f, manifests are read from a file (Pods and workloads' pod templates), offline.

Examples:
  outrigger explain pod web-7d9c8 -n shop
  outrigger explain -f deploy/web.yaml --namespace-inject topz

Flags:
`

func explainCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outrigger explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, explainHelp); fs.PrintDefaults() }
	var cf clusterFlags
	cf.register(fs)
	file := fs.String("f", "", "manifest file to explain offline, or - for standard input")
	nsAnnotation := fs.String("namespace-inject", "", "with -f: stand-in for the namespace's outrigger.dev/inject annotation")
	// "pod NAME" may come before the flags or after them.
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		args = fs.Args()
		if len(args) > 0 {
			positional, args = append(positional, args[0]), args[1:]
		}
	}
	switch {
	case *file != "" && len(positional) == 0:
		return explainFile(*file, cf, *nsAnnotation, stdin, stdout, stderr)
	case *file == "" && len(positional) == 2 && (positional[0] == "pod" || positional[0] == "pods" || positional[0] == "po"):
		return explainPod(ctx, cf, positional[1], stdout, stderr)
	}
	fmt.Fprintln(stderr, "outrigger explain: want `pod NAME` (read from the cluster) or `-f FILE` (offline)")
	return 2
}

func explainPod(ctx context.Context, cf clusterFlags, name string, stdout, stderr io.Writer) int {
	s, err := cf.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger explain: %v\n", err)
		return 1
	}
	if s.namespace == "" {
		fmt.Fprintln(stderr, "outrigger explain: a pod is in one namespace: use -n, not -A")
		return 2
	}
	pod, err := s.client.CoreV1().Pods(s.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "outrigger explain: %v\n", err)
		return 1
	}
	namespaces, err := s.namespaces(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger explain: %v\n", err)
		return 1
	}
	rep := drift.Compare(pod, namespaces[s.namespace], s.cfg)
	e := explanation{Kind: "Pod", Namespace: s.namespace, Name: pod.Name, Denied: rep.Denied}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		e.Owner = ref.Kind + "/" + ref.Name
	}
	if rep.Today != nil {
		e.Decisions, e.Warnings, e.Requested, e.Source = rep.Today.Decisions, rep.Today.Warnings, rep.Today.Requested, rep.Today.Source
	}
	e.Live = rep.Sidecars
	e.print(stdout, s.cfg, s.configSource)
	return 0
}

func explainFile(file string, cf clusterFlags, nsAnnotation string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := config.Load(cf.configFile, cf.injectorNamespace)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger explain: %v\n", err)
		return 1
	}
	in := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintf(stderr, "outrigger explain: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	opts := manifests.Options{Config: cfg, Namespace: cf.namespace, Explain: true}
	if nsAnnotation != "" {
		opts.NamespaceAnnotations = map[string]string{inject.AnnotationInject: nsAnnotation}
	}
	report, err := manifests.Inject(in, io.Discard, opts)
	if report == nil {
		fmt.Fprintf(stderr, "outrigger explain: %v\n", err)
		return 1
	}
	source := "the built-in defaults"
	if cf.configFile != "" {
		source = cf.configFile
	}
	for i, o := range report.Objects {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		e := explanation{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Decisions: o.Decisions, Warnings: o.Warnings,
			Requested: o.Requested, Source: o.Source, Denied: o.Denied}
		e.print(stdout, cfg, source)
	}
	return 0
}

// explanation is one pod's (or pod template's) injection, told sidecar by sidecar.
type explanation struct {
	Kind, Namespace, Name, Owner string
	Decisions                    []inject.Decision
	Warnings                     []string
	Requested                    []string
	Source                       string
	Denied                       error
	// Live are the running pod's sidecars compared with today's (explain pod only).
	Live []drift.Sidecar
}

func (e explanation) print(w io.Writer, cfg *config.Config, configSource string) {
	header := fmt.Sprintf("%s %s/%s", e.Kind, e.Namespace, e.Name)
	if e.Owner != "" {
		header += " (of " + e.Owner + ")"
	}
	fmt.Fprintf(w, "%s, with the config from %s:\n", header, configSource)
	if e.Denied != nil {
		fmt.Fprintln(w, "  would be denied:")
		for _, p := range deniedProblems(e.Denied) {
			fmt.Fprintf(w, "    - %s\n", p)
		}
	} else if e.Source != "" {
		fmt.Fprintf(w, "  sidecars asked for: %s\n", describeList(e.Requested, e.Source, e.Namespace))
	}
	var podSkip *inject.Decision
	for i, d := range e.Decisions {
		if d.Sidecar == "" && d.Action == inject.ActionSkipped {
			podSkip = &e.Decisions[i]
		}
	}
	for _, name := range cfg.Catalog.Names() {
		d := decisionFor(e.Decisions, name)
		switch {
		case d != nil && d.Action == inject.ActionInjected:
			fmt.Fprintf(w, "  %s: %s\n", name, strings.TrimPrefix(d.Message, name+" "))
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, p := range d.Parameters {
				from := "catalog default"
				if p.From != "" {
					from = "annotation " + p.From
				} else if p.DefaultFrom != "" {
					from = p.DefaultFrom
				} else if p.Value == "" {
					from = "not set (no default)"
				}
				fmt.Fprintf(tw, "      %s\t= %s\t(%s)\n", p.Name, quoteEmpty(p.Value), from)
			}
			_ = tw.Flush()
		case d != nil:
			fmt.Fprintf(w, "  %s: not injected: %s\n", name, d.Message)
		case e.Denied != nil:
			continue
		case podSkip != nil:
			fmt.Fprintf(w, "  %s: not injected: %s%s\n", name, podSkip.Message, selectorNote(podSkip.Reason))
		default:
			fmt.Fprintf(w, "  %s: not injected: not in that list\n", name)
		}
		for _, l := range e.Live {
			if l.Name == name {
				fmt.Fprintf(w, "      in the running pod: %s: %s\n", l.State, l.Reason)
				for _, c := range l.Changes {
					fmt.Fprintf(w, "        %s\n", c)
				}
			}
		}
	}
	for _, warning := range e.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", strings.TrimPrefix(warning, "outrigger: "))
	}
}

func decisionFor(ds []inject.Decision, name string) *inject.Decision {
	for i := range ds {
		if ds[i].Sidecar == name {
			return &ds[i]
		}
	}
	return nil
}

// describeList says where the sidecar list came from.
func describeList(names []string, source, namespace string) string {
	list := strings.Join(names, ", ")
	switch source {
	case inject.SourcePod:
		return list + " (the pod's " + inject.AnnotationInject + " annotation)"
	case inject.SourceNamespace:
		return list + " (namespace " + namespace + "'s " + inject.AnnotationInject + " annotation)"
	case inject.SourceCluster:
		return list + " (the cluster-wide defaults in the injector's config)"
	case inject.ReasonDefaultsOptedOut:
		return "none: the pod or its namespace opted out with " + inject.AnnotationInject + "=none"
	}
	return "none: no " + inject.AnnotationInject + " annotation on the pod or its namespace, and no cluster-wide default"
}

// selectorNote adds, for an opt-out label, that the webhook is not even called.
func selectorNote(reason string) string {
	if reason == inject.ReasonPodOptedOut || reason == inject.ReasonNamespaceOptedOut {
		return " (the webhook's object and namespace selectors leave such pods out: the webhook is never called)"
	}
	return ""
}

func deniedProblems(err error) []string {
	var d *inject.DeniedError
	if errors.As(err, &d) {
		return d.Problems
	}
	return []string{err.Error()}
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
