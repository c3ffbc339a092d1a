// Package depcheck holds the repository's import rules, checked by its test with `go list` (the way crane's
// depcheck does): the layout stays what the README says as the tree grows.
package depcheck
