package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-dev/outrigger/internal/appprobe"
)

// appProbeHandler serves the app's probes on the status port. The kubelet's probes dial the pod IP, which
// an app listening on 127.0.0.1 only never answers; the injector points them here instead
// (appprobe.StatusPath), and each is repeated to the app on its loopback address as the kubelet would
// have made it: the same path and query, the kubelet's headers (its User-Agent, the probe's httpHeaders),
// the probe's timeout. The app's status code is the answer (a redirect's Location is dropped: the kubelet
// would follow it to the status port), with the start of its body.
type appProbeHandler struct {
	probes appprobe.Set
	addr   string // the app's 127.0.0.1:PROXY_PORT
	// statusPort is ":<STATUS_PORT>": a Host header ending with it is the kubelet's default (the pod IP and
	// the port it dialled), replaced by the app's address; any other is the probe's own and is kept.
	statusPort string
	client     *http.Client
}

// maxProbeBody is how much of the app's answer is passed on: the kubelet keeps only the start for events.
const maxProbeBody = 10 << 10

func newAppProbeHandler(probes appprobe.Set, addr string, statusPort int) *appProbeHandler {
	return &appProbeHandler{probes: probes, addr: addr, statusPort: ":" + strconv.Itoa(statusPort), client: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, // a probe is one request, as the kubelet's are
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

func (h *appProbeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := h.probes[r.URL.Path]
	if !ok {
		http.Error(w, fmt.Sprintf("no app probe at %s (the injector set APP_PROBES for %d)", r.URL.Path, len(h.probes)), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(p.Timeout))
	defer cancel()
	if p.TCP {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", h.addr)
		if err != nil {
			http.Error(w, fmt.Sprintf("the app's tcpSocket probe: %v", err), http.StatusServiceUnavailable)
			return
		}
		c.Close()
		fmt.Fprintf(w, "the app accepts connections on %s\n", h.addr)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+p.Path, nil)
	if err != nil {
		http.Error(w, fmt.Sprintf("the app's probe path %q: %v", p.Path, err), http.StatusInternalServerError)
		return
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if r.Host != "" && !strings.HasSuffix(r.Host, h.statusPort) {
		req.Host = r.Host
	}
	resp, err := h.client.Do(req)
	if err != nil {
		http.Error(w, fmt.Sprintf("the app's httpGet probe %s: %v", p.Path, err), http.StatusServiceUnavailable)
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, maxProbeBody))
}
