package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// DefaultDNSImage is the CoreDNS image the node runs when NodeOptions leave it out (`make image-coredns`
// builds it from e2e/cluster/coredns).
const DefaultDNSImage = "localhost/outrigger/coredns:0.1.0"

// dnsPort is where CoreDNS listens in its pod: unprivileged, so that it runs as a non-root user with no
// capability; the kube-dns Service maps port 53 to it.
const dnsPort = 1053

// corefile serves cluster.local (and the reverse zones) from the API server. There is no `forward`: the
// cluster has no upstream network, and a name outside it is answered SERVFAIL at once instead of being sent
// off this machine. Answers live 5 s, not the usual 30: a StatefulSet pod that comes back with a new IP
// (the sharded examples delete one) is found again within seconds.
var corefile = fmt.Sprintf(`.:%d {
    errors
    health :8080
    ready :8181
    kubernetes %s in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 30
    loadbalance
    reload
}
`, dnsPort, ClusterDomain)

// startDNS runs CoreDNS as a Deployment in kube-system behind the kube-dns Service at ClusterDNS (the
// kubelet's clusterDNS), with the RBAC its kubernetes plugin needs, and waits until the host resolves the
// kubernetes Service's name through it: that one answer proves kube-proxy, the Service, the pod and
// CoreDNS's watch of the API server together.
func (c *Cluster) startDNS(ctx context.Context) error {
	cs := c.Client()
	for _, create := range dnsObjects(c.node.opts.DNSImage) {
		if err := create(ctx, cs); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating cluster DNS: %w", err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	name := "kubernetes.default.svc." + ClusterDomain
	var last error
	for time.Now().Before(deadline) {
		addrs, err := LookupHost(ctx, name)
		if err == nil && slices.Contains(addrs, KubernetesSvcIP) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%s resolved to %v, want %s", name, addrs, KubernetesSvcIP)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster DNS does not answer for %s after 90s: %v\n--- kube-proxy (last lines) ---\n%s", name, last, c.node.proxy.LogTail(10))
}

// LookupHost resolves name with the cluster's DNS server (the kube-dns Service), from the host.
func LookupHost(ctx context.Context, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(ClusterDNS, "53"))
	}}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return r.LookupHost(ctx, name)
}

// dnsObjects are the API objects of cluster DNS, in the order they are created.
func dnsObjects(image string) []func(context.Context, kubernetes.Interface) error {
	const ns, name = "kube-system", "coredns"
	labels := map[string]string{"k8s-app": "kube-dns"}
	meta := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns", Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns", Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}
	config := &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"Corefile": corefile}}
	one, nonRoot, no := int32(1), true, false
	uid := int64(65532)
	deploy := &appsv1.Deployment{
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					PriorityClassName:  "system-cluster-critical",
					// CoreDNS answers for the cluster; it does not ask itself (resolvConf is the node's file).
					DNSPolicy: corev1.DNSDefault,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: &nonRoot, RunAsUser: &uid, RunAsGroup: &uid,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            name,
						Image:           image,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"-conf", "/etc/coredns/Corefile"},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: dnsPort, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: dnsPort, Protocol: corev1.ProtocolTCP},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}}, PeriodSeconds: 1},
						LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 10},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &nonRoot,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: name},
					}}}},
				},
			},
		},
	}
	service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: ClusterDNS,
			Selector:  labels,
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(dnsPort), Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: 53, TargetPort: intstr.FromInt32(dnsPort), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	sa := &corev1.ServiceAccount{ObjectMeta: meta}
	return []func(context.Context, kubernetes.Interface) error{
		func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
			return err
		},
		func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
			return err
		},
		func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
			return err
		},
		func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, config, metav1.CreateOptions{})
			return err
		},
		func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.CoreV1().Services(ns).Create(ctx, service, metav1.CreateOptions{})
			return err
		},
		func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{})
			return err
		},
	}
}
