package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/webhook/config"
)

const sidecarsHelp = `Usage: outrigger sidecars [--config FILE] [-o text|yaml]

Prints the catalog (the built-in sidecars and the config file's own, with its resources applied): for each
sidecar its image and every parameter, with its annotation, ENV, default, accepted values and a line of doc.

Examples:
  outrigger sidecars
  outrigger sidecars --config outrigger.yaml -o yaml

Flags:
`

func sidecarsCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outrigger sidecars", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, sidecarsHelp); fs.PrintDefaults() }
	configFile := fs.String("config", "", "the injector's config file (default: the built-in defaults)")
	output := fs.String("o", "text", "output format: text or yaml")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(*configFile, "")
	if err != nil {
		fmt.Fprintf(stderr, "outrigger sidecars: %v\n", err)
		return 1
	}
	switch *output {
	case "yaml":
		for _, name := range cfg.Catalog.Names() {
			e, _ := cfg.Catalog.Get(name)
			data, err := yaml.Marshal(e)
			if err != nil {
				fmt.Fprintf(stderr, "outrigger sidecars: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "---\n%s", data)
		}
	case "text":
		for _, name := range cfg.Catalog.Names() {
			e, _ := cfg.Catalog.Get(name)
			fmt.Fprintf(stdout, "%s — %s\n  image: %s\n", e.Name, e.Description, cfg.Image(e))
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  ANNOTATION\tENV\tDEFAULT\tTYPE\tDESCRIPTION")
			for _, p := range e.Parameters {
				env, def := p.Env, p.Default
				if env == "" {
					env = "(pod)"
				}
				if p.Required {
					def = "(required)"
				}
				typ := p.Type
				if len(p.Values) > 0 {
					typ = fmt.Sprintf("%s %v", p.Type, p.Values)
				}
				fmt.Fprintf(tw, "  %s%s\t%s\t%s\t%s\t%s\n", e.AnnotationPrefix(), e.ParamName(p), env, def, typ, p.Doc)
			}
			tw.Flush()
			fmt.Fprintln(stdout)
		}
	default:
		fmt.Fprintf(stderr, "outrigger sidecars: -o %q: want text or yaml\n", *output)
		return 2
	}
	return 0
}
