package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/webhook/drift"
)

const statusHelp = `Usage: outrigger status [-n NS | -A] [-o table|json|yaml] [-v] [--fail-on STATES] [--config FILE]

Compares the sidecars of every running pod with what the injector's config would inject today, per
sidecar, and prints one line per workload (Deployment, StatefulSet, DaemonSet, CronJob, Job, bare Pod):
  current     the pod's sidecar is what today's config injects
  stale       today's catalog entry, image or rendered container differ (-v says which field)
  missing     today's config asks for the sidecar, the pod has none (admitted while the webhook was down,
              or before a namespace or cluster default was set)
  unexpected  the pod has the sidecar, today's config no longer asks for it
  refused     today's config would deny the pod's annotations (fix them before a restart)
The config is the one the cluster uses (the webhook's ConfigMap), or --config FILE; the webhook itself need
not be running. Exit status: 0, or 3 when a workload is in a --fail-on state, 1 on error, 2 on bad usage.

Examples:
  outrigger status -A
  outrigger status -n shop -v
  outrigger status -A --fail-on stale,missing     # a CI gate after an upgrade
  outrigger status -A -o json | jq '.workloads[] | select(.state != "current") | .name'

Flags:
`

// exitFound is the exit status when a workload is in a --fail-on state.
const exitFound = 3

// statusOutput is the JSON and YAML output (docs/cli.md documents its fields).
type statusOutput struct {
	Config    string      `json:"config"`
	Workloads []*Workload `json:"workloads"`
	Summary   summary     `json:"summary"`
}

type summary struct {
	// Workloads counts workloads by their worst state; Pods counts pods with a sidecar in each state.
	Workloads map[drift.State]int `json:"workloads"`
	Pods      map[drift.State]int `json:"pods"`
	// WithoutSidecars counts workloads that neither have nor should have a sidecar (not listed).
	WithoutSidecars int `json:"withoutSidecars"`
}

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outrigger status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, statusHelp); fs.PrintDefaults() }
	var cf clusterFlags
	cf.register(fs)
	output := fs.String("o", "table", "output: table, json or yaml")
	verbose := fs.Bool("v", false, "per sidecar: the reasons and which fields changed")
	failOn := fs.String("fail-on", "", "exit 3 when a workload has a sidecar in one of these states (comma-separated: stale,missing,unexpected,refused)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	gate, err := parseStates("--fail-on", *failOn)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger status: %v\n", err)
		return 2
	}
	if *output != "table" && *output != "json" && *output != "yaml" {
		fmt.Fprintf(stderr, "outrigger status: -o %q: want table, json or yaml\n", *output)
		return 2
	}
	s, err := cf.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger status: %v\n", err)
		return 1
	}
	workloads, without, err := collectWorkloads(ctx, s)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger status: %v\n", err)
		return 1
	}
	out := statusOutput{Config: s.configSource, Workloads: workloads, Summary: summarize(workloads, without)}
	if out.Workloads == nil {
		out.Workloads = []*Workload{}
	}
	switch *output {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	case "yaml":
		data, _ := yaml.Marshal(out)
		_, _ = stdout.Write(data)
	default:
		printStatusTable(stdout, out, *verbose)
	}
	for _, w := range workloads {
		if w.Has(gate...) {
			return exitFound
		}
	}
	return 0
}

func summarize(workloads []*Workload, without int) summary {
	sum := summary{Workloads: map[drift.State]int{}, Pods: map[drift.State]int{}, WithoutSidecars: without}
	for _, w := range workloads {
		sum.Workloads[w.State]++
		for _, st := range drift.States {
			if n := w.PodsIn(st); n > 0 {
				sum.Pods[st] += n
			}
		}
	}
	return sum
}

func printStatusTable(w io.Writer, out statusOutput, verbose bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(out.Workloads) > 0 {
		fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tPODS\tSIDECARS\tSTATE")
	}
	for _, wl := range out.Workloads {
		var names []string
		for _, sc := range wl.Sidecars {
			names = append(names, sc.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", wl.Namespace, wl.Ref(), len(wl.Pods), strings.Join(names, ","), wl.describeStates())
	}
	_ = tw.Flush()
	if verbose {
		// The details after the table, so that long reasons do not widen its columns.
		for _, wl := range out.Workloads {
			if wl.State == drift.Current {
				continue
			}
			fmt.Fprintf(w, "\n%s %s/%s:\n", wl.Kind, wl.Namespace, wl.Name)
			for _, sc := range wl.Sidecars {
				for _, r := range sc.Reasons {
					fmt.Fprintf(w, "  %s: %s\n", sc.Name, r)
				}
				for _, c := range sc.Changes {
					fmt.Fprintf(w, "    %s\n", c)
				}
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, summaryLine(out.Summary, len(out.Workloads)))
	fmt.Fprintf(w, "(config: %s)\n", out.Config)
}

// summaryLine is "4 workloads: 2 current, 1 stale (2 pods), 1 missing (1 pod), 0 unexpected, 0 refused".
func summaryLine(s summary, n int) string {
	parts := []string{}
	for _, st := range drift.States {
		part := fmt.Sprintf("%d %s", s.Workloads[st], st)
		if st != drift.Current && s.Workloads[st] > 0 {
			part += fmt.Sprintf(" (%s)", plural(s.Pods[st], "pod"))
		}
		parts = append(parts, part)
	}
	line := fmt.Sprintf("%s: %s", plural(n, "workload"), strings.Join(parts, ", "))
	if s.WithoutSidecars > 0 {
		line += fmt.Sprintf("; %s without Outrigger sidecars not shown", plural(s.WithoutSidecars, "workload"))
	}
	return line
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
