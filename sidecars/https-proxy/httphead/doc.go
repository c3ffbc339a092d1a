// Package httphead reads the common HTTP/1.1 request and response heads without allocating, exactly as
// net/http reads them, and declines (consuming nothing) every head it does not fully understand, which then
// goes to net/http's own parser. Two fuzz targets parse the same bytes both ways and compare. Validate adds
// the checks net/http's server makes after parsing a request.
//
// It is https-proxy's, and kept in a package of its own so that the rules it must share with net/http
// are read, fuzzed and changed apart from the proxy's connection loop.
package httphead
