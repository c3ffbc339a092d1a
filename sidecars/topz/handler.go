package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// tableSource gives the current process table (the sampler).
type tableSource interface {
	Table(ctx context.Context) (*Table, error)
}

// Formats accepted by ?format=.
var formats = []string{"text", "json", "html"}

// maxLimit bounds ?limit=.
const maxLimit = 1_000_000

// maxRendering bounds the /topz answers rendered at once. Scanning /proc does not grow with the request
// rate (the sampler shares one table per window among all requests), but rendering is per request: a
// client asking in a tight loop from many connections would otherwise take all of topz's CPU limit and
// memory. Past the bound a request gets 429 at once, with Retry-After.
const maxRendering = 4

// topzHandler serves /topz. It is read-only: GET and HEAD, 405 otherwise.
type topzHandler struct {
	tables tableSource
	// wait bounds how long a request waits for a table (the first one after an idle period takes a window).
	wait time.Duration
	// rendering holds a token per answer being made (maxRendering).
	rendering chan struct{}
	// refused counts the requests answered 429, for /metrics.
	refused atomic.Int64
}

func newTopzHandler(tables tableSource, window time.Duration) *topzHandler {
	return &topzHandler{tables: tables, wait: window + 10*time.Second, rendering: make(chan struct{}, maxRendering)}
}

// topzQuery is a parsed /topz query string.
type topzQuery struct {
	Format string
	Sort   string
	Limit  int
}

// parseQuery reads ?format, ?sort and ?limit; format defaults from Accept (text/html → html,
// application/json → json, else text). Each error names the parameter, the value and what is accepted.
func parseQuery(r *http.Request) (topzQuery, error) {
	q := topzQuery{Format: formatFromAccept(r.Header.Get("Accept")), Sort: "cpu"}
	values := r.URL.Query()
	var problems []error
	for name, vs := range values {
		v := vs[len(vs)-1]
		switch name {
		case "format":
			if !slices.Contains(formats, v) {
				problems = append(problems, fmt.Errorf("invalid format=%q: want one of %s", v, strings.Join(formats, ", ")))
			}
			q.Format = v
		case "sort":
			if !slices.Contains(sortOrders, v) {
				problems = append(problems, fmt.Errorf("invalid sort=%q: want one of %s", v, strings.Join(sortOrders, ", ")))
			}
			q.Sort = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxLimit {
				problems = append(problems, fmt.Errorf("invalid limit=%q: want a whole number from 1 to %d", v, maxLimit))
			}
			q.Limit = n
		default:
			problems = append(problems, fmt.Errorf("unknown query parameter %q: accepted are format, sort and limit", name))
		}
	}
	slices.SortFunc(problems, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return q, errors.Join(problems...)
}

// formatFromAccept picks html for a browser, json for a client asking for it, else text.
func formatFromAccept(accept string) string {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/html":
			return "html"
		case "application/json":
			return "json"
		}
	}
	return "text"
}

var contentTypes = map[string]string{
	"text": "text/plain; charset=utf-8",
	"json": "application/json",
	"html": "text/html; charset=utf-8",
}

func (h *topzHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, fmt.Sprintf("method %s not allowed: /topz is read-only (GET, HEAD)", r.Method), http.StatusMethodNotAllowed)
		return
	}
	q, err := parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	select {
	case h.rendering <- struct{}{}:
		defer func() { <-h.rendering }()
	default:
		h.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("too many /topz requests at once (%d are being answered): retry in a second", maxRendering), http.StatusTooManyRequests)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.wait)
	defer cancel()
	t, err := h.tables.Table(ctx)
	if err != nil {
		http.Error(w, "reading the process table: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	v := view{Table: t, Rows: sortedRows(t.Rows, q.Sort, q.Limit), Sort: q.Sort, Limit: q.Limit}
	var body bytes.Buffer
	switch q.Format {
	case "json":
		err = writeJSON(&body, v)
	case "html":
		err = writeHTML(&body, v)
	default:
		err = writeText(&body, v)
	}
	if err != nil {
		http.Error(w, "rendering the process table: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentTypes[q.Format])
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Accept")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if q.Format == "html" {
		// Defence in depth beside html/template's escaping: the page needs no script, frame or remote resource.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	}
	w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
	w.Write(body.Bytes())
}
