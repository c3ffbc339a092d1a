package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/drift"
)

// clusterFlags are kubectl's rules for reaching a cluster: --kubeconfig, else $KUBECONFIG, else
// ~/.kube/config, else the pod's service account when run in a cluster; --context; -n or -A. And where the
// injector's config comes from: --config FILE, else the ConfigMap the chart (or manifests/) installed.
type clusterFlags struct {
	kubeconfig, context, namespace string
	allNamespaces                  bool
	configFile, injectorNamespace  string
}

func (f *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fs.StringVar(&f.context, "context", "", "kubeconfig context (default: the current one)")
	fs.StringVar(&f.namespace, "n", "", "namespace (default: the context's, else default)")
	fs.StringVar(&f.namespace, "namespace", "", "same as -n")
	fs.BoolVar(&f.allNamespaces, "A", false, "all namespaces")
	fs.BoolVar(&f.allNamespaces, "all-namespaces", false, "same as -A")
	fs.StringVar(&f.configFile, "config", "", "the injector's config file (default: read from the cluster: the ConfigMap labelled app.kubernetes.io/part-of=outrigger)")
	fs.StringVar(&f.injectorNamespace, "injector-namespace", "", "the webhook's namespace (default: the namespace of its ConfigMap)")
}

// clusterSession is a connection to a cluster with the injector's config as the cluster uses it.
type clusterSession struct {
	client kubernetes.Interface
	// namespace is the one namespace asked for, or "" for all.
	namespace string
	cfg       *config.Config
	// configSource says where cfg came from, for the output.
	configSource string
}

// connect builds the client and reads the injector's config. It never needs the webhook to be up.
func (f *clusterFlags) connect(ctx context.Context) (*clusterSession, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to talk to (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster): %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	s := &clusterSession{client: client}
	if !f.allNamespaces {
		s.namespace = f.namespace
		if s.namespace == "" {
			if s.namespace, _, err = cc.Namespace(); err != nil {
				return nil, err
			}
		}
	}
	s.cfg, s.configSource, err = f.loadConfig(ctx, client)
	return s, err
}

// loadConfig reads --config, or finds the injector's ConfigMap: the one labelled
// app.kubernetes.io/part-of=outrigger with a config.yaml key (the chart's <release>-config, manifests/'s
// outrigger-config).
func (f *clusterFlags) loadConfig(ctx context.Context, client kubernetes.Interface) (*config.Config, string, error) {
	if f.configFile != "" {
		cfg, err := config.Load(f.configFile, f.injectorNamespace)
		return cfg, f.configFile, err
	}
	list, err := client.CoreV1().ConfigMaps(f.injectorNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=outrigger"})
	if err != nil {
		return nil, "", fmt.Errorf("finding the injector's config (or give it with --config FILE): %w", err)
	}
	var found []corev1.ConfigMap
	for _, cm := range list.Items {
		if _, ok := cm.Data["config.yaml"]; ok {
			found = append(found, cm)
		}
	}
	switch len(found) {
	case 0:
		where := "any namespace"
		if f.injectorNamespace != "" {
			where = "namespace " + f.injectorNamespace
		}
		return nil, "", fmt.Errorf("no injector config in %s: no ConfigMap labelled app.kubernetes.io/part-of=outrigger with a config.yaml key (is Outrigger installed? give the config with --config FILE)", where)
	case 1:
	default:
		var names []string
		for _, cm := range found {
			names = append(names, cm.Namespace+"/"+cm.Name)
		}
		return nil, "", fmt.Errorf("more than one injector config: %s; choose one with --injector-namespace NS or --config FILE", strings.Join(names, ", "))
	}
	cm := found[0]
	source := "ConfigMap " + cm.Namespace + "/" + cm.Name
	cfg, err := config.Parse([]byte(cm.Data["config.yaml"]), cm.Namespace)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", source, err)
	}
	return cfg, source, nil
}

// namespaces returns the namespaces in scope with their labels and annotations (which injection reads).
func (s *clusterSession) namespaces(ctx context.Context) (map[string]drift.Namespace, error) {
	out := map[string]drift.Namespace{}
	add := func(ns corev1.Namespace) {
		out[ns.Name] = drift.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
	}
	if s.namespace != "" {
		ns, err := s.client.CoreV1().Namespaces().Get(ctx, s.namespace, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		add(*ns)
		return out, nil
	}
	list, err := s.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, ns := range list.Items {
		add(ns)
	}
	return out, nil
}

// parseStates parses a comma-separated list of drift states (for --fail-on).
func parseStates(flagName, value string) ([]drift.State, error) {
	var out []drift.State
	for _, raw := range strings.Split(value, ",") {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		if !slices.Contains(drift.States, drift.State(name)) {
			var accepted []string
			for _, s := range drift.States {
				accepted = append(accepted, string(s))
			}
			return nil, fmt.Errorf("%s %q: unknown state %q; accepted: %s", flagName, value, name, strings.Join(accepted, ", "))
		}
		out = append(out, drift.State(name))
	}
	return out, nil
}
