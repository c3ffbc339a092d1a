package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// adminToken authenticates the harness's cluster-admin (a member of system:masters) via --token-auth-file.
const adminToken = "outrigger-e2e-admin-token"

// Options shape the cluster. The zero value is an API-only control plane.
type Options struct {
	// Dir holds the data, certificates and logs; a new temporary directory when empty.
	Dir string
	// BinDir holds kube-apiserver, etcd and kubectl; $OUTRIGGER_BIN_DIR or <repo>/bin when empty.
	BinDir string
	// APIServerFlags are appended to kube-apiserver's flags.
	APIServerFlags []string
	// Log receives progress lines (nil: silent).
	Log func(format string, args ...any)
	// Node, when set, adds a node that runs pods for real (see NodeOptions); nil is an API-only cluster.
	Node *NodeOptions
}

// Cluster is a running control plane.
type Cluster struct {
	opts       Options
	dir        string
	etcd       *Component
	apiserver  *Component
	apiPort    int
	apiHost    string // the address kube-apiserver listens on
	restConfig *rest.Config
	kubeconfig string
	node       *node // nil without Options.Node
}

// Attach is a Cluster for one that already runs (the cluster of `make cluster`), reached with the
// cluster-admin kubeconfig it wrote. It starts nothing, and its Stop stops nothing.
func Attach(kubeconfig string) (*Cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading the running cluster's kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return &Cluster{restConfig: cfg, kubeconfig: kubeconfig, dir: filepath.Dir(kubeconfig)}, nil
}

// New starts etcd and kube-apiserver and waits until the API server is ready. On failure it stops what it
// started and returns an error that includes the end of the failing component's log.
func New(ctx context.Context, o Options) (*Cluster, error) {
	bin, err := findBinDir(o.BinDir)
	if err != nil {
		return nil, err
	}
	o.BinDir = bin
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "outrigger-cluster-"); err != nil {
			return nil, err
		}
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{opts: o, dir: o.Dir}
	if err := c.start(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func findBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("OUTRIGGER_BIN_DIR")
	}
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make tools` (it builds the control plane from source)", b, dir)
		}
	}
	return dir, nil
}

// RepoRoot finds the repository root (the directory holding go.mod) from the working directory up.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "hack", "tools")); err == nil {
				return d, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("repository root not found above %s", wd)
		}
	}
}

func (c *Cluster) start(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdPort, peerPort := ports[0], ports[1]
	c.apiPort = ports[2]

	c.etcd = &Component{
		Name: "etcd",
		Path: filepath.Join(c.opts.BinDir, "etcd"),
		Args: []string{
			"--name=default", "--data-dir=" + filepath.Join(c.dir, "etcd"),
			"--listen-client-urls=http://127.0.0.1:" + strconv.Itoa(etcdPort),
			"--advertise-client-urls=http://127.0.0.1:" + strconv.Itoa(etcdPort),
			"--listen-peer-urls=http://127.0.0.1:" + strconv.Itoa(peerPort),
			"--initial-advertise-peer-urls=http://127.0.0.1:" + strconv.Itoa(peerPort),
			"--initial-cluster=default=http://127.0.0.1:" + strconv.Itoa(peerPort),
			"--unsafe-no-fsync", "--log-level=warn",
		},
		LogPath: filepath.Join(c.dir, "etcd.log"),
	}
	if err := c.etcd.Start(); err != nil {
		return err
	}
	if err := waitHTTP(ctx, c.etcd, fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort), nil, 30*time.Second); err != nil {
		return err
	}

	pki := filepath.Join(c.dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	saKey := filepath.Join(pki, "sa.key")
	if err := writeECKey(saKey); err != nil {
		return err
	}
	tokens := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+`,outrigger-admin,outrigger-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	args := []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(etcdPort),
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-account-issuer=https://kubernetes.default.svc." + ClusterDomain,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--token-auth-file=" + tokens,
		"--allow-privileged=true",
		// Open watches would otherwise hold a stopping API server for up to a minute (RestartAPIServer).
		"--shutdown-watch-termination-grace-period=2s",
	}
	c.apiHost = "127.0.0.1"
	if c.opts.Node == nil {
		args = append(args, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
			// Nothing could use the kubernetes Service's endpoint: there is no kube-proxy and no pod.
			"--endpoint-reconciler-type=none",
			"--authorization-mode=RBAC",
			// No kube-controller-manager creates default ServiceAccounts in the API-only cluster; CreateNamespace
			// creates one anyway, so tests do not depend on this flag.
			"--disable-admission-plugins=ServiceAccount")
	} else {
		// Pods reach the API server through the kubernetes Service (KubernetesSvcIP:443), whose endpoint the
		// API server keeps at its advertise address: the host's address on the pod bridge, where it listens.
		c.apiHost = BridgeIP
		args = append(args, "--bind-address="+BridgeIP, "--advertise-address="+BridgeIP)
		// With a node, kube-controller-manager creates ServiceAccounts and the ServiceAccount admission plugin
		// is on (pods get their token volume, as in a real cluster); the Node authorizer judges the kubelet.
		nodeArgs, err := c.prepareNode(pki, tokens)
		if err != nil {
			return err
		}
		args = append(args, nodeArgs...)
	}
	c.apiserver = &Component{
		Name:    "kube-apiserver",
		Path:    filepath.Join(c.opts.BinDir, "kube-apiserver"),
		Args:    append(args, c.opts.APIServerFlags...),
		LogPath: filepath.Join(c.dir, "kube-apiserver.log"),
	}
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	c.restConfig = &rest.Config{
		Host:            "https://" + net.JoinHostPort(c.apiHost, strconv.Itoa(c.apiPort)),
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(c.dir, "apiserver-certs", "apiserver.crt")},
		QPS:             200, Burst: 400,
	}
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	c.opts.Log("control plane ready at %s (dir %s)", c.restConfig.Host, c.dir)
	if c.opts.Node != nil {
		return c.startNode(ctx)
	}
	return nil
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	if err := c.apiserver.Start(); err != nil {
		return err
	}
	h := http.Header{"Authorization": []string{"Bearer " + adminToken}}
	return waitHTTP(ctx, c.apiserver, fmt.Sprintf("https://%s/readyz", net.JoinHostPort(c.apiHost, strconv.Itoa(c.apiPort))), h, 60*time.Second)
}

