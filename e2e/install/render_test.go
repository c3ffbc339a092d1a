package install

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
)

var update = flag.Bool("update", false, "rewrite manifests/outrigger.yaml from helm template")

// modeValues are the --set values of each certificate mode (provided needs a Secret name and a caBundle).
func modeValues(t *testing.T) map[string][]string {
	t.Helper()
	ca, err := cluster.ServingCert(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]string{
		"cert-manager": {"certificates.mode=cert-manager"},
		"self-managed": {"certificates.mode=self-managed"},
		"provided": {"certificates.mode=provided", "certificates.provided.secretName=my-webhook-tls",
			"certificates.provided.caBundle=" + base64.StdEncoding.EncodeToString(ca)},
	}
}

func TestLintInEveryMode(t *testing.T) {
	for mode, values := range modeValues(t) {
		args := []string{"lint", "--strict", env.chart, "--namespace", "outrigger-system"}
		for _, v := range values {
			args = append(args, "--set", v)
		}
		if out, errOut, err := run("", env.helm, args...); err != nil {
			t.Errorf("%s: helm lint: %v\n%s%s", mode, err, out, errOut)
		}
	}
}

// TestWrongValuesAreRefused: the schema and the chart refuse bad values, naming the key, the value or its
// type, and what is accepted.
func TestWrongValuesAreRefused(t *testing.T) {
	var names []string
	builtin, err := catalog.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range builtin {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	for _, tc := range []struct {
		set  []string
		want []string
	}{
		{[]string{"replicaCount=two"}, []string{"at '/replicaCount': got string, want integer"}},
		{[]string{"replicas=2"}, []string{"additional properties 'replicas' not allowed"}},
		{[]string{"webhook.timeout=5"}, []string{"at '/webhook'", "additional properties 'timeout' not allowed"}},
		{[]string{"certificates.mode=vault"}, []string{"at '/certificates/mode'", "'cert-manager', 'self-managed', 'provided'"}},
		{[]string{"webhook.failurePolicy=Never"}, []string{"at '/webhook/failurePolicy'", "'Fail', 'Ignore'"}},
		{[]string{"webhook.timeoutSeconds=60"}, []string{"at '/webhook/timeoutSeconds'", "maximum: got 60, want 30"}},
		{[]string{"config.sidecarMode=sidecar"}, []string{"at '/config/sidecarMode'", "'native', 'containers'"}},
		{[]string{"config.injectHostNetwork=maybe"}, []string{"at '/config/injectHostNetwork'", "got string, want boolean"}},
		{[]string{"config.excludedNamespaces[0]=Bad_NS"}, []string{"at '/config/excludedNamespaces/0'", "'Bad_NS' does not match pattern"}},
		{[]string{"certificates.selfManaged.certValidity=90days"}, []string{"at '/certificates/selfManaged/certValidity'", "'90days' does not match pattern"}},
		{[]string{"config.defaults={topz,nonesuch}"}, []string{`config.defaults[1]="nonesuch": not a sidecar; accepted: ` + strings.Join(names, ", ")}},
		{[]string{"config.images.overrides.topx=r/topz:1"}, []string{`config.images.overrides: "topx" is not a sidecar; accepted: ` + strings.Join(names, ", ")}},
		{[]string{"certificates.mode=provided"}, []string{"certificates.mode=provided needs certificates.provided.secretName"}},
		{[]string{"certificates.mode=provided", "certificates.provided.secretName=x", "certificates.provided.caBundle=aGVsbG8="},
			[]string{`certificates.provided.caBundle="aGVsbG8="`, "want the base64 of the PEM CA certificate"}},
	} {
		args := []string{"template", "outrigger", env.chart}
		for _, v := range tc.set {
			args = append(args, "--set", v)
		}
		_, errOut, err := run("", env.helm, args...)
		if err == nil {
			t.Errorf("--set %v was accepted", tc.set)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("--set %v: the error does not say %q:\n%s", tc.set, w, errOut)
			}
		}
	}
}

// TestEveryModeRendersWhatTheAPIServerAccepts: helm template in each mode, then a server-side dry-run of
// every object (the test hook's too); cert-manager's Issuers and Certificates are validated against
// cert-manager's own CRDs. Then the chart's promises are checked on the typed objects.
func TestEveryModeRendersWhatTheAPIServerAccepts(t *testing.T) {
	installCertManagerCRDs(t)
	for mode, values := range modeValues(t) {
		t.Run(mode, func(t *testing.T) {
			ns := "render-" + mode
			namespace(t, ns, nil)
			manifest := render(t, "outrigger", ns, values...)
			out := kubectl(t, manifest, "apply", "--dry-run=server", "-f", "-")
			objs := objects(t, manifest)
			if n := strings.Count(out, "(server dry run)"); n != len(objs) {
				t.Fatalf("the API server accepted %d of %d objects:\n%s", n, len(objs), out)
			}
			checkChartPromises(t, mode, ns, objs)
			if mode == "cert-manager" {
				checkCertManagerObjects(t, ns, objs)
			}
		})
	}
}

