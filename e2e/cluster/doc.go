// Package cluster starts a real, local Kubernetes control plane for tests and the demo: etcd and
// kube-apiserver (built from source into ./bin by `make tools`) as child processes on loopback ports.
//
// Why not controller-runtime's envtest: envtest starts exactly etcd and kube-apiserver. Outrigger's harness
// has to grow into a node that runs pods for real (kube-controller-manager, kube-scheduler, containerd,
// kubelet; see ../../shared/ENVIRONMENT.md), so it is a small launcher of processes, each a Component with
// its own flags and log file, started in order and stopped in reverse order (kube-apiserver before etcd,
// or its shutdown can hang). Adding the node is adding components, not a second harness.
//
// Options.Node (NodeOptions, node*.go) adds that node: kube-controller-manager, kube-scheduler,
// containerd with a CNI bridge (cni0, 10.244.0.0/24) and the kubelet, so that injected pods run for real;
// `make test-node` uses it. Teardown restores what the kubelet changes on the host.
//
// Nothing here is faked: the API server authenticates with a token file, authorizes with RBAC and calls
// admission webhooks over real TLS.
package cluster