// RESTConfig is a cluster-admin client configuration (a copy: change it freely).
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Impersonate is the admin configuration impersonating user (e.g. "system:serviceaccount:ns:app"), so RBAC
// decides exactly as it would for that user.
func (c *Cluster) Impersonate(user string, groups ...string) *rest.Config {
	cfg := c.RESTConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return cfg
}

// Client is a cluster-admin clientset.
func (c *Cluster) Client() kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(c.RESTConfig())
}

// Kubeconfig is the path of a cluster-admin kubeconfig file.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Dir is the cluster's data directory (logs are there).
func (c *Cluster) Dir() string { return c.dir }

// BinDir is where the control-plane binaries are.
func (c *Cluster) BinDir() string { return c.opts.BinDir }

// EnsureNamespace creates a namespace, if it does not exist, with its default ServiceAccount (which
// kube-controller-manager would create in a full cluster). labels and annotations may be nil.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string, labels, annotations map[string]string) error {
	cs := c.Client()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := cs.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the default ServiceAccount in %s: %w", name, err)
	}
	return nil
}

// RestartAPIServer stops kube-apiserver and starts it again on the same port over the same etcd, so that
// clients see their watches break and must resume.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	if err := c.apiserver.Stop(); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	if err := c.startAPIServer(ctx); err != nil {
		return fmt.Errorf("restarting kube-apiserver: %w", err)
	}
	return nil
}

// Stop stops the node's processes first if there is one (see stopNode), then kube-apiserver, then etcd (the
// other order can hang the API server's shutdown), then puts the host back (restoreHost).
func (c *Cluster) Stop() error {
	var errs []error
	errs = append(errs, c.stopNode())
	for _, comp := range []*Component{c.apiserver, c.etcd} {
		if comp != nil {
			errs = append(errs, comp.Stop())
		}
	}
	// Last: the API server listens on the bridge's address until it has stopped.
	errs = append(errs, c.restoreHost())
	return errors.Join(errs...)
}

func (c *Cluster) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.restConfig.Host, CertificateAuthority: c.restConfig.CAFile}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: adminToken}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, c.kubeconfig)
}

func writeECKey(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// freePorts reserves n distinct loopback ports by listening on port 0, then releases them.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