// checkChartPromises checks what the issue asks of the chart, on the rendered objects.
func checkChartPromises(t *testing.T, mode, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	var d appsv1.Deployment
	into(t, find(t, objs, "Deployment", "outrigger-webhook"), &d)
	podLabels := labels.Set(d.Spec.Template.Labels)
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *d.Spec.Replicas)
	}
	psc, csc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", psc)
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v: want a read-only root filesystem, no privilege escalation, drop ALL", csc)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.StrVal != "http-health" {
			t.Errorf("want a probe on %s of the health port, got %+v", path, probe)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want requests and a memory limit", c.Resources)
	}
	if len(spec.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread")
	}
	for _, tsc := range spec.TopologySpreadConstraints {
		if sel, _ := metav1.LabelSelectorAsSelector(tsc.LabelSelector); !sel.Matches(podLabels) {
			t.Errorf("topology spread on %s does not select the webhook's pods", tsc.TopologyKey)
		}
	}
	for k := range d.Spec.Template.Annotations {
		if strings.HasPrefix(k, "checksum/") {
			t.Errorf("annotation %s: the webhook reloads its config and certificate, no restart is needed", k)
		}
	}
	var cm corev1.ConfigMap
	into(t, find(t, objs, "ConfigMap", "outrigger-config"), &cm)
	if _, err := config.Parse([]byte(cm.Data["config.yaml"]), ns); err != nil {
		t.Errorf("the webhook refuses the chart's config.yaml: %v", err)
	}
	configMounted := false
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			for _, m := range c.VolumeMounts {
				configMounted = configMounted || (m.Name == v.Name && m.SubPath == "")
			}
		}
	}
	if !configMounted {
		t.Error("the ConfigMap is not mounted as a directory (a subPath mount is never updated)")
	}

	var pdb policyv1.PodDisruptionBudget
	into(t, find(t, objs, "PodDisruptionBudget", ""), &pdb)
	if sel, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); !sel.Matches(podLabels) || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1 over the webhook's pods", pdb.Spec)
	}
	checkNetworkPolicy(t, objs, podLabels, c)
	var svc corev1.Service
	into(t, find(t, objs, "Service", "outrigger-webhook"), &svc)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.StrVal != c.Ports[0].Name {
		t.Errorf("Service %+v does not send 443 to the webhook's port", svc.Spec)
	}

	var wh admissionregistrationv1.MutatingWebhookConfiguration
	into(t, find(t, objs, "MutatingWebhookConfiguration", "outrigger"), &wh)
	w := wh.Webhooks[0]
	if *w.SideEffects != admissionregistrationv1.SideEffectClassNone || !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) ||
		*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || *w.TimeoutSeconds != 5 || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("webhook policies: sideEffects %s, versions %v, reinvocation %s, timeout %d, failurePolicy %s",
			*w.SideEffects, w.AdmissionReviewVersions, *w.ReinvocationPolicy, *w.TimeoutSeconds, *w.FailurePolicy)
	}
	if w.ClientConfig.Service == nil || w.ClientConfig.Service.Name != svc.Name || w.ClientConfig.Service.Namespace != ns || *w.ClientConfig.Service.Path != "/inject" {
		t.Errorf("clientConfig %+v: want the chart's Service, path /inject", w.ClientConfig)
	}
	nsSel, _ := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	objSel, _ := metav1.LabelSelectorAsSelector(w.ObjectSelector)
	for _, tc := range []struct {
		what     string
		ns       labels.Set
		selected bool
	}{
		{"kube-system", labels.Set{"kubernetes.io/metadata.name": "kube-system"}, false},
		{"kube-public", labels.Set{"kubernetes.io/metadata.name": "kube-public"}, false},
		{"the release namespace", labels.Set{"kubernetes.io/metadata.name": ns}, false},
		{"cert-manager's namespace (it renews the webhook's certificate)", labels.Set{"kubernetes.io/metadata.name": "cert-manager"}, false},
		{"a namespace labelled disabled", labels.Set{"kubernetes.io/metadata.name": "shop", "outrigger.dev/injection": "disabled"}, false},
		{"an ordinary namespace", labels.Set{"kubernetes.io/metadata.name": "shop"}, true},
	} {
		if nsSel.Matches(tc.ns) != tc.selected {
			t.Errorf("namespaceSelector selects %s: %v, want %v", tc.what, !tc.selected, tc.selected)
		}
	}
	if objSel.Matches(podLabels) {
		t.Error("the objectSelector selects the webhook's own pods")
	}
	if objSel.Matches(labels.Set{"outrigger.dev/injection": "disabled"}) || !objSel.Matches(labels.Set{"app": "web"}) {
		t.Error("the objectSelector must leave out exactly the pods labelled outrigger.dev/injection=disabled")
	}
	var conditions []string
	for _, mc := range w.MatchConditions {
		conditions = append(conditions, mc.Name)
	}
	if !slices.Equal(conditions, []string{"not-a-mirror-pod", "not-host-network"}) {
		t.Errorf("matchConditions %v", conditions)
	}

	var cs rbacv1.ClusterRole
	into(t, find(t, objs, "ClusterRole", "outrigger-config-sync"), &cs)
	if len(cs.Rules) != 1 || !slices.Equal(cs.Rules[0].Resources, []string{"configmaps"}) || !slices.Equal(cs.Rules[0].Verbs, []string{"get", "list", "watch"}) {
		t.Errorf("outrigger-config-sync rules %+v: want get, list, watch on ConfigMaps only (the pod shares the token)", cs.Rules)
	}
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && o.GetName() == "outrigger-config-sync-secrets" {
			t.Error("a Secrets role is rendered though configSyncRole.secretNames is empty")
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	wantMode := map[string]string{"cert-manager": "files", "provided": "files", "self-managed": "self-managed"}[mode]
	if env["CERT_MODE"] != wantMode {
		t.Errorf("CERT_MODE=%q, want %q", env["CERT_MODE"], wantMode)
	}
}

