package webhook

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NamespaceLookup returns a namespace's labels and annotations.
type NamespaceLookup interface {
	Lookup(ctx context.Context, name string) (labels, annotations map[string]string, err error)
}

// CachedNamespaces reads namespaces' metadata from an informer cache (no GET per admission request), and
// falls back to the API only on a cache miss: a namespace created a moment ago may not be in the cache
// yet, and its default must still apply.
type CachedNamespaces struct {
	Cache client.Reader
	API   client.Reader
}

// NamespaceGVK is the Namespace kind, for metadata-only reads.
var NamespaceGVK = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}

// Lookup implements NamespaceLookup.
func (n CachedNamespaces) Lookup(ctx context.Context, name string) (map[string]string, map[string]string, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(NamespaceGVK)
	err := n.Cache.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) && n.API != nil {
		err = n.API.Get(ctx, client.ObjectKey{Name: name}, ns)
	}
	if err != nil {
		return nil, nil, err
	}
	return ns.Labels, ns.Annotations, nil
}
