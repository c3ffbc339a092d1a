package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

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
	resolvConf := filepath.Join(n.dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver "+ClusterDNS+"\n"), 0o644); err != nil {
		return err
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
		"clusterDomain":               ClusterDomain,
		"clusterDNS":                  []string{ClusterDNS},
		// Pods with dnsPolicy Default (CoreDNS itself) get this file, not the host's: no pod ever asks a
		// name server beyond this machine.
		"resolvConf": resolvConf,
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
