package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

// legacyWeb is the demo's app as YAML for `kubectl apply`: its namespace, a TLS Secret made for it now,
// its ConfigMap, the RoleBinding that lets config-sync read the ConfigMap (the chart's ClusterRole), the
// Deployment whose pod template asks for the sidecars, and a Service in front of https-proxy.
func legacyWeb() (string, error) {
	dir, err := os.MkdirTemp("", "outrigger-demo-tls-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if _, err := cluster.ServingCert(dir, "legacy-web.demo.svc"); err != nil {
		return "", err
	}
	crt, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		return "", err
	}
	key, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err != nil {
		return "", err
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Secret
metadata:
  name: legacy-web-tls
  namespace: demo
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: legacy-web-config-sync
  namespace: demo
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: outrigger-config-sync
subjects:
- kind: ServiceAccount
  name: default
  namespace: demo
---
%s---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: legacy-web
  namespace: demo
spec:
  replicas: 1
  selector:
    matchLabels: {app: legacy-web}
  template:
    metadata:
      labels: {app: legacy-web}
      annotations:
        outrigger.dev/inject: "https-proxy,topz,config-sync"
        https-proxy.outrigger.dev/tls-secret: legacy-web-tls
        https-proxy.outrigger.dev/proxy-port: "8000"
        config-sync.outrigger.dev/configmap: legacy-web-config
        config-sync.outrigger.dev/reload-url: http://127.0.0.1:8000/reload
    spec:
      containers:
      - name: app
        image: localhost/outrigger/e2e-app:0.1.0
        imagePullPolicy: Never
        # Loopback only: from outside the pod, https-proxy is the only way in.
        args: ["-listen=127.0.0.1:8000", "-name=legacy-web", "-config=/etc/config/greeting.txt"]
---
apiVersion: v1
kind: Service
metadata:
  name: legacy-web
  namespace: demo
spec:
  selector: {app: legacy-web}
  ports:
  - {name: https, port: 443, targetPort: 8443}
`, b64(crt), b64(key), configMap("greeting=hello from the first ConfigMap\n")), nil
}

// configMap is the app's ConfigMap with greeting.txt set to content.
func configMap(content string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: legacy-web-config
  namespace: demo
data:
  greeting.txt: %q
`, content)
}
