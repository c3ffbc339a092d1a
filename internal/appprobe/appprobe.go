// Package appprobe is the contract between the injector and https-proxy for the app's own probes.
//
// The kubelet's httpGet and tcpSocket probes dial the pod IP, so an app that listens on 127.0.0.1 only (the
// legacy app https-proxy fronts) fails them. The injector points such probes at the proxy's status port,
// at StatusPath(container, kind), and tells the proxy in one environment variable what each probe asked
// (Format); the proxy (Parse) repeats each request to the app on 127.0.0.1 and answers with the app's
// status. Both sides use this package, so the value one writes is the value the other reads.
package appprobe

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kinds are the probe kinds, as the last element of a StatusPath.
var Kinds = []string{"startupz", "readyz", "livez"}

// Prefix starts every StatusPath.
const Prefix = "/app-health/"

// StatusPath is where a container's probe of a kind is served on the proxy's status port.
func StatusPath(container, kind string) string { return Prefix + container + "/" + kind }

// Probe is what one of the app's probes asked.
type Probe struct {
	// Path is the httpGet path with its query ("" for a tcpSocket probe).
	Path string `json:"path,omitempty"`
	// TCP marks a tcpSocket probe: success is a connection accepted.
	TCP bool `json:"tcp,omitempty"`
	// Timeout is the probe's timeoutSeconds, the proxy's limit on its request to the app.
	Timeout Duration `json:"timeout"`
}

// Duration is a time.Duration written as "1s".
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timeout: want a duration such as \"1s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("timeout %q: want a positive duration such as \"1s\"", s)
	}
	*d = Duration(v)
	return nil
}

// Set maps each StatusPath to its probe.
type Set map[string]Probe

// Format writes s as the environment variable's value: JSON with its keys sorted, so that the same probes
// always give the same pod.
func Format(s Set) string {
	b, _ := json.Marshal(s) // maps marshal with sorted keys; nothing here can fail
	return string(b)
}

// Parse reads Format's output; "" is the empty set. Every key must be a StatusPath and every probe either a
// path starting with / or TCP, with a timeout.
func Parse(value string) (Set, error) {
	s := Set{}
	if value == "" {
		return s, nil
	}
	dec := json.NewDecoder(strings.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("want the injector's JSON object of probes, such as {%q:{\"path\":\"/healthz\",\"timeout\":\"1s\"}}: %v", StatusPath("app", "readyz"), err)
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := s[k]
		rest, ok := strings.CutPrefix(k, Prefix)
		container, kind, _ := strings.Cut(rest, "/")
		if !ok || container == "" || !slices.Contains(Kinds, kind) {
			return nil, fmt.Errorf("probe %q: want a path such as %s", k, StatusPath("app", "readyz"))
		}
		if p.TCP == (p.Path != "") || p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			return nil, fmt.Errorf("probe %q: want a path starting with / or tcp, not both", k)
		}
		if p.Timeout <= 0 {
			return nil, fmt.Errorf("probe %q: want a timeout", k)
		}
	}
	return s, nil
}
