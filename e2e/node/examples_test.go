package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestExamples deploys each of the book's examples from examples/ exactly as its README says (`kubectl
// apply -f examples/<name>/`) on the cluster with Outrigger installed by helm, and checks what the book says
// should happen. The figures a reader should see (key spread, remap fraction, times) are logged as
// "result:" lines; `make examples` runs this against the cluster of `make cluster` and prints them.
func TestExamples(t *testing.T) {
	requireNode(t)
	t.Run("https-legacy", exampleHTTPSLegacy)
	t.Run("dynamic-config", exampleDynamicConfig)
	t.Run("topz", exampleTopz)
	t.Run("git-paas", exampleGitPaaS)
	t.Run("sharded-redis", func(t *testing.T) { exampleShardedCache(t, "sharded-redis", "redis", 6379) })
	t.Run("sharded-memcache", func(t *testing.T) { exampleShardedCache(t, "sharded-memcache", "memcache", 11211) })
	t.Run("http-sharding", exampleHTTPSharding)
	t.Run("shard-key", exampleShardKey)
}

// 1. Adding HTTPS to a legacy service.
func exampleHTTPSLegacy(t *testing.T) {
	const ns, host = "https-legacy", "legacy-web.https-legacy.svc"
	kubectl(t, "create", "namespace", ns)
	caPEM := tlsSecretWithKubectl(t, ns, "legacy-web-tls", host, "create")
	applyExample(t, "https-legacy")
	pod := readyPod(t, ns, "app=legacy-web")
	ip := podIP(t, ns, pod.Name)
	svc := serviceIP(t, ns, "legacy-web")

	if body := get(t, tlsClient(caPEM, host), "https://"+svc+"/"); !strings.HasPrefix(body, "hello from legacy-web\n") {
		t.Errorf("HTTPS through the Service: %q", body)
	}
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(ip, "8000") + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("the legacy app answered plain HTTP from outside its pod (%s)", resp.Status)
	}
	if body, _ := getErr(nil, "http://"+svc+"/"); strings.Contains(body, "hello from") {
		t.Errorf("plain HTTP to the HTTPS port reached the app: %q", body)
	}

	rotated := time.Now()
	newCA := tlsSecretWithKubectl(t, ns, "legacy-web-tls", host, "apply")
	clustertest.Eventually(t, 90*time.Second, func() error {
		_, err := getErr(tlsClient(newCA, host), "https://"+svc+"/")
		return err
	})
	after := readyPod(t, ns, "app=legacy-web")
	restarts := int32(0)
	for _, s := range append(after.Status.InitContainerStatuses, after.Status.ContainerStatuses...) {
		restarts += s.RestartCount
	}
	if after.UID != pod.UID || restarts != 0 {
		t.Errorf("the certificate rotation restarted something: pod %s → %s, %d container restarts", pod.UID, after.UID, restarts)
	}
	t.Logf("result: HTTPS from outside the pod, plain HTTP refused; a new certificate in the Secret served %s later, no restart", time.Since(rotated).Round(100*time.Millisecond))
}