// checkNetworkPolicy: the webhook's pods take the API server's calls and the kubelet's probes from
// anywhere, and /metrics (plain HTTP, no authentication) only from the chart's metricsFrom peers.
func checkNetworkPolicy(t *testing.T, objs []*unstructured.Unstructured, podLabels labels.Set, c corev1.Container) {
	t.Helper()
	var np networkingv1.NetworkPolicy
	into(t, find(t, objs, "NetworkPolicy", "outrigger-webhook"), &np)
	if sel, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); !sel.Matches(podLabels) || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("NetworkPolicy %+v: want an ingress policy over the webhook's pods", np.Spec)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	open, peers := map[int32]bool{}, map[int32]int{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if len(rule.From) == 0 {
				open[p.Port.IntVal] = true
			}
			peers[p.Port.IntVal] += len(rule.From)
		}
	}
	for name, port := range ports {
		switch {
		case strings.Contains(name, "metrics"):
			if open[port] || peers[port] == 0 {
				t.Errorf("the metrics port %d is open to %v: want only metricsFrom's peers", port, open[port])
			}
		case !open[port]:
			t.Errorf("port %s (%d) is not open: the API server and the kubelet reach it", name, port)
		}
	}
}

// checkCertManagerObjects follows the chain: selfSigned Issuer → CA Certificate → CA Issuer → serving
// Certificate for the Service, mounted at CERT_DIR, its CA injected by cainjector.
func checkCertManagerObjects(t *testing.T, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	issuers := map[string]cmapi.Issuer{}
	certs := map[string]cmapi.Certificate{}
	for _, o := range objs {
		switch o.GetKind() {
		case "Issuer":
			var i cmapi.Issuer
			into(t, o, &i)
			issuers[i.Name] = i
		case "Certificate":
			var c cmapi.Certificate
			into(t, o, &c)
			certs[c.Name] = c
		}
	}
	leaf, ok := certs["outrigger-webhook-tls"]
	if !ok {
		t.Fatalf("no serving Certificate; have %v", certs)
	}
	caIssuer := issuers[leaf.Spec.IssuerRef.Name]
	if caIssuer.Spec.CA == nil {
		t.Fatalf("the serving Certificate's issuer %q is not a CA Issuer", leaf.Spec.IssuerRef.Name)
	}
	var ca cmapi.Certificate
	for _, c := range certs {
		if c.Spec.SecretName == caIssuer.Spec.CA.SecretName {
			ca = c
		}
	}
	if !ca.Spec.IsCA || ca.Spec.CommonName == "" || ca.Spec.PrivateKey.Algorithm != cmapi.ECDSAKeyAlgorithm {
		t.Errorf("CA Certificate %q: isCA %v, commonName %q, key %s; want a CA with a common name and an ECDSA key", ca.Name, ca.Spec.IsCA, ca.Spec.CommonName, ca.Spec.PrivateKey.Algorithm)
	}
	if ca.Spec.PrivateKey.RotationPolicy != cmapi.RotationPolicyNever {
		t.Error("the CA's key must survive its renewal (rotationPolicy Never), or renewing it breaks the serving certificate")
	}
	if root := issuers[ca.Spec.IssuerRef.Name]; root.Spec.SelfSigned == nil {
		t.Errorf("the CA's issuer %q is not selfSigned", ca.Spec.IssuerRef.Name)
	}
	if !slices.Contains(leaf.Spec.DNSNames, "outrigger-webhook."+ns+".svc") || leaf.Spec.IsCA || leaf.Spec.PrivateKey.Algorithm != cmapi.ECDSAKeyAlgorithm {
		t.Errorf("serving Certificate: dnsNames %v, key %s", leaf.Spec.DNSNames, leaf.Spec.PrivateKey.Algorithm)
	}
	var wh admissionregistrationv1.MutatingWebhookConfiguration
	into(t, find(t, objs, "MutatingWebhookConfiguration", ""), &wh)
	if got, want := wh.Annotations["cert-manager.io/inject-ca-from"], ns+"/"+leaf.Name; got != want {
		t.Errorf("inject-ca-from %q, want %q", got, want)
	}
	var d appsv1.Deployment
	into(t, find(t, objs, "Deployment", ""), &d)
	mounted := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == leaf.Spec.SecretName {
			for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
				mounted = mounted || (m.Name == v.Name && m.MountPath == "/etc/outrigger/certs")
			}
		}
	}
	if !mounted {
		t.Errorf("Secret %s is not mounted at CERT_DIR", leaf.Spec.SecretName)
	}
}

