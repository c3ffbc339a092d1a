package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The cluster's addresses. Services get ClusterIPs from ServiceCIDR (kube-apiserver's
// --service-cluster-ip-range): the kubernetes Service is its first address, the kube-dns Service ClusterDNS.
// Pods get theirs from PodSubnet on the bridge, whose gateway BridgeIP is the host's address there: the
// API server listens on it, so that pods reach it through the kubernetes Service.
const (
	ServiceCIDR      = "10.0.0.0/24"
	KubernetesSvcIP  = "10.0.0.1"
	ClusterDNS       = "10.0.0.10"
	BridgeIP         = "10.244.0.1"
	ClusterDomain    = "cluster.local"
	forwardGuardNote = "outrigger-local-node: pods reach the bridge only"
)

// setupHostNetwork prepares the host's side of the pod network before anything starts:
//   - the bridge cni0 with BridgeIP, so the API server can listen there from its start (the CNI bridge
//     plugin adopts an existing bridge);
//   - a route for ServiceCIDR onto the bridge, so that a packet for a Service address that kube-proxy has not
//     rewritten (no endpoints yet) stays on this machine instead of following the default route;
//   - IPv4 forwarding, which pod → Service → pod traffic needs once kube-proxy rewrites it;
//   - a forwarding guard: the host forwards packets from the bridge back onto the bridge and nowhere else,
//     so turning forwarding on never lets a pod reach beyond this machine.
//
// restore (node_host.go) undoes all of it.
func setupHostNetwork() error {
	steps := [][]string{
		{"ip", "link", "add", bridgeName, "type", "bridge"},
		{"ip", "addr", "add", BridgeIP + "/24", "dev", bridgeName},
		{"ip", "link", "set", bridgeName, "up"},
		{"ip", "route", "add", ServiceCIDR, "dev", bridgeName, "src", BridgeIP},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("turning on IPv4 forwarding: %w", err)
	}
	for _, rule := range forwardGuard() {
		args := append([]string{"-w", "-I", "FORWARD"}, rule...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// forwardGuard is the two FORWARD rules of setupHostNetwork, in the order they are inserted (each at the
// top): the drop ends up below the accept.
func forwardGuard() [][]string {
	comment := []string{"-m", "comment", "--comment", forwardGuardNote}
	return [][]string{
		append([]string{"-i", bridgeName, "!", "-o", bridgeName}, append(comment, "-j", "DROP")...),
		append([]string{"-i", bridgeName, "-o", bridgeName}, append(comment, "-j", "ACCEPT")...),
	}
}

// removeForwardGuard deletes the guard's rules wherever they are (none is not an error).
func removeForwardGuard() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	var errs []error
	for _, rule := range forwardGuard() {
		for i := 0; i < 8; i++ { // a rule inserted twice (a crashed start, then another) is deleted twice
			args := append([]string{"-w", "-D", "FORWARD"}, rule...)
			out, err := exec.Command("iptables", args...).CombinedOutput()
			if err != nil {
				if !strings.Contains(string(out), "does a matching rule exist") && !strings.Contains(string(out), "Bad rule") {
					errs = append(errs, fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out))))
				}
				break
			}
		}
	}
	return errors.Join(errs...)
}

// startKubeProxy runs kube-proxy in iptables mode (iptables-nft on this host: Debian's default `iptables`;
// nftables mode would need the nft command too, and gives nothing more here). It programs the Service
// ClusterIPs for pods (PREROUTING) and for the host itself (OUTPUT: the API server calls webhooks through
// their Service), and leaves the conntrack sysctls and route_localnet alone.
func (c *Cluster) startKubeProxy(ctx context.Context) error {
	n := c.node
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	config := map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"clientConnection":   map[string]any{"kubeconfig": c.kubeconfig},
		"hostnameOverride":   NodeName,
		"mode":               "iptables",
		"clusterCIDR":        PodSubnet,
		"detectLocalMode":    "ClusterCIDR",
		"healthzBindAddress": fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"metricsBindAddress": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		// NodePorts only on the bridge address; none on 127.0.0.1 (that would need route_localnet).
		"nodePortAddresses": []string{BridgeIP + "/32"},
		"iptables":          map[string]any{"localhostNodePorts": false, "minSyncPeriod": "0s"},
		// 0 leaves each conntrack sysctl as it is.
		"conntrack": map[string]any{"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s", "udpTimeout": "0s", "udpStreamTimeout": "0s"},
	}
	data, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(n.dir, "kube-proxy.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	n.proxy = &Component{
		Name:    "kube-proxy",
		Path:    filepath.Join(c.opts.BinDir, "kube-proxy"),
		Args:    []string{"--config=" + path, "--v=1"},
		LogPath: filepath.Join(c.dir, "kube-proxy.log"),
	}
	if err := n.proxy.Start(); err != nil {
		return err
	}
	return waitHTTP(ctx, n.proxy, fmt.Sprintf("http://127.0.0.1:%d/livez", ports[0]), nil, 60*time.Second)
}

// cleanupKubeProxy removes every chain and rule kube-proxy made (`kube-proxy --cleanup`, its own teardown).
func cleanupKubeProxy(binary string) error {
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("kube-proxy %s is gone, so its rules cannot be removed with --cleanup: %w", binary, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--cleanup", "--v=0").CombinedOutput()
	if err != nil {
		return fmt.Errorf("kube-proxy --cleanup: %w: %s", err, lastLines(string(out), 5))
	}
	return nil
}

// iptablesTables are where kube-proxy and the kubelet make chains; iptablesCommands the IPv4 and IPv6 tools.
var (
	iptablesTables   = []string{"filter", "nat", "mangle"}
	iptablesCommands = []string{"iptables", "ip6tables"}
)

// kubeChains lists the KUBE-* chains, per "<command> <table>", that exist now.
func kubeChains() map[string][]string {
	out := map[string][]string{}
	for _, cmd := range iptablesCommands {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		for _, table := range iptablesTables {
			rules, err := exec.Command(cmd, "-w", "-t", table, "-S").Output()
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(rules), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-") {
					out[cmd+" "+table] = append(out[cmd+" "+table], f[1])
				}
			}
		}
	}
	return out
}

// removeNewKubeChains deletes the KUBE-* chains that were not there before the node (kube-proxy --cleanup
// leaves the kubelet's KUBE-FIREWALL and its jumps): first every rule that jumps to one, then the chain.
func removeNewKubeChains(before map[string][]string) error {
	var errs []error
	for key, chains := range kubeChains() {
		cmd, table, _ := strings.Cut(key, " ")
		var gone []string
		for _, ch := range chains {
			if !slices.Contains(before[key], ch) {
				gone = append(gone, ch)
			}
		}
		if len(gone) == 0 {
			continue
		}
		rules, _ := exec.Command(cmd, "-w", "-t", table, "-S").Output()
		for _, line := range strings.Split(string(rules), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 || f[0] != "-A" || !slices.Contains(gone, f[len(f)-1]) {
				continue
			}
			args := append([]string{"-w", "-t", table, "-D"}, f[1:]...)
			if out, err := exec.Command(cmd, args...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w: %s", cmd, strings.Join(args, " "), err, strings.TrimSpace(string(out))))
			}
		}
		for _, ch := range gone {
			for _, op := range []string{"-F", "-X"} {
				if out, err := exec.Command(cmd, "-w", "-t", table, op, ch).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("%s -t %s %s %s: %w: %s", cmd, table, op, ch, err, strings.TrimSpace(string(out))))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
