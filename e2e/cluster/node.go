package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// NodeName is the name of the local node (the kubelet runs with --hostname-override=localhost, and the API
// server reaches it by that name: --kubelet-preferred-address-types=Hostname).
const NodeName = "localhost"

// PodSubnet is the pod network of the local node: the CNI bridge cni0 holds its gateway 10.244.0.1, and
// host-local IPAM hands out the rest. The host reaches pods there; nothing else does.
const PodSubnet = "10.244.0.0/24"

// DefaultSandboxImage is the pod sandbox image the node uses when NodeOptions leave it out (`make image-pause`).
const DefaultSandboxImage = "localhost/outrigger/pause:0.1.0"

// nodeToken authenticates the kubelet as system:node:localhost (group system:nodes), so that the Node
// authorizer and the NodeRestriction admission plugin judge it as they would any kubelet.
const nodeToken = "outrigger-e2e-node-token"

// bridgeName is the CNI bridge on the host; the node refuses to start when it exists already.
const bridgeName = "cni0"

// NodeOptions turn the control plane into a one-node cluster that runs pods for real:
// kube-controller-manager, kube-scheduler, containerd (the Debian package, run with its own root, state and
// socket under the cluster directory), a CNI bridge and the kubelet, all as root on this machine.
//
// The node changes the host while it runs (the bridge cni0, kubepods cgroups, three sysctls the kubelet
// sets, a few directories under /var and /run); Stop puts back what it found. Only one node can run on a
// machine at a time: the bridge name and the pod subnet are fixed.
type NodeOptions struct {
	// SandboxImage is the pause image in podman's store (DefaultSandboxImage when empty).
	SandboxImage string
	// Images are copied from podman's store into the node's containerd (namespace k8s.io) before the node
	// is ready, so pods run them with imagePullPolicy Never or IfNotPresent. LoadImages adds more later.
	Images []string
}

// node is the running node: its processes and what it changed on the host.
type node struct {
	opts                        NodeOptions
	dir                         string
	socket                      string // containerd's gRPC socket
	kcm, scheduler              *Component
	containerd, kubelet         *Component
	kubeletPort, kubeletHealthz int
	kcmPort, schedulerPort      int
	host                        *hostState
	stopped                     bool
}

// nodeBinaries are the programs the node needs besides the control plane's (with what installs them).
var nodeBinaries = map[string]string{
	"containerd": "make deps (Debian package containerd)",
	"ctr":        "make deps (Debian package containerd)",
	"runc":       "make deps (Debian package runc)",
	"podman":     "make deps (Debian package podman)",
	"ip":         "make deps (Debian package iproute2)",
}