// 2. Dynamic configuration with a sidecar.
func exampleDynamicConfig(t *testing.T) {
	const ns = "dynamic-config"
	applyExample(t, "dynamic-config")
	pod := readyPod(t, ns, "app=app")
	url := "http://" + net.JoinHostPort(podIP(t, ns, pod.Name), "8000") + "/config"
	if body := get(t, nil, url); !strings.Contains(body, "greeting=hello") {
		t.Fatalf("the app's config at start: %q", body)
	}
	changed := time.Now()
	kubectlApply(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: dynamic-config}
data:
  app.conf: |
    greeting=bonjour
`)
	clustertest.Eventually(t, 30*time.Second, func() error {
		body, err := getErr(nil, url)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "greeting=bonjour") || strings.HasPrefix(body, "loads: 1\n") {
			return fmt.Errorf("the app answers %q", body)
		}
		return nil
	})
	t.Logf("result: kubectl apply of the ConfigMap → config-sync wrote the file and sent SIGHUP → the app answers with it, %s", time.Since(changed).Round(100*time.Millisecond))
}

// 3. topz.
func exampleTopz(t *testing.T) {
	const ns = "topz"
	applyExample(t, "topz")
	pod := readyPod(t, ns, "app=app")
	base := "http://" + net.JoinHostPort(podIP(t, ns, pod.Name), "8080") + "/topz"
	text := get(t, nil, base)
	for _, want := range []string{"/app -listen=:8000 -name=app", "/topz", "/pause", "%CPU", "RSS"} {
		if !strings.Contains(text, want) {
			t.Errorf("/topz does not show %q:\n%s", want, text)
		}
	}
	var table struct {
		Processes []map[string]any `json:"processes"`
	}
	if err := json.Unmarshal([]byte(get(t, nil, base+"?format=json")), &table); err != nil || len(table.Processes) < 3 {
		t.Errorf("/topz?format=json: %d processes, %v", len(table.Processes), err)
	}
	t.Logf("result: /topz lists the pod's %d processes (the app's among them) with CPU and memory", len(table.Processes))
}

// 4. A simple PaaS with git.
func exampleGitPaaS(t *testing.T) {
	const ns, repos = "git-paas", "/tmp/outrigger-git-paas"
	repo := &repository{work: filepath.Join(repos, "work"), bare: filepath.Join(repos, "site.git")}
	_ = os.RemoveAll(repos)
	if err := os.MkdirAll(repos, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, repos, "init", "-q", "--bare", "-b", "main", repo.bare)
	git(t, repos, "init", "-q", "-b", "main", repo.work)
	repo.commitFile(t, "index.html", "<h1>version 1</h1>\n")
	applyExample(t, "git-paas")
	readyPod(t, ns, "app=site")
	page := "http://" + serviceIP(t, ns, "site") + "/files/index.html"
	if body := get(t, nil, page); body != "<h1>version 1</h1>\n" {
		t.Fatalf("the site serves %q, want the first commit", body)
	}
	repo.commitFile(t, "index.html", "<h1>version 2</h1>\n")
	pushed := time.Now()
	clustertest.Eventually(t, time.Minute, func() error {
		body, err := getErr(nil, page)
		if err == nil && body != "<h1>version 2</h1>\n" {
			err = fmt.Errorf("the site still serves %q", body)
		}
		return err
	})
	t.Logf("result: git push → the site serves the new commit %s later (git-sync period 1s)", time.Since(pushed).Round(100*time.Millisecond))
}

// 5 and 6. Sharded redis and sharded memcache through an ambassador, with the book's nutcracker.yaml.
func exampleShardedCache(t *testing.T, dir, protocol string, port int) {
	ns := dir
	applyExample(t, dir)
	shards := make([]string, 3)
	for i := range shards {
		name := fmt.Sprintf("%s-%d", dir, i)
		waitPod(t, ns, name, 2*time.Minute, podReady)
		shards[i] = podIP(t, ns, name)
	}
	client := readyPod(t, ns, "app=cache-client")
	app := "http://" + net.JoinHostPort(podIP(t, ns, client.Name), "8000") + "/kv/"
	const keys = 300
	// Keys that differ all along, as session ids do: fnv1a_64 as twemproxy computes it (the book's hash)
	// maps keys that differ only in their last bytes (key-1, key-2, ...) to neighbouring ring points.
	keyName := func(i int) string { return fmt.Sprintf("session:%08x", uint32(i)*2654435761) }
	for i := 0; i < keys; i++ {
		put(t, app+keyName(i), fmt.Sprintf("value-%d", i))
	}
	spread := make([]int, 3)
	owner := map[int]int{}
	for i := 0; i < keys; i++ {
		key := keyName(i)
		if got := get(t, nil, app+key); got != fmt.Sprintf("value-%d", i) {
			t.Fatalf("GET %s through the ambassador: %q", key, got)
		}
		n := 0
		for s, ip := range shards {
			if has(t, protocol, net.JoinHostPort(ip, strconv.Itoa(port)), key) {
				spread[s]++
				owner[i] = s
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s is on %d shards, want exactly one", key, n)
		}
	}
	for s, n := range spread {
		if n < keys/10 {
			t.Errorf("shard %d holds %d of %d keys: the ring does not spread them", s, n, keys)
		}
	}
	t.Logf("result: %d keys written through localhost:%d spread over the shards %d / %d / %d", keys, port, spread[0], spread[1], spread[2])

	// Ejection and recovery: shard 1 goes away; after server_failure_limit (1) failure its keys move to the
	// other shards; when the StatefulSet has brought it back and server_retry_timeout (2 s) has passed, it is
	// in the ring again.
	victim := -1
	for i := 0; i < keys && victim < 0; i++ {
		if owner[i] == 1 {
			victim = i
		}
	}
	key := keyName(victim)
	zero := int64(0)
	deleted := time.Now()
	if err := env.cluster.Client().CoreV1().Pods(ns).Delete(context.Background(), dir+"-1", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, time.Minute, func() error {
		// A SET of shard 1's key lands on another shard once shard 1 is ejected.
		if err := putErr(app+key, "while-ejected"); err != nil {
			return err
		}
		for _, s := range []int{0, 2} {
			if has(t, protocol, net.JoinHostPort(shards[s], strconv.Itoa(port)), key) {
				return nil
			}
		}
		return fmt.Errorf("%s is on neither remaining shard yet", key)
	})
	ejected := time.Since(deleted)
	waitPod(t, ns, dir+"-1", 2*time.Minute, podReady)
	back := podIP(t, ns, dir+"-1")
	clustertest.Eventually(t, time.Minute, func() error {
		if err := putErr(app+key, "after-recovery"); err != nil {
			return err
		}
		if !has(t, protocol, net.JoinHostPort(back, strconv.Itoa(port)), key) {
			return fmt.Errorf("%s does not land on the recreated shard 1 (%s) yet", key, back)
		}
		return nil
	})
	t.Logf("result: shard 1 deleted → its keys served by the others after %s (ejected); the recreated shard back in the ring %s after the delete", ejected.Round(100*time.Millisecond), time.Since(deleted).Round(100*time.Millisecond))
}

// 7. A consistent HTTP sharding proxy.
func exampleHTTPSharding(t *testing.T) {
	const ns = "http-sharding"
	applyExample(t, "http-sharding")
	for i := 0; i < 3; i++ {
		readyPod(t, ns, fmt.Sprintf("app=shard-%d", i))
	}
	front := readyPod(t, ns, "app=frontend")
	base := "http://" + serviceIP(t, ns, "frontend")
	const uris = 400
	before := shardOf(t, base, uris, "")
	if again := shardOf(t, base, uris, ""); fmt.Sprint(again) != fmt.Sprint(before) {
		t.Fatal("the same URIs landed on other shards the second time")
	}
	counts := map[string]int{}
	for _, s := range before {
		counts[s]++
	}
	applyExample(t, "http-sharding/add-a-shard")
	readyPod(t, ns, "app=shard-3")
	clustertest.Eventually(t, 2*time.Minute, func() error {
		list, err := env.cluster.Client().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=frontend"})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 || list.Items[0].UID == front.UID || podReady(&list.Items[0]) != nil {
			return fmt.Errorf("the front end with four shards is not the one Ready pod yet (%d pods)", len(list.Items))
		}
		return nil
	})
	var after []string
	clustertest.Eventually(t, time.Minute, func() error {
		var err error
		if after, err = shardOfErr(base, uris, ""); err != nil {
			return err
		}
		for _, s := range after {
			if s == "shard-3" {
				return nil
			}
		}
		return fmt.Errorf("no URI lands on shard-3 yet")
	})
	moved := 0
	for i := range before {
		if after[i] != before[i] {
			moved++
			if after[i] != "shard-3" {
				t.Errorf("URI %d moved from %s to %s: with consistent hashing a URI only moves to the new shard", i, before[i], after[i])
			}
		}
	}
	frac := float64(moved) / uris
	if frac < 0.1 || frac > 0.45 {
		t.Errorf("adding a fourth shard moved %d of %d URIs (%.1f%%); consistent hashing should move about a quarter", moved, uris, 100*frac)
	}
	t.Logf("result: %d URIs over 3 shards %d / %d / %d, each always on the same one; a fourth shard moved %d of %d (%.1f%%, ideal 25%%), all to the new shard",
		uris, counts["shard-0"], counts["shard-1"], counts["shard-2"], moved, uris, 100*frac)
}

// 8. Choosing a shard key: shard(country(request.ip), request.path).
func exampleShardKey(t *testing.T) {
	const ns = "http-sharding"
	applyExample(t, "shard-key")
	readyPod(t, ns, "app=frontend-by-country")
	base := "http://" + serviceIP(t, ns, "frontend-by-country")
	const paths = 60
	us, fr := shardOf(t, base, paths, "US"), shardOf(t, base, paths, "FR")
	if fmt.Sprint(shardOf(t, base, paths, "US")) != fmt.Sprint(us) {
		t.Fatal("one country's requests for a path landed on other shards the second time")
	}
	differ := 0
	for i := range us {
		if us[i] != fr[i] {
			differ++
		}
	}
	if differ == 0 || differ == paths {
		t.Errorf("US and FR agree on %d of %d paths: the country is not part of the key", paths-differ, paths)
	}
	t.Logf("result: the same path from X-Country US and FR lands on different shards for %d of %d paths (about 2/3 with 3 shards); one country's path always on one shard", differ, paths)
}

// applyExample is the README's command: kubectl apply -f examples/<dir>/.
func applyExample(t *testing.T, dir string) {
	t.Helper()
	kubectl(t, "apply", "-f", filepath.Join(env.root, "examples", dir)+"/")
}

// readyPod waits for the one Ready pod (not being deleted) with the label selector in ns.
func readyPod(t *testing.T, ns, selector string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	clustertest.Eventually(t, 3*time.Minute, func() error {
		list, err := env.cluster.Client().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		var live []corev1.Pod
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				live = append(live, p)
			}
		}
		if len(live) != 1 {
			return fmt.Errorf("%d pods %s in %s", len(live), selector, ns)
		}
		pod = &live[0]
		return podReady(pod)
	})
	return pod
}

// serviceIP is the Service's ClusterIP, once it takes connections on its first port: kube-proxy rejects
// them until it has programmed a ready endpoint, a moment after the pod is Ready.
func serviceIP(t *testing.T, ns, name string) string {
	t.Helper()
	svc, err := env.cluster.Client().CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	clustertest.Eventually(t, time.Minute, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if svc.Spec.Ports[0].Port == 80 {
		return svc.Spec.ClusterIP
	}
	return addr
}

// tlsSecretWithKubectl makes a new CA and a certificate for host, and puts it in Secret ns/name the way the
// README says: `kubectl create secret tls` (verb create), or piped through `kubectl apply` to replace it.
func tlsSecretWithKubectl(t *testing.T, ns, name, host, verb string) []byte {
	t.Helper()
	dir := t.TempDir()
	caPEM, err := cluster.ServingCert(dir, host)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", ns, "create", "secret", "tls", name, "--cert", filepath.Join(dir, "tls.crt"), "--key", filepath.Join(dir, "tls.key")}
	if verb == "create" {
		kubectl(t, args...)
		return caPEM
	}
	kubectlApply(t, kubectl(t, append(args, "--dry-run=client", "-o", "yaml")...))
	return caPEM
}

func tlsClient(caPEM []byte, host string) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host}}}
}

// shardOf GETs /shard/item-<i> for i < n through base (with X-Country: country unless empty) and returns
// the name of the shard that answered each.
func shardOf(t *testing.T, base string, n int, country string) []string {
	t.Helper()
	out, err := shardOfErr(base, n, country)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// shardOfErr GETs n URIs through the front end at base and returns the shard that answered each, or the
// first request's error. Right after the front end's pod is replaced, kube-proxy may still send a
// connection to the pod that is gone for a moment: callers that wait for a rollout retry on error.
func shardOfErr(base string, n int, country string) ([]string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	out := make([]string, n)
	for i := range out {
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/shard/item-%d", base, i), nil)
		if err != nil {
			return nil, err
		}
		if country != "" {
			req.Header.Set("X-Country", country)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", req.URL, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		name, uri, _ := strings.Cut(strings.TrimSpace(string(body)), " ")
		if resp.StatusCode != http.StatusOK || uri != req.URL.Path {
			return nil, fmt.Errorf("GET %s: %s %q", req.URL, resp.Status, body)
		}
		out[i] = name
	}
	return out, nil
}

func put(t *testing.T, url, value string) {
	t.Helper()
	if err := putErr(url, value); err != nil {
		t.Fatal(err)
	}
}

func putErr(url, value string) error {
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(value))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("PUT %s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// has asks the shard at addr directly whether it holds key (redis EXISTS, memcache get).
func has(t *testing.T, protocol, addr, key string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("connecting to shard %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(conn)
	if protocol == "memcache" {
		fmt.Fprintf(conn, "get %s\r\n", key)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("memcache get on %s: %v", addr, err)
		}
		return strings.HasPrefix(line, "VALUE ")
	}
	fmt.Fprintf(conn, "*2\r\n$6\r\nEXISTS\r\n$%d\r\n%s\r\n", len(key), key)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("redis EXISTS on %s: %v", addr, err)
	}
	return line == ":1\r\n"
}

// commitFile writes name in the work tree, commits it, pushes it and refreshes the dumb-HTTP index.
func (r *repository) commitFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.work, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, r.work, "add", name)
	git(t, r.work, "-c", "user.name=e2e", "-c", "user.email=e2e@outrigger.test", "commit", "-q", "-m", strings.TrimSpace(content))
	git(t, r.work, "push", "-q", r.bare, "main")
	git(t, r.bare, "update-server-info")
}
