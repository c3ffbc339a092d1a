package cluster

import (
	"context"
	"errors"
	"fmt"
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

// NodeOptions turn the control plane into a complete one-node cluster that runs pods for real:
// kube-controller-manager, kube-scheduler, containerd (the Debian package, run with its own root, state and
// socket under the cluster directory), a CNI bridge, the kubelet, kube-proxy (Service ClusterIPs, for pods
// and for the API server calling webhooks through their Service) and CoreDNS behind the kube-dns Service
// (cluster.local names, StatefulSet pods' names), all as root on this machine.
//
// The node changes the host while it runs (the bridge cni0 and a route for ServiceCIDR onto it, kubepods
// cgroups, IPv4 forwarding limited to the bridge by an iptables guard, kube-proxy's iptables chains, the
// sysctls the kubelet sets, a few directories under /var and /run); it records what it found in
// hostRecordPath first, and Stop puts it back. A node killed before its teardown is put back by the next
// start, or by RecoverHost (`make cluster-down`). Only one node can run on a machine at a time: the bridge
// name and the pod subnet are fixed.
type NodeOptions struct {
	// SandboxImage is the pause image in podman's store (DefaultSandboxImage when empty).
	SandboxImage string
	// DNSImage is the CoreDNS image in podman's store (DefaultDNSImage when empty).
	DNSImage string
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
	containerd, kubelet, proxy  *Component
	kubeletPort, kubeletHealthz int
	kcmPort, schedulerPort      int
	host                        *hostState
	stopped, restored           bool
}

// nodeBinaries are the programs the node needs from PATH, with the Debian package that has each.
var nodeBinaries = [][2]string{
	{"containerd", "containerd"}, {"ctr", "containerd"}, {"runc", "runc"}, {"podman", "podman"}, {"ip", "iproute2"},
	{"iptables", "iptables"}, {"iptables-restore", "iptables"},
}

// prepareNode writes what the API server needs to know about the node before it starts (the kubelet's
// token, the client certificate it presents to the kubelet) and returns kube-apiserver's node flags.
func (c *Cluster) prepareNode(pki, tokens string) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the local node runs containers and changes the host's network: run as root")
	}
	for _, b := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(c.opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make tools` (it builds the node components from source)", b, c.opts.BinDir)
		}
	}
	for _, b := range nodeBinaries {
		if _, err := exec.LookPath(b[0]); err != nil {
			return nil, fmt.Errorf("%s not found in PATH: run `make deps` (Debian package %s)", b[0], b[1])
		}
	}
	for _, d := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"} {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("CNI plugin %s not found: run `make deps` (Debian package containernetworking-plugins)", d)
		}
	}
	// A node that was killed before its teardown left its record: put the host back first.
	if recovered, err := RecoverHost(); err != nil {
		return nil, fmt.Errorf("putting back what an earlier local node left on the host: %w", err)
	} else if recovered {
		c.opts.Log("put back what an earlier local node, stopped without its teardown, left on the host")
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		return nil, fmt.Errorf("the bridge %s exists already and no local node's record says it made it: something else uses it (`ip link delete %s` once nothing does)", bridgeName, bridgeName)
	}
	n := &node{opts: *c.opts.Node, dir: filepath.Join(c.dir, "node")}
	if n.opts.SandboxImage == "" {
		n.opts.SandboxImage = DefaultSandboxImage
	}
	if n.opts.DNSImage == "" {
		n.opts.DNSImage = DefaultDNSImage
	}
	c.node = n
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	// unix socket paths are limited to 107 bytes.
	n.socket = filepath.Join(n.dir, "containerd.sock")
	if len(n.socket) > 100 {
		return nil, fmt.Errorf("containerd's socket path %s is too long for a unix socket: use a shorter cluster directory", n.socket)
	}
	var err error
	if n.host, err = recordHost(n.dir, n.socket, filepath.Join(c.opts.BinDir, "kube-proxy")); err != nil {
		return nil, err
	}
	if err := setupHostNetwork(); err != nil {
		return nil, fmt.Errorf("preparing the pod network on the host: %w", err)
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
	n := c.node
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	n.kubeletPort, n.kubeletHealthz, n.kcmPort, n.schedulerPort = ports[0], ports[1], ports[2], ports[3]

	if err := c.startControllers(); err != nil {
		return err
	}
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	images := append([]string{n.opts.SandboxImage, n.opts.DNSImage}, n.opts.Images...)
	loading := time.Now()
	if err := c.LoadImages(ctx, images...); err != nil {
		return err
	}
	c.opts.Log("loaded %d images from podman into containerd in %s", len(images), time.Since(loading).Round(time.Millisecond))
	if err := c.startKubelet(ctx); err != nil {
		return err
	}
	if err := c.startKubeProxy(ctx); err != nil {
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
	dns := time.Now()
	if err := c.startDNS(ctx); err != nil {
		return err
	}
	c.opts.Log("cluster DNS (CoreDNS behind kube-dns %s) answers %s after the node", ClusterDNS, time.Since(dns).Round(time.Millisecond))
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

// waitNodeReady waits until the node reports Ready, kube-controller-manager has lifted the not-ready taint,
// and the default namespace has its ServiceAccount (so that pods are admitted).
func (c *Cluster) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	cs := c.Client()
	deadline := time.Now().Add(timeout)
	last := errors.New("not checked yet")
	for time.Now().Before(deadline) {
		for _, comp := range []*Component{c.node.kubelet, c.node.kcm, c.node.scheduler, c.node.containerd, c.node.proxy} {
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
	return c.node.loadImages(ctx, refs)
}

// LoadImagesInto is LoadImages for the node of the cluster running in dir (Options.Dir), from another
// process: `make images` while `make cluster` runs.
func LoadImagesInto(ctx context.Context, dir string, refs ...string) error {
	n := &node{dir: filepath.Join(dir, "node")}
	n.socket = filepath.Join(n.dir, "containerd.sock")
	if _, err := os.Stat(n.socket); err != nil {
		return fmt.Errorf("no node's containerd in %s: %w", dir, err)
	}
	return n.loadImages(ctx, refs)
}

func (n *node) loadImages(ctx context.Context, refs []string) error {
	for _, ref := range refs {
		if err := podman(ctx, "image", "exists", ref); err != nil {
			return fmt.Errorf("image %s is not in podman's store: build it first (`make images`)", ref)
		}
	}
	archive := filepath.Join(n.dir, fmt.Sprintf("images-%d.tar", time.Now().UnixNano()))
	defer os.Remove(archive)
	if err := podman(ctx, append([]string{"save", "-q", "--multi-image-archive", "--format=docker-archive", "-o", archive}, refs...)...); err != nil {
		return fmt.Errorf("saving images %v: %w", refs, err)
	}
	if out, err := n.ctr(ctx, "images", "import", archive); err != nil {
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

// stopNode stops the node's processes in the order that leaves nothing behind: controllers and scheduler
// (so that nothing re-creates pods), the pods (the kubelet stops their containers and tears their network
// down), the kubelet and kube-proxy, any sandbox left over, containerd. The API server and etcd stop after
// it, and then restoreHost puts back the mounts, the bridge, iptables, the kubepods cgroups, the sysctls and
// the directories the node created (Stop).
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
	errs = append(errs, n.kubelet.Stop(), n.proxy.Stop())
	if running(n.containerd) {
		errs = append(errs, n.removeLeftoverContainers())
	}
	errs = append(errs, n.containerd.Stop())
	return errors.Join(errs...)
}

// restoreHost undoes what the node changed on the host (hostState.restore), once its processes and the API
// server have stopped.
func (c *Cluster) restoreHost() error {
	if c.node == nil || c.node.host == nil || c.node.restored {
		return nil
	}
	c.node.restored = true
	return c.node.host.restore()
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
		// A sandbox's task takes its containers' tasks with it: those are "not found" by then.
		if out, err := n.ctr(ctx, "tasks", "delete", "--force", id); err != nil && !strings.Contains(out, "not found") {
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
