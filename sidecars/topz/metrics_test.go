package main

import (
	"fmt"
	"testing"
)

func TestCommandTotalsCapTheLabels(t *testing.T) {
	var procs []procSample
	for i := range 50 {
		// command cN uses N CPU seconds and runs twice.
		for range 2 {
			procs = append(procs, procSample{Comm: fmt.Sprintf("c%02d", i), CPUSeconds: float64(i), RSSBytes: 10})
		}
	}
	procs = append(procs, procSample{Comm: "bad\xffutf8", CPUSeconds: 1000, RSSBytes: 1})
	totals := commandTotals(procs, 10)
	if len(totals) != 10 {
		t.Fatalf("%d label values, want 10", len(totals))
	}
	var count, rss int
	var cpu float64
	names := map[string]commandTotal{}
	for _, ct := range totals {
		count, rss, cpu = count+ct.Count, rss+int(ct.RSSBytes), cpu+ct.CPUSeconds
		names[ct.Command] = ct
	}
	if count != len(procs) || rss != 50*2*10+1 || cpu != 1000+2*(49*50/2) {
		t.Fatalf("sums changed by the cap: %d processes, %d RSS, %v CPU", count, rss, cpu)
	}
	// The 9 busiest keep their names: the invalid UTF-8 one (made valid), c49 ... c42; the rest are "_other".
	for _, want := range []string{"bad?utf8", "c49", "c42", otherCommands} {
		if _, ok := names[want]; !ok {
			t.Errorf("no label %q in %v", want, totals)
		}
	}
	if o := names[otherCommands]; o.Count != 42*2 {
		t.Errorf("_other counts %d processes, want %d", o.Count, 42*2)
	}
	if got := commandTotals(procs[:4], 10); len(got) != 2 || got[0].Command != "c00" || got[0].Count != 2 {
		t.Errorf("under the cap: %+v", got)
	}
}
