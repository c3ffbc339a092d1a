package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// containerdConfig is containerd 1.6's configuration (version 2) for the node: everything it writes lives
// under dir, its CRI plugin runs runc v2 with cgroupfs and uses the local pause image, and the CNI plugin
// reads the bridge network from dir. Written as text because it is TOML and these are all the keys.
func containerdConfig(dir, socket, sandboxImage string) string {
	q := strconv.Quote // TOML basic strings accept Go's quoting for these ASCII paths.
	return `version = 2
root = ` + q(filepath.Join(dir, "containerd", "root")) + `
state = ` + q(filepath.Join(dir, "containerd", "state")) + `
# Snapshotters this machine cannot use would only log errors at every start.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = ` + q(socket) + `

[plugins."io.containerd.internal.v1.opt"]
  path = ` + q(filepath.Join(dir, "containerd", "opt")) + `

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ` + q(sandboxImage) + `
  # There is no AppArmor profile to load here.
  disable_apparmor = true
  # The VM lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, so never ask it to.
  restrict_oom_score_adj = true
  # Network namespaces are bind-mounted under state, not /var/run/netns, so teardown finds them.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ` + q(filepath.Join(dir, "containerd", "runc")) + `
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = ` + q(filepath.Join(dir, "cni", "net.d")) + `
`
}

// cniBridgeConfig is the pod network: the bridge cni0 with the gateway BridgeIP, host-local addresses
// from PodSubnet (its state under dir) and no masquerading. Pods reach each other, the host, and Service
// addresses (kube-proxy rewrites those to pods or to the API server); the host forwards nothing beyond the
// bridge (setupHostNetwork's guard).
func cniBridgeConfig(dir string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "0.4.0",
		"name":       "outrigger-pods",
		"plugins": []any{map[string]any{
			"type":      "bridge",
			"bridge":    bridgeName,
			"isGateway": true,
			"ipMasq":    false,
			// A pod that reaches itself through its Service: kube-proxy sends the packet back out of the
			// port it came in on.
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":   "host-local",
				"ranges": [][]map[string]string{{{"subnet": PodSubnet, "gateway": BridgeIP}}},
				// The only route beyond the subnet: Service addresses, through the host (kube-proxy). Pods get
				// no default route.
				"routes":  []map[string]string{{"dst": ServiceCIDR}},
				"dataDir": filepath.Join(dir, "cni", "ipam"),
			},
		}},
	}, "", "  ")
}

// startContainerd writes the CNI and containerd configurations and starts containerd, waiting until its
// socket answers.
func (n *node) startContainerd(ctx context.Context) error {
	netd := filepath.Join(n.dir, "cni", "net.d")
	if err := os.MkdirAll(netd, 0o755); err != nil {
		return err
	}
	cni, err := cniBridgeConfig(n.dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(netd, "10-outrigger-bridge.conflist"), cni, 0o644); err != nil {
		return err
	}
	config := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(config, []byte(containerdConfig(n.dir, n.socket, n.opts.SandboxImage)), 0o644); err != nil {
		return err
	}
	n.containerd = &Component{
		Name:    "containerd",
		Path:    "containerd",
		Args:    []string{"--config", config, "--log-level", "warn"},
		LogPath: filepath.Join(filepath.Dir(n.dir), "containerd.log"),
	}
	if err := n.containerd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !n.containerd.Running() {
			return fmt.Errorf("containerd exited: %v\n--- %s (last lines) ---\n%s", n.containerd.err, n.containerd.LogPath, n.containerd.LogTail(30))
		}
		conn, err := net.DialTimeout("unix", n.socket, time.Second)
		if err == nil {
			conn.Close()
			if out, err := n.ctr(ctx, "version"); err == nil {
				return nil
			} else if time.Now().After(deadline) {
				return fmt.Errorf("containerd does not answer on %s: %v: %s", n.socket, err, out)
			}
		} else if time.Now().After(deadline) {
			return fmt.Errorf("containerd not listening on %s after 30s: %v\n--- %s ---\n%s", n.socket, err, n.containerd.LogPath, n.containerd.LogTail(30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
