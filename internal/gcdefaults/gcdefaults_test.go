package gcdefaults

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestRuntimeDefaultsYieldToTheEnvironment(t *testing.T) {
	gcPercent, memoryLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(gcPercent); debug.SetMemoryLimit(memoryLimit) })
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}

	gogc, limit := Apply(env(nil), 400, 48<<20)
	if got := debug.SetGCPercent(100); gogc != "400" || got != 400 {
		t.Errorf("no GOGC in the environment: reported %q, in effect %d; want %d", gogc, got, 400)
	}
	if limit != (48<<20) || debug.SetMemoryLimit(-1) != (48<<20) {
		t.Errorf("no GOMEMLIMIT in the environment: reported %d, in effect %d; want %d", limit, debug.SetMemoryLimit(-1), (48 << 20))
	}

	// The runtime applied GOGC and GOMEMLIMIT from the environment at start; they must stay.
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(200 << 20)
	gogc, limit = Apply(env(map[string]string{"GOGC": "150", "GOMEMLIMIT": "200MiB"}), 400, 48<<20)
	if got := debug.SetGCPercent(100); gogc != "150" || got != 150 {
		t.Errorf("GOGC=150 in the environment: reported %q, in effect %d; want 150", gogc, got)
	}
	if limit != 200<<20 {
		t.Errorf("GOMEMLIMIT=200MiB in the environment: limit %d, want %d", limit, 200<<20)
	}
}
