// Package sidecars holds, in each sidecar's own folder, the catalog entry that tells the injector how to
// run it (sidecars/<name>/catalog.yaml). The entry sits next to the binary's settings, its Dockerfile and
// its README so that a sidecar's API is edited in one folder; webhook/catalog embeds the files from here,
// and each sidecar's tests check that the four agree.
//
// This package is data only: it imports nothing, so the injector linking it links no sidecar code.
package sidecars

import "embed"

// Catalog holds every built-in sidecar's catalog entry as <name>/catalog.yaml.
//
//go:embed */catalog.yaml
var Catalog embed.FS
