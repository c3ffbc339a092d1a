package envflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Var is one setting: an ENV variable, its mirroring flag, its default and how to parse it.
type Var struct {
	// Env is the ENV variable's name, e.g. PROXY_PORT. It is the sidecar's API: keep it stable.
	Env string
	// Default is used when neither the flag nor the ENV variable is set. "" means unset.
	Default string
	// Usage is a one-line description, shown by --help and checked against the README and Dockerfile.
	Usage string
	// Parse validates and stores a value. Its error says what is accepted, e.g. "want a port from 1 to 65535".
	Parse func(value string) error
	// Flag overrides the derived flag name (lower kebab case of Env without the Set's prefix).
	Flag string
	// Switch marks a boolean setting: its flag may stand alone (--one-time means --one-time=true), as
	// kubernetes/git-sync's and the standard library's boolean flags do.
	Switch bool
}

// switchValue is a flag.Value that the flag package treats as boolean (IsBoolFlag), recording the text.
type switchValue struct{ p *string }

func (s switchValue) String() string     { return "" }
func (s switchValue) Set(v string) error { *s.p = v; return nil }
func (s switchValue) IsBoolFlag() bool   { return true }

// Set is the whole API of one sidecar.
type Set struct {
	// Program names the sidecar in --help output.
	Program string
	// Prefix is the sidecar's own ENV prefix (e.g. "GITSYNC_"), dropped from flag and annotation names.
	Prefix string
	Vars   []Var
}

// FlagName is the flag (and the injector's annotation parameter) name for v: "GITSYNC_REPO" with prefix
// "GITSYNC_" becomes "repo"; "PROXY_PORT" becomes "proxy-port".
func (s Set) FlagName(v Var) string {
	if v.Flag != "" {
		return v.Flag
	}
	return KebabName(v.Env, s.Prefix)
}

// KebabName turns an ENV name into its flag/annotation form: the prefix dropped, lower case, '_' → '-'.
func KebabName(env, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, prefix)), "_", "-")
}

// Parse reads args (without the program name) and the environment through lookupEnv, and calls each Var's
// Parse exactly once with the winning value (flag, then ENV, then default). A Var whose value is "" from
// every source is still parsed with "" so that it can reset its field or report that it is required.
//
// It returns flag.ErrHelp after printing the help table to out when -h/--help is given, and otherwise all
// problems joined, one line each. Positional arguments are refused: every setting has a name.
func (s Set) Parse(args []string, lookupEnv func(string) (string, bool), out io.Writer) error {
	fs := flag.NewFlagSet(s.Program, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fromFlag := make(map[string]*string, len(s.Vars))
	for _, v := range s.Vars {
		p := new(string)
		fromFlag[v.Env] = p
		if v.Switch {
			fs.Var(switchValue{p}, s.FlagName(v), v.Usage)
			continue
		}
		fs.Func(s.FlagName(v), v.Usage, func(val string) error { *p = val; return nil })
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			s.PrintHelp(out)
			return flag.ErrHelp
		}
		return fmt.Errorf("%v (see --help for the accepted flags and ENV variables)", err)
	}
	var problems []error
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected argument %q: every setting is a --flag or an ENV variable (see --help)", fs.Arg(0)))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, v := range s.Vars {
		value, source := v.Default, "default of "+v.Env
		if env, ok := lookupEnv(v.Env); ok {
			value, source = env, v.Env
		}
		if set[s.FlagName(v)] {
			value, source = *fromFlag[v.Env], "--"+s.FlagName(v)
		}
		if v.Parse == nil {
			continue
		}
		if err := v.Parse(value); err != nil {
			problems = append(problems, fmt.Errorf("invalid %s=%q: %w", source, RedactURL(value), err))
		}
	}
	return errors.Join(problems...)
}

// PrintHelp writes one row per setting: flag, ENV variable, default and usage.
func (s Set) PrintHelp(out io.Writer) {
	fmt.Fprintf(out, "Usage: %s [--flag=value ...]\n\nEvery flag mirrors an ENV variable; a flag wins over its ENV variable.\n\n", s.Program)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLAG\tENV\tDEFAULT\tDESCRIPTION")
	for _, v := range s.Vars {
		def := v.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "--%s\t%s\t%s\t%s\n", s.FlagName(v), v.Env, def, v.Usage)
	}
	tw.Flush()
}

// Lookup returns the Var named env, for tests and documentation generators.
func (s Set) Lookup(env string) (Var, bool) {
	for _, v := range s.Vars {
		if v.Env == env {
			return v, true
		}
	}
	return Var{}, false
}
