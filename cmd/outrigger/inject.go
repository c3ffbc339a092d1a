package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/manifests"
)

const injectHelp = `Usage: outrigger inject -f FILE|- [--config FILE] [--namespace NS] [--namespace-inject LIST] [-q]
       outrigger inject -f FILE|- (--kubeconfig F | --context C | --cluster) [--config FILE]

Injects sidecars into manifests (Pods and the pod templates of workloads, in YAML or JSON streams and
Lists) with the webhook's own injection core, and writes them to standard output; decisions and warnings go
to standard error. If any object is denied, nothing is written. Offline, the namespace's annotation is
--namespace-inject; in cluster mode it is read from the cluster, with the cluster's config.

Examples:
  outrigger inject -f deploy.yaml | kubectl apply -f -
  outrigger inject -f deploy.yaml --namespace-inject topz --config outrigger.yaml
  kubectl get deploy web -o yaml | outrigger inject -f - --cluster

Flags:
`

func injectCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outrigger inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, injectHelp); fs.PrintDefaults() }
	file := fs.String("f", "", "manifest file to read, or - for standard input (required)")
	configFile := fs.String("config", "", "the injector's config file (default: the built-in defaults)")
	namespace := fs.String("namespace", "default", "namespace for objects that name none")
	nsAnnotation := fs.String("namespace-inject", "", "stand-in for the namespace's outrigger.dev/inject annotation")
	quiet := fs.Bool("q", false, "do not print decisions and warnings to standard error")
	kubeconfig := fs.String("kubeconfig", "", "cluster mode: read each namespace's labels and annotations, and the injector's config (unless --config), from this cluster")
	kubeContext := fs.String("context", "", "cluster mode with this kubeconfig context")
	useCluster := fs.Bool("cluster", false, "cluster mode with kubectl's default kubeconfig ($KUBECONFIG, ~/.kube/config, in-cluster)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "outrigger inject: -f is required: a manifest file, or - for standard input")
		return 2
	}
	opts := manifests.Options{Namespace: *namespace}
	if *kubeconfig != "" || *kubeContext != "" || *useCluster {
		if *nsAnnotation != "" {
			fmt.Fprintln(stderr, "outrigger inject: --namespace-inject stands in for a namespace offline; in cluster mode the namespace's own annotation is read")
			return 2
		}
		cf := clusterFlags{kubeconfig: *kubeconfig, context: *kubeContext, namespace: *namespace, configFile: *configFile}
		s, err := cf.connect(context.Background())
		if err != nil {
			fmt.Fprintf(stderr, "outrigger inject: %v\n", err)
			return 1
		}
		opts.Config = s.cfg
		opts.NamespaceLookup = func(name string) (map[string]string, map[string]string, error) {
			ns, err := s.client.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, err
			}
			return ns.Labels, ns.Annotations, nil
		}
	} else {
		cfg, err := config.Load(*configFile, "")
		if err != nil {
			fmt.Fprintf(stderr, "outrigger inject: %v\n", err)
			return 1
		}
		opts.Config = cfg
	}
	in := stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintf(stderr, "outrigger inject: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	if *nsAnnotation != "" {
		opts.NamespaceAnnotations = map[string]string{"outrigger.dev/inject": *nsAnnotation}
	}
	report, err := manifests.Inject(in, stdout, opts)
	if report != nil && !*quiet {
		for _, o := range report.Objects {
			for _, d := range o.Decisions {
				name := d.Sidecar
				if name == "" {
					name = "pod"
				}
				fmt.Fprintf(stderr, "%s %s/%s: %s: %s\n", o.Kind, o.Namespace, o.Name, name, d.Message)
			}
			for _, w := range o.Warnings {
				fmt.Fprintf(stderr, "%s %s/%s: warning: %s\n", o.Kind, o.Namespace, o.Name, strings.TrimPrefix(w, "outrigger: "))
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "outrigger inject: nothing written:\n%v\n", err)
		return 1
	}
	return 0
}
