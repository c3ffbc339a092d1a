package httphead

import (
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// Validate applies the checks net/http's server makes after parsing a request, which
// http.ReadRequest alone does not: HTTP/1.x only, a Host for HTTP/1.1 (ReadRequest has moved it from the
// header to req.Host; it already refuses two), a well-formed Host, and header names and values without
// forbidden bytes. It returns the status and reason to refuse the request with, or 0.
func Validate(req *http.Request) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != http.MethodConnect {
		return http.StatusBadRequest, "missing required Host header"
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for name, values := range req.Header {
		if !httpguts.ValidHeaderFieldName(name) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	return 0, ""
}
