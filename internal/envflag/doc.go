// Package envflag reads a sidecar's settings from ENV variables, with command-line flags that mirror them.
//
// A sidecar's API is its ENV (as in Designing Distributed Systems): the ENV names and their defaults are
// declared once, in a Set, and everything else is derived from that declaration — the flag names (the ENV
// name in lower kebab case without the sidecar's prefix, which is also the injector's annotation name),
// the --help table, and the agreement test that checks the Dockerfile, the README and the injector's
// catalog against it.
//
// Precedence follows kubernetes/git-sync: a flag wins over its ENV variable, which wins over the default.
// Every value is parsed and validated at start; Parse collects all problems and reports each as one line
// that names the variable, the bad value and what is accepted.
package envflag
