// Package cluster starts a real, local Kubernetes cluster for tests and the demo: etcd and kube-apiserver
// (built from source into ./bin by `make tools`) as child processes on loopback ports, and optionally a
// node.
//
// Why not controller-runtime's envtest: envtest starts exactly etcd and kube-apiserver. Outrigger's harness
// has to grow into a node that runs pods for real (kube-controller-manager, kube-scheduler, containerd,
// kubelet; see ../../shared/ENVIRONMENT.md), so it is a small launcher of processes, each a Component with
// its own flags and log file, started in order and stopped in reverse order (kube-apiserver before etcd,
// or its shutdown can hang). Adding the node is adding components, not a second harness.
//
// Options.Node (NodeOptions, node*.go) makes it a complete one-node cluster: kube-controller-manager,
// kube-scheduler, containerd with a CNI bridge (cni0, 10.244.0.0/24), the kubelet, kube-proxy (Service
// ClusterIPs from 10.0.0.0/24, node_network.go) and CoreDNS behind kube-dns (dns.go), so that pods run for
// real, reach the API server and each other by Service and by name, and the API server calls webhooks
// through their Service. `make test-node`, `make cluster` (e2e/localcluster) and `make demo` use it. It
// records what it changes on the host before changing it, and teardown (or, after a killed run, the next
// start or RecoverHost) puts it back.
//
// It links no testing: tests use e2e/cluster/clustertest (Start stops the cluster with the test, helpers
// that fail the test), while make demo, make cluster and the benchmarks use New and EnsureNamespace.
//
// Nothing here is faked: the API server authenticates with a token file, authorizes with RBAC and calls
// admission webhooks over real TLS.
package cluster
