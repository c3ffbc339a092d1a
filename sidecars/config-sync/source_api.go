package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// restConfigFor returns the client configuration: the one a test passed in, the KUBECONFIG file, or the
// pod's service account.
func restConfigFor(cfg *Config) (*rest.Config, error) {
	switch {
	case cfg.restConfig != nil:
		return rest.CopyConfig(cfg.restConfig), nil
	case cfg.Kubeconfig != "":
		rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("reading KUBECONFIG=%q: %w", cfg.Kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the pod's service-account credentials (outside a cluster, set KUBECONFIG): %w", err)
	}
	return rc, nil
}

// namespaceFor is NAMESPACE, or the pod's own namespace.
func namespaceFor(cfg *Config) (string, error) {
	if cfg.Namespace != "" {
		return cfg.Namespace, nil
	}
	b, err := os.ReadFile(serviceAccountNamespace)
	if err != nil {
		return "", fmt.Errorf("NAMESPACE is not set and the pod's namespace is unknown (%w): set NAMESPACE", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// coreV1Client is a REST client for the core/v1 group with a scheme holding only that group: the full
// client-go clientset would register every API group and double the binary's size.
func coreV1Client(rc *rest.Config, version string) (rest.Interface, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	rc.APIPath = "/api"
	rc.GroupVersion = &corev1.SchemeGroupVersion
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc.UserAgent = "outrigger-config-sync/" + version
	return rest.RESTClientFor(rc)
}

// apiSource follows a ConfigMap and/or a Secret by name through the API: an informer per object (a
// list+watch restricted by a field selector on metadata.name, resumed by client-go after any break), and,
// while a watch cannot be held, a GET every UPDATE_FREQUENCY.
type apiSource struct {
	namespace string
	objects   []*watchedObject
}

func newAPISource(client rest.Interface, namespace, configMap, secret string, pollEvery time.Duration, log *slog.Logger) *apiSource {
	s := &apiSource{namespace: namespace}
	if configMap != "" {
		s.objects = append(s.objects, &watchedObject{
			kind: "ConfigMap", resource: "configmaps", name: configMap, namespace: namespace,
			client: client, pollEvery: pollEvery, log: log,
			newObject: func() runtime.Object { return &corev1.ConfigMap{} },
			files: func(o runtime.Object) files {
				cm := o.(*corev1.ConfigMap)
				f := make(files, len(cm.Data)+len(cm.BinaryData))
				for k, v := range cm.Data {
					f[k] = []byte(v)
				}
				for k, v := range cm.BinaryData {
					f[k] = v
				}
				return f
			},
		})
	}
	if secret != "" {
		s.objects = append(s.objects, &watchedObject{
			kind: "Secret", resource: "secrets", name: secret, namespace: namespace,
			client: client, pollEvery: pollEvery, log: log,
			newObject: func() runtime.Object { return &corev1.Secret{} },
			files: func(o runtime.Object) files {
				f := make(files, len(o.(*corev1.Secret).Data))
				for k, v := range o.(*corev1.Secret).Data {
					f[k] = v
				}
				return f
			},
		})
	}
	return s
}

func (s *apiSource) describe() string {
	var names []string
	for _, o := range s.objects {
		names = append(names, o.describe())
	}
	return strings.Join(names, " and ")
}

func (s *apiSource) run(ctx context.Context, changed func()) {
	var wg sync.WaitGroup
	for _, o := range s.objects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.run(ctx, changed)
		}()
	}
	wg.Wait()
}

// snapshot merges the objects' keys. It fails while an object has not been read yet, is missing, or
// cannot be read, and when both objects hold the same key.
func (s *apiSource) snapshot() (files, error) {
	merged := files{}
	from := map[string]string{}
	for _, o := range s.objects {
		f, err := o.current()
		if err != nil {
			return nil, err
		}
		for k, v := range f {
			if other, ok := from[k]; ok {
				return nil, &sourceError{reason: "invalid", err: fmt.Errorf("key %q is in both %s and %s: rename one, or follow only one", k, other, o.describe())}
			}
			from[k] = o.describe()
			merged[k] = v
		}
	}
	return merged, nil
}

// watchedObject is one followed object and what is known about it.
type watchedObject struct {
	kind, resource, name, namespace string
	client                          rest.Interface
	pollEvery                       time.Duration
	log                             *slog.Logger
	newObject                       func() runtime.Object
	files                           func(runtime.Object) files

	mu sync.Mutex
	// known is true once the object was read (found or not found); content is its keys when found.
	known, found bool
	content      files
	// readErr is why the object could not be read, while it is not known.
	readErr error
	// watchErr is non-nil while the watch is broken: the poller GETs the object then.
	watchErr error
}

func (o *watchedObject) describe() string { return o.kind + " " + o.namespace + "/" + o.name }

// current is the object's keys, or why there are none.
func (o *watchedObject) current() (files, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case !o.known && o.readErr != nil:
		return nil, o.readErr
	case !o.known:
		return nil, &sourceError{reason: "waiting", err: fmt.Errorf("waiting for the first read of %s", o.describe())}
	case !o.found:
		return nil, &sourceError{reason: "missing", err: fmt.Errorf("%s not found (deleted or not created yet)", o.describe())}
	}
	return o.content, nil
}

// set records a successful read (obj nil: the object does not exist).
func (o *watchedObject) set(obj runtime.Object, fromWatch bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if fromWatch {
		o.watchErr = nil
	}
	var content files
	if obj != nil {
		content = o.files(obj)
	}
	o.known, o.found, o.content, o.readErr = true, obj != nil, content, nil
}

// classify turns an API error into a sourceError that says what to do about it.
func (o *watchedObject) classify(err error) error {
	switch {
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return &sourceError{reason: "forbidden", err: fmt.Errorf("reading %s: permission denied: grant the pod's service account get, list and watch on %s (see the RBAC section of config-sync's README): %w", o.describe(), o.resource, err)}
	case apierrors.IsNotFound(err):
		return &sourceError{reason: "missing", err: fmt.Errorf("%s not found (deleted or not created yet)", o.describe())}
	}
	return &sourceError{reason: "unreachable", err: fmt.Errorf("reading %s: %w", o.describe(), err)}
}

func (o *watchedObject) run(ctx context.Context, changed func()) {
	lw := cache.NewListWatchFromClient(o.client, o.resource, o.namespace, fields.OneTermEqualSelector("metadata.name", o.name))
	informer := cache.NewSharedIndexInformer(lw, o.newObject(), 0, cache.Indexers{})
	pollNow := make(chan struct{}, 1)
	_ = informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return // a watch that ended normally; client-go resumes it
		}
		o.mu.Lock()
		first := o.watchErr == nil
		o.watchErr = err
		if !o.known {
			o.readErr = o.classify(err)
		}
		known := o.known
		o.mu.Unlock()
		if first {
			if known {
				o.log.Warn("the watch broke; keeping the last content read and polling until it resumes",
					"object", o.describe(), "every", o.pollEvery, "error", err)
			}
			select {
			case pollNow <- struct{}{}:
			default:
			}
		}
		changed()
	})
	// Every event leads to a sync, even one that changed no key (e.g. a label): the sync compares with
	// the files on disk, which also puts back files someone changed there.
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { o.set(obj.(runtime.Object), true); changed() },
		UpdateFunc: func(_, obj any) { o.set(obj.(runtime.Object), true); changed() },
		DeleteFunc: func(any) { o.set(nil, true); changed() },
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		informer.RunWithContext(ctx)
	}()
	go func() {
		defer wg.Done()
		// After the first complete list, an empty store means the object does not exist (no event says so).
		if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			if _, exists, _ := informer.GetStore().GetByKey(o.namespace + "/" + o.name); !exists {
				o.mu.Lock()
				if !o.known {
					o.known, o.found, o.readErr = true, false, nil
				}
				o.mu.Unlock()
				changed()
			}
		}
	}()
	o.poll(ctx, pollNow, changed)
}

// poll GETs the object when the watch has just broken and then every pollEvery while it stays broken
// (e.g. RBAC grants get but not list/watch, or something between here and the API server cuts watches).
func (o *watchedObject) poll(ctx context.Context, pollNow <-chan struct{}, changed func()) {
	ticker := time.NewTicker(o.pollEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pollNow:
		case <-ticker.C:
		}
		o.mu.Lock()
		broken := o.watchErr != nil
		o.mu.Unlock()
		if !broken {
			continue
		}
		getCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		obj := o.newObject()
		err := o.client.Get().Namespace(o.namespace).Resource(o.resource).Name(o.name).
			VersionedParams(&metav1.GetOptions{}, metav1.ParameterCodec).Do(getCtx).Into(obj)
		cancel()
		switch {
		case err == nil:
			o.set(obj, false)
			changed()
		case apierrors.IsNotFound(err):
			o.set(nil, false)
			changed()
		case ctx.Err() != nil:
			return
		default:
			o.mu.Lock()
			if !o.known {
				o.readErr = o.classify(err)
			}
			o.mu.Unlock()
			changed()
		}
	}
}
