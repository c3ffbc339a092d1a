// Package sidecarspec checks that an image's descriptions of its API agree: the binary's settings (an
// envflag.Set), the Dockerfile's documented ENV/EXPOSE/LABEL lines and the README's settings table.
// webhook/catalog/catalogtest adds the fourth, the sidecar's catalog entry.
//
// It is used from tests only, so no binary depends on it.
package sidecarspec

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// RequiredLabels are the OCI labels every image carries.
var RequiredLabels = []string{
	"org.opencontainers.image.title", "org.opencontainers.image.description", "org.opencontainers.image.source",
	"org.opencontainers.image.version", "org.opencontainers.image.licenses", "org.opencontainers.image.vendor",
	"org.opencontainers.image.url", "org.opencontainers.image.documentation",
}

// Dockerfile is what a Dockerfile says about the image's API.
type Dockerfile struct {
	Env        map[string]string // ENV name → default
	EnvComment map[string]string // ENV name → the comment above it
	Expose     map[string]string // port → the comment above it
	Labels     map[string]string
	User       string
}

// ReadDockerfile parses path with BuildKit's own Dockerfile parser. It reads the last stage (the image).
func ReadDockerfile(path string) (*Dockerfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	d := &Dockerfile{Env: map[string]string{}, EnvComment: map[string]string{}, Expose: map[string]string{}, Labels: map[string]string{}}
	for _, node := range res.AST.Children {
		comment := strings.TrimSpace(strings.Join(node.PrevComment, " "))
		inst, err := instructions.ParseInstruction(node)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, node.StartLine, err)
		}
		switch c := inst.(type) {
		case *instructions.Stage:
			// A new stage starts: only the last one's API is the image's.
			d.Env, d.EnvComment, d.Expose, d.Labels, d.User = map[string]string{}, map[string]string{}, map[string]string{}, map[string]string{}, ""
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				d.Env[kv.Key] = unquote(kv.Value)
				d.EnvComment[kv.Key] = comment
			}
		case *instructions.ExposeCommand:
			for _, p := range c.Ports {
				d.Expose[p] = comment
			}
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				d.Labels[kv.Key] = unquote(kv.Value)
			}
		case *instructions.UserCommand:
			d.User = c.User
		}
	}
	return d, nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"') {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	return s
}

// ReadmeRow is one row of a README settings table: | `ENV` | `--flag` | `default` | description |.
type ReadmeRow struct{ Env, Flag, Default, Description string }

var rowRE = regexp.MustCompile("^\\|\\s*`([A-Z][A-Z0-9_]*)`\\s*\\|\\s*`--([a-z0-9-]+)`\\s*\\|([^|]*)\\|(.*)\\|\\s*$")

// ReadReadme returns the rows of the README's settings table(s): lines shaped
// | `ENV` | `--flag` | `default` | description |, where an empty default is written `""` or left blank.
func ReadReadme(path string) (map[string]ReadmeRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows := map[string]ReadmeRow{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := rowRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		def := strings.TrimSpace(m[3])
		def = strings.TrimSuffix(strings.TrimPrefix(def, "`"), "`")
		if def == `""` {
			def = ""
		}
		rows[m[1]] = ReadmeRow{Env: m[1], Flag: m[2], Default: def, Description: strings.TrimSpace(m[4])}
	}
	return rows, sc.Err()
}

// ImageProblems returns every disagreement between set and a Dockerfile and a README (the webhook image
// has no catalog entry, so it is checked with this alone). An empty result means they agree.
func ImageProblems(dockerfile, readmePath string, set envflag.Set) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	d, err := ReadDockerfile(dockerfile)
	if err != nil {
		add("Dockerfile: %v", err)
		d = &Dockerfile{}
	}
	readme, err := ReadReadme(readmePath)
	if err != nil {
		add("README.md: %v", err)
	}
	known := map[string]bool{}
	for _, v := range set.Vars {
		known[v.Env] = true
		if v.Usage == "" {
			add("binary: %s has no usage line", v.Env)
		}
		if def, ok := d.Env[v.Env]; !ok {
			add("Dockerfile: no ENV %s (the binary's default is %q)", v.Env, v.Default)
		} else {
			if def != v.Default {
				add("Dockerfile: ENV %s=%q, but the binary's default is %q", v.Env, def, v.Default)
			}
			if c := d.EnvComment[v.Env]; c == "" {
				add("Dockerfile: ENV %s has no comment above it", v.Env)
			} else if want := v.Env + ": " + v.Usage; !strings.HasPrefix(plain(c), want) {
				add("Dockerfile: the comment above ENV %s is %q; want it to start with %q (the binary's usage line)", v.Env, c, want)
			}
		}
		if row, ok := readme[v.Env]; !ok {
			add("README.md: no table row for %s", v.Env)
		} else {
			if row.Default != v.Default {
				add("README.md: %s default %q, but the binary's default is %q", v.Env, row.Default, v.Default)
			}
			if !strings.HasPrefix(plain(row.Description), v.Usage) {
				add("README.md: %s description %q; want it to start with %q (the binary's usage line)", v.Env, row.Description, v.Usage)
			}
			if row.Flag != set.FlagName(v) {
				add("README.md: %s flag --%s, but the binary's flag is --%s", v.Env, row.Flag, set.FlagName(v))
			}
		}
	}
	for _, env := range sortedKeys(d.Env) {
		if !known[env] {
			add("Dockerfile: ENV %s is not a setting of the binary", env)
		}
	}
	for _, env := range sortedKeys(readme) {
		if !known[env] {
			add("README.md: row %s is not a setting of the binary", env)
		}
	}
	if len(d.Expose) == 0 {
		add("Dockerfile: no EXPOSE: say what listens")
	}
	for port, comment := range d.Expose {
		if comment == "" {
			add("Dockerfile: EXPOSE %s has no comment saying what listens", port)
		}
	}
	for _, l := range RequiredLabels {
		if d.Labels[l] == "" {
			add("Dockerfile: LABEL %s is missing or empty", l)
		}
	}
	if u := strings.Split(d.User, ":")[0]; u == "" || u == "0" || u == "root" {
		add("Dockerfile: USER %q: the image must run as a non-root user (a numeric UID)", d.User)
	}
	return problems
}

// plain is text without Markdown's code marks, for comparing a README's or a comment's words with a usage
// line.
func plain(s string) string { return strings.ReplaceAll(s, "`", "") }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
