// Package ring places keys on shards exactly as twemproxy (nutcracker 0.5.0) does: its twelve hash
// functions, its ketama continuum, modula and random distributions, server weights and hash tags.
//
// A Ring is immutable and safe for concurrent use; the proxy swaps in a new one when a shard is ejected
// or comes back.
package ring
