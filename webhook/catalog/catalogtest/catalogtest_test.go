package catalogtest

import (
	"strings"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// A binary whose settings drift from topz's catalog entry: a wider sampling window, another doc line, an
// ENV the catalog lacks. Each drift is reported, naming the variable and the value.
func TestDriftFromTheCatalogIsReported(t *testing.T) {
	var addr string
	var sample time.Duration
	var redact bool
	set := envflag.Set{Program: "topz", Prefix: "TOPZ_", Vars: []envflag.Var{
		{Env: "TOPZ_ADDR", Default: ":8080", Usage: "listen address", Parse: envflag.HostPort(&addr)},
		{Env: "TOPZ_SAMPLE", Default: "200ms", Usage: "CPU sampling window, 10ms to 10s: CPU% is measured between two snapshots this far apart",
			Parse: envflag.Duration(&sample, time.Millisecond)},
		{Env: "TOPZ_REDACT", Default: "true", Usage: "redact secrets (passwords, tokens, URL credentials) in command lines; false shows them as started",
			Parse: envflag.Bool(&redact)},
		{Env: "TOPZ_EXTRA", Usage: "x", Parse: envflag.String(new(string))},
	}}
	got := strings.Join(CatalogProblems("topz", set), "\n")
	for _, want := range []string{
		`TOPZ_ADDR doc "listen address for /topz`,
		`TOPZ_SAMPLE (type duration) refuses "10.001s"`,
		`TOPZ_SAMPLE (type duration) refuses "9ms"`,
		`entry "topz" has no parameter for TOPZ_EXTRA`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TOPZ_REDACT") {
		t.Errorf("TOPZ_REDACT agrees with the catalog, yet:\n%s", got)
	}
}