// prepareNode writes what the API server needs to know about the node before it starts (the kubelet's
// token, the client certificate it presents to the kubelet) and returns kube-apiserver's node flags.
func (c *Cluster) prepareNode(pki, tokens string) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the local node runs containers and changes the host's network: run as root")
	}
	for _, b := range []string{"kube-controller-manager", "kube-scheduler", "kubelet"} {
		if _, err := os.Stat(filepath.Join(c.opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make tools` (it builds the node components from source)", b, c.opts.BinDir)
		}
	}
	for b, how := range nodeBinaries {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("%s not found in PATH: run `%s`", b, how)
		}
	}
	for _, d := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"} {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("CNI plugin %s not found: run `make deps` (Debian package containernetworking-plugins)", d)
		}
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		return nil, fmt.Errorf("the bridge %s exists already: another local node is running, or a crashed one left it (`ip link delete %s` once nothing uses it)", bridgeName, bridgeName)
	}
	f, err := os.OpenFile(tokens, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(f, "%s,system:node:%s,outrigger-node,\"system:nodes\"\n", nodeToken, NodeName)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("adding the kubelet's token: %w", err)
	}
	// The API server proves itself to the kubelet (logs, exec, port-forward) with a client certificate in
	// system:masters; the kubelet trusts only that CA.
	if err := writeClientCert(filepath.Join(pki, "kubelet-client"), "kube-apiserver-kubelet-client", "system:masters"); err != nil {
		return nil, fmt.Errorf("writing the API server's kubelet client certificate: %w", err)
	}
	return []string{
		"--authorization-mode=Node,RBAC",
		"--kubelet-preferred-address-types=Hostname",
		"--kubelet-client-certificate=" + filepath.Join(pki, "kubelet-client", "tls.crt"),
		"--kubelet-client-key=" + filepath.Join(pki, "kubelet-client", "tls.key"),
	}, nil
}

// startNode starts kube-controller-manager, kube-scheduler, containerd and the kubelet, loads the images,
// and waits until the node is Ready, untainted, and the default ServiceAccount exists.
func (c *Cluster) startNode(ctx context.Context) error {
	start := time.Now()
	n := &node{opts: *c.opts.Node, dir: filepath.Join(c.dir, "node")}
	if n.opts.SandboxImage == "" {
		n.opts.SandboxImage = DefaultSandboxImage
	}
	c.node = n
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	// unix socket paths are limited to 107 bytes.
	n.socket = filepath.Join(n.dir, "containerd.sock")
	if len(n.socket) > 100 {
		return fmt.Errorf("containerd's socket path %s is too long for a unix socket: use a shorter cluster directory", n.socket)
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	n.kubeletPort, n.kubeletHealthz, n.kcmPort, n.schedulerPort = ports[0], ports[1], ports[2], ports[3]
	if n.host, err = recordHost(); err != nil {
		return err
	}

	if err := c.startControllers(); err != nil {
		return err
	}
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	images := append([]string{n.opts.SandboxImage}, n.opts.Images...)
	if err := c.LoadImages(ctx, images...); err != nil {
		return err
	}
	if err := c.startKubelet(ctx); err != nil {
		return err
	}
	for _, p := range []struct {
		comp *Component
		port int
	}{{n.kcm, n.kcmPort}, {n.scheduler, n.schedulerPort}} {
		if err := waitHTTP(ctx, p.comp, fmt.Sprintf("https://127.0.0.1:%d/healthz", p.port), nil, 60*time.Second); err != nil {
			return err
		}
	}
	if err := c.waitNodeReady(ctx, 90*time.Second); err != nil {
		return err
	}
	c.opts.Log("node %s ready %s after the control plane (pods on %s, containerd %s)", NodeName, time.Since(start).Round(time.Millisecond), PodSubnet, n.socket)
	return nil
}

// startControllers starts kube-controller-manager (default ServiceAccounts, kube-root-ca.crt, the node's
// taints) and kube-scheduler with the admin kubeconfig; startNode waits for their health later.
func (c *Cluster) startControllers() error {
	n := c.node
	common := []string{
		"--kubeconfig=" + c.kubeconfig,
		"--authentication-kubeconfig=" + c.kubeconfig,
		"--authorization-kubeconfig=" + c.kubeconfig,
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
	}
	n.kcm = &Component{
		Name: "kube-controller-manager",
		Path: filepath.Join(c.opts.BinDir, "kube-controller-manager"),
		Args: append(append([]string{}, common...),
			"--secure-port="+strconv.Itoa(n.kcmPort),
			"--cert-dir="+filepath.Join(n.dir, "kcm-certs"),
			"--root-ca-file="+filepath.Join(c.dir, "apiserver-certs", "apiserver.crt"),
			"--service-account-private-key-file="+filepath.Join(c.dir, "pki", "sa.key"),
			"--use-service-account-credentials=false",
			// The pods' network is the CNI bridge's; no controller hands out CIDRs or routes.
			"--allocate-node-cidrs=false", "--configure-cloud-routes=false",
		),
		LogPath: filepath.Join(c.dir, "kube-controller-manager.log"),
	}
	n.scheduler = &Component{
		Name: "kube-scheduler",
		Path: filepath.Join(c.opts.BinDir, "kube-scheduler"),
		Args: append(append([]string{}, common...),
			"--secure-port="+strconv.Itoa(n.schedulerPort),
			"--cert-dir="+filepath.Join(n.dir, "scheduler-certs"),
		),
		LogPath: filepath.Join(c.dir, "kube-scheduler.log"),
	}
	if err := n.kcm.Start(); err != nil {
		return err
	}
	return n.scheduler.Start()
}

// startKubelet writes the kubelet's kubeconfig and configuration and starts it (the settings that work on
// this machine: ../../shared/ENVIRONMENT.md).
func (c *Cluster) startKubelet(ctx context.Context) error {
	n := c.node
	kubeconfig := filepath.Join(n.dir, "kubelet.kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.restConfig.Host, CertificateAuthority: c.restConfig.CAFile}
	cfg.AuthInfos["kubelet"] = &clientcmdapi.AuthInfo{Token: nodeToken}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "kubelet"}
	cfg.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		return err
	}
	for _, d := range []string{"kubelet", "manifests", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	one := "1%"
	config := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"address":                  "127.0.0.1",
		"port":                     n.kubeletPort,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              n.kubeletHealthz,
		"readOnlyPort":             0,
		"containerRuntimeEndpoint": "unix://" + n.socket,
		// This host has cgroup v1 and no systemd-managed cgroups for us; kubelet 1.35+ would refuse v1.
		"cgroupDriver":  "cgroupfs",
		"failCgroupV1":  false,
		"failSwapOn":    false,
		"cgroupsPerQOS": true,
		// No iptables rules: the pods' only network is the bridge, and the host must stay as it was.
		"makeIPTablesUtilChains": false,
		// The VM lacks CAP_SYS_RESOURCE: lowering oom_score_adj fails (containerd restricts it to match).
		"oomScoreAdj":   0,
		"staticPodPath": filepath.Join(n.dir, "manifests"),
		"podLogsDir":    filepath.Join(n.dir, "pod-logs"),
		// A shared build machine: evict only when it is nearly full, and never delete the loaded images
		// (they cannot be pulled again).
		"evictionHard":                map[string]string{"memory.available": one, "nodefs.available": one, "nodefs.inodesFree": one, "imagefs.available": one},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"serializeImagePulls":         false,
		"clusterDomain":               "cluster.local",
		// Only the API server, with its client certificate, may use the kubelet's API.
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": false},
			"x509":      map[string]any{"clientCAFile": filepath.Join(c.dir, "pki", "kubelet-client", "ca.crt")},
		},
		"authorization": map[string]any{"mode": "AlwaysAllow"},
		// Secrets and ConfigMaps mounted in pods follow their objects within seconds, not a minute.
		"syncFrequency": "5s",
	}
	data, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	configPath := filepath.Join(n.dir, "kubelet.json")
	if err := os.WriteFile(configPath, data, 0o644); err != nil {
		return err
	}
	n.kubelet = &Component{
		Name: "kubelet",
		Path: filepath.Join(c.opts.BinDir, "kubelet"),
		Args: []string{
			"--config=" + configPath,
			"--kubeconfig=" + kubeconfig,
			"--root-dir=" + filepath.Join(n.dir, "kubelet"),
			"--hostname-override=" + NodeName,
			"--v=1",
		},
		LogPath: filepath.Join(c.dir, "kubelet.log"),
	}
	if err := n.kubelet.Start(); err != nil {
		return err
	}
	return waitHTTP(ctx, n.kubelet, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.kubeletHealthz), nil, 60*time.Second)
}

// waitNodeReady waits until the node reports Ready, kube-controller-manager has lifted the not-ready taint,
// and the default namespace has its ServiceAccount (so that pods are admitted).
func (c *Cluster) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	cs := c.Client()
	deadline := time.Now().Add(timeout)
	last := errors.New("not checked yet")
	for time.Now().Before(deadline) {
		for _, comp := range []*Component{c.node.kubelet, c.node.kcm, c.node.scheduler, c.node.containerd} {
			if !running(comp) {
				return fmt.Errorf("%s exited: %v\n--- %s (last lines) ---\n%s", comp.Name, comp.err, comp.LogPath, comp.LogTail(30))
			}
		}
		last = nodeReady(ctx, cs)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("node %s not ready after %s: %v\n--- kubelet (last lines) ---\n%s", NodeName, timeout, last, c.node.kubelet.LogTail(20))
}

func nodeReady(ctx context.Context, cs kubernetes.Interface) error {
	node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("node %s: %w", NodeName, err)
	}
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status != corev1.ConditionTrue {
				return fmt.Errorf("node %s Ready=%s: %s", NodeName, cond.Status, cond.Message)
			}
			ready = true
		}
	}
	if !ready {
		return fmt.Errorf("node %s has no Ready condition yet", NodeName)
	}
	for _, taint := range node.Spec.Taints {
		if strings.HasPrefix(taint.Key, "node.kubernetes.io/") {
			return fmt.Errorf("node %s still has the taint %s", NodeName, taint.Key)
		}
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("the default ServiceAccount (kube-controller-manager creates it): %w", err)
	}
	return nil
}

// LoadImages copies images from podman's store into the node's containerd (namespace k8s.io), where the
// kubelet finds them without pulling: `podman save` to a docker archive, then `ctr images import`.
// It fails, naming the image, when podman does not have one (build it first, e.g. `make images`).
func (c *Cluster) LoadImages(ctx context.Context, refs ...string) error {
	if c.node == nil {
		return errors.New("LoadImages needs a node: start the cluster with Options.Node")
	}
	for _, ref := range refs {
		if err := podman(ctx, "image", "exists", ref); err != nil {
			return fmt.Errorf("image %s is not in podman's store: build it first (`make images image-pause`)", ref)
		}
	}
	archive, err := os.CreateTemp(c.node.dir, "images-*.tar")
	if err != nil {
		return err
	}
	archive.Close()
	defer os.Remove(archive.Name())
	args := append([]string{"save", "-q", "--multi-image-archive", "--format=docker-archive", "-o", archive.Name()}, refs...)
	_ = os.Remove(archive.Name()) // podman save refuses to overwrite
	if err := podman(ctx, args...); err != nil {
		return fmt.Errorf("saving images %v: %w", refs, err)
	}
	if out, err := c.node.ctr(ctx, "images", "import", archive.Name()); err != nil {
		return fmt.Errorf("importing images %v into containerd: %w\n%s", refs, err, out)
	}
	return nil
}

// podman runs podman with the project's containers.conf unless the caller chose one.
func podman(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = os.Environ()
	if os.Getenv("CONTAINERS_CONF") == "" {
		if root, err := RepoRoot(); err == nil {
			cmd.Env = append(cmd.Env, "CONTAINERS_CONF="+filepath.Join(root, "hack", "podman", "containers.conf"))
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ctr runs containerd's CLI against this node's containerd, in the kubelet's namespace.
func (n *node) ctr(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	return string(out), err
}

// Node reports whether the cluster has a node (Options.Node).
func (c *Cluster) Node() bool { return c.node != nil }

// stopNode tears the node down in the order that leaves nothing behind: controllers and scheduler (so that
// nothing re-creates pods), the pods (the kubelet stops their containers and tears their network down),
// the kubelet, any sandbox left over, containerd, then the host: mounts, the bridge, the kubepods cgroups,
// the sysctls and the directories the node created. The API server and etcd stop after it (Stop).
func (c *Cluster) stopNode() error {
	n := c.node
	if n == nil || n.stopped {
		return nil
	}
	n.stopped = true
	var errs []error
	errs = append(errs, n.scheduler.Stop(), n.kcm.Stop())
	if running(n.kubelet) && c.restConfig != nil {
		errs = append(errs, c.deleteAllPods(30*time.Second))
	}
	errs = append(errs, n.kubelet.Stop())
	if running(n.containerd) {
		errs = append(errs, n.removeLeftoverContainers())
	}
	errs = append(errs, n.containerd.Stop())
	if n.host != nil {
		errs = append(errs, n.host.restore(n.dir, n.socket))
	}
	return errors.Join(errs...)
}

// running is Component.Running for a component that may not have been created (a start that failed early).
func running(p *Component) bool { return p != nil && p.Running() }

// deleteAllPods deletes every pod with a short grace period and waits until the kubelet has confirmed each
// deletion (so that their sandboxes and network are gone), or timeout passes.
func (c *Cluster) deleteAllPods(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pods := c.Client().CoreV1().Pods("")
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing pods to delete: %w", err)
	}
	grace := int64(1)
	for _, p := range list.Items {
		_ = c.Client().CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	for {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err == nil && len(list.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			n := -1
			if list != nil {
				n = len(list.Items)
			}
			return fmt.Errorf("%d pods still there %s after deleting them: %v", n, timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// removeLeftoverContainers kills and deletes whatever the kubelet left in containerd (e.g. after a failed
// start), so that no shim outlives the node.
func (n *node) removeLeftoverContainers() error {
	ctx := context.Background()
	var errs []error
	tasks, err := n.ctr(ctx, "tasks", "list", "--quiet")
	if err != nil {
		return fmt.Errorf("listing containerd tasks: %w: %s", err, tasks)
	}
	for _, id := range strings.Fields(tasks) {
		if out, err := n.ctr(ctx, "tasks", "delete", "--force", id); err != nil {
			errs = append(errs, fmt.Errorf("deleting task %s: %w: %s", id, err, out))
		}
	}
	containers, err := n.ctr(ctx, "containers", "list", "--quiet")
	if err != nil {
		return fmt.Errorf("listing containerd containers: %w: %s", err, containers)
	}
	for _, id := range strings.Fields(containers) {
		if out, err := n.ctr(ctx, "containers", "delete", id); err != nil {
			errs = append(errs, fmt.Errorf("deleting container %s: %w: %s", id, err, out))
		}
	}
	return errors.Join(errs...)
}

// writeClientCert writes a new CA (ca.crt) and a client certificate signed by it (tls.crt, tls.key) for the
// user cn in group org into dir.
func writeClientCert(dir, cn, org string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "outrigger-e2e-kubelet-client-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1), Subject: pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, block := range map[string]*pem.Block{
		"ca.crt":  {Type: "CERTIFICATE", Bytes: caDER},
		"tls.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}
