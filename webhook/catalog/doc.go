// Package catalog describes sidecars as data: the image, the container template, the parameters a pod may
// set through annotations (each one ENV variable of the sidecar, or a named pod-level setting such as the
// Secret to mount), and what the pod needs (a shared volume, a shared PID namespace).
//
// The five built-in entries are YAML files in each sidecar's folder (sidecars/<name>/catalog.yaml, embedded
// by package sidecars), so that a sidecar's API is edited in its own folder; operators add entries of the same schema
// in the injector's config file. Entries are decoded strictly (an unknown key is an error naming it) and
// validated once, when the catalog is built, so that a bad entry is refused at start or at reload — never
// discovered while admitting a pod.
package catalog
