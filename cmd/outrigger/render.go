package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/policy"
)

const renderHelp = `Usage: outrigger render --policy [--config FILE] [--api-version v1beta1|v1] [--sidecars a,b]

Writes the injector's catalog as admission policies, for clusters that inject with no webhook: a
MutatingAdmissionPolicy that adds what the webhook would add, a ValidatingAdmissionPolicy that refuses what
it would deny, and their bindings (cluster-scoped, named outrigger-inject and outrigger-validate). Apply them
with kubectl; they need Kubernetes 1.34+ with the MutatingAdmissionPolicy feature gate and
--runtime-config=admissionregistration.k8s.io/v1beta1=true (v1beta1, the default), or 1.36 (--api-version v1).

Standard error lists the sidecars rendered, any entry refused with the reason (a pod asking for it is
denied and told so), and how every pod's result differs from the webhook's. See docs/cli.md.

Examples:
  outrigger render --policy | kubectl apply -f -
  outrigger render --policy --config outrigger.yaml --sidecars topz,https-proxy > policy.yaml

Flags:
`

func renderCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outrigger render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, renderHelp); fs.PrintDefaults() }
	asPolicy := fs.Bool("policy", false, "render admission policies (the only output so far; required)")
	configFile := fs.String("config", "", "the injector's config file (default: the built-in defaults)")
	apiVersion := fs.String("api-version", "v1beta1", "admissionregistration.k8s.io version: v1beta1 (Kubernetes 1.34, 1.35) or v1 (1.36)")
	sidecars := fs.String("sidecars", "", "only these sidecars (comma-separated; default: the whole catalog)")
	quiet := fs.Bool("q", false, "do not print the report to standard error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if !*asPolicy {
		fmt.Fprintln(stderr, "outrigger render: say what to render: --policy (admission policies in place of the webhook)")
		return 2
	}
	versions := map[string]string{"v1beta1": policy.V1beta1, "v1": policy.V1}
	version, ok := versions[*apiVersion]
	if !ok {
		fmt.Fprintf(stderr, "outrigger render: --api-version %q: want v1beta1 or v1\n", *apiVersion)
		return 2
	}
	cfg, err := config.Load(*configFile, "")
	if err != nil {
		fmt.Fprintf(stderr, "outrigger render: %v\n", err)
		return 1
	}
	opts := policy.Options{APIVersion: version}
	for _, s := range strings.Split(*sidecars, ",") {
		if s = strings.TrimSpace(s); s != "" {
			opts.Sidecars = append(opts.Sidecars, s)
		}
	}
	res, err := policy.Render(cfg, opts)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger render: %v\n", err)
		return 1
	}
	for i, obj := range res.Objects {
		data, err := yaml.Marshal(obj)
		if err != nil {
			fmt.Fprintf(stderr, "outrigger render: %v\n", err)
			return 1
		}
		if i > 0 {
			fmt.Fprintln(stdout, "---")
		}
		_, _ = stdout.Write(data)
	}
	if !*quiet {
		fmt.Fprintf(stderr, "rendered: %s\n", strings.Join(res.Rendered, ", "))
		for _, r := range res.Refused {
			fmt.Fprintf(stderr, "refused: %s: %s\n", r.Sidecar, r.Reason)
		}
		for _, d := range res.Differences {
			fmt.Fprintf(stderr, "differs from the webhook: %s\n", d)
		}
	}
	return 0
}