// installCertManagerCRDs applies the CRDs shipped in the github.com/cert-manager/cert-manager module (the
// version in go.mod) and waits until the API server serves them.
func installCertManagerCRDs(t *testing.T) {
	t.Helper()
	cmd, errOut, err := run("", "go", "mod", "download", "-json", "github.com/cert-manager/cert-manager")
	if err != nil {
		t.Fatalf("go mod download github.com/cert-manager/cert-manager: %v\n%s", err, errOut)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal([]byte(cmd), &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %s", err, cmd)
	}
	dir := filepath.Join(mod.Dir, "deploy", "crds")
	kubectl(t, "", "apply", "--server-side", "-f", dir)
	clustertest.Eventually(t, 60*time.Second, func() error { // right after creation a CRD may have no conditions at all
		_, errOut, err := run("", env.kubectl, "--kubeconfig", env.cluster.Kubeconfig(), "wait", "--for=condition=Established", "--timeout=10s",
			"crd/issuers.cert-manager.io", "crd/certificates.cert-manager.io")
		if err != nil {
			return fmt.Errorf("cert-manager CRDs not established: %v: %s", err, errOut)
		}
		return nil
	})
	t.Logf("cert-manager %s CRDs from %s", mod.Version, dir)
}

// TestManifestsAreHelmTemplate: manifests/outrigger.yaml is the chart rendered with its defaults in the
// self-managed mode (no cert-manager needed), byte for byte; -update rewrites it.
func TestManifestsAreHelmTemplate(t *testing.T) {
	out, errOut, err := runIn(env.root, "", env.helm, manifestsCommand...)
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", manifestsCommand, err, errOut)
	}
	want := manifestsHeader + out
	path := filepath.Join(env.root, "manifests", "outrigger.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("manifests/outrigger.yaml is not `helm %s` of the chart: run go test ./e2e/install -run TestManifestsAreHelmTemplate -update", strings.Join(manifestsCommand, " "))
	}
	// kubectl apply -f manifests/ works: the namespace first (namespace.yaml sorts before outrigger.yaml),
	// then every object is accepted.
	entries, err := os.ReadDir(filepath.Join(env.root, "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			files = append(files, e.Name())
		}
	}
	if !slices.Equal(files, []string{"namespace.yaml", "outrigger.yaml"}) {
		t.Fatalf("manifests/ holds %v", files)
	}
	ns := find(t, objects(t, readFile(t, filepath.Join(env.root, "manifests", "namespace.yaml"))), "Namespace", "outrigger-system")
	namespace(t, ns.GetName(), ns.GetLabels()) // kept: without kube-controller-manager a deleted namespace never goes
	applied := kubectl(t, "", "apply", "--dry-run=server", "-f", filepath.Join(env.root, "manifests"))
	if n := strings.Count(applied, "(server dry run)"); n != len(objects(t, want))+1 {
		t.Fatalf("the API server accepted %d objects of manifests/:\n%s", n, applied)
	}
}

var manifestsCommand = []string{"template", "outrigger", "charts/outrigger", "--namespace", "outrigger-system", "--set", "certificates.mode=self-managed", "--skip-tests"}

const manifestsHeader = `# Outrigger for kubectl apply -f manifests/ (no Helm, no cert-manager): the chart rendered with
#   helm template outrigger charts/outrigger --namespace outrigger-system --set certificates.mode=self-managed --skip-tests
# Do not edit: go test ./e2e/install -run TestManifestsAreHelmTemplate -update rewrites it, and fails when
# it differs from the chart. The webhook creates and rotates its own certificates (see charts/outrigger).
`

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
