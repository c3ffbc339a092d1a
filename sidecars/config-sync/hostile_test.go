package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAPIHostileConfigMaps: what a user who can write the ConfigMap could try, against the real API server.
// Key names that would escape TARGET_DIR or collide with the atomic layout's ..data are refused by the API
// server itself (config-sync's own check, TestAtomicDirRefusesReservedAndEscapingNames, is the second
// line); binaryData and an object at the API server's 1 MiB limit arrive byte for byte; and 1,000 updates
// pushed as fast as the API server takes them (well over 1,000 a minute) never show a reader a torn file,
// two versions at once, or an older version after a newer one, and the last update is the one that stays.
func TestAPIHostileConfigMaps(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()
	cms := e.client.CoreV1().ConfigMaps(e.ns)

	for _, key := range []string{"..data", "..", "../etc/passwd", "a/b", "..2026_01_01_00_00_00.1", "/abs"} {
		_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Data: map[string]string{key: "x"}}, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Errorf("key %q: the API server answered %v, want it refused as invalid", key, err)
		}
	}
	t.Logf("result: the API server refuses the keys ..data, .., ../etc/passwd, a/b, ..<version>, /abs")

	// binaryData, and an object just under the API server's limit (1 MiB of data and binaryData together).
	blob := make([]byte, 256<<10)
	for i := range blob {
		blob[i] = byte(i * 7) // every byte value, NULs and invalid UTF-8 included
	}
	text := strings.Repeat("x", (1<<20)-len(blob)-4096)
	big := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "big"}, Data: map[string]string{"text": text}, BinaryData: map[string][]byte{"blob.bin": blob}}
	if _, err := cms.Create(ctx, big, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a ConfigMap of %d bytes: %v", len(text)+len(blob), err)
	}
	over := big.DeepCopy()
	over.Name, over.Data["text"] = "over", text+strings.Repeat("x", 8192)
	if _, err := cms.Create(ctx, over, metav1.CreateOptions{}); err == nil {
		t.Errorf("the API server took a ConfigMap of %d bytes, over its 1 MiB limit", len(over.Data["text"])+len(blob))
	}
	target := filepath.Join(t.TempDir(), "big")
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "big", "NAMESPACE": e.ns, "TARGET_DIR": target})
	cfg.restConfig = e.c.RESTConfig()
	s := start(t, cfg)
	s.waitReady(t)
	if got, err := os.ReadFile(filepath.Join(target, "blob.bin")); err != nil || !bytes.Equal(got, blob) {
		t.Errorf("blob.bin: %d bytes (%v), want the binaryData's %d bytes exactly", len(got), err, len(blob))
	}
	if got := readFile(t, filepath.Join(target, "text")); got != text {
		t.Errorf("text: %d bytes, want %d", len(got), len(text))
	}
	t.Logf("result: binaryData (every byte value) and a %d-byte object written byte for byte", len(text)+len(blob))

	// 1,000 updates as fast as the API server takes them, read all along.
	version := func(n int) map[string]string {
		v := strings.Repeat(fmt.Sprintf("version %06d\n", n), 200)
		return map[string]string{"a": v, "b": v}
	}
	cur, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "rapid"}, Data: version(0)}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rapid := filepath.Join(t.TempDir(), "rapid")
	cfg2 := testConfig(t, map[string]string{"CONFIGMAP": "rapid", "NAMESPACE": e.ns, "TARGET_DIR": rapid, "DEBOUNCE": "0s"})
	cfg2.restConfig = e.c.RESTConfig()
	s2 := start(t, cfg2)
	s2.waitReady(t)
	stop := make(chan struct{})
	var reads atomic.Int64
	readerErr := make(chan error, 1)
	go func() { readerErr <- readVersionsInOrder(rapid, stop, &reads) }()
	began := time.Now()
	const updates = 1000
	for n := 1; n <= updates; n++ {
		cur.Data = version(n)
		if cur, err = cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update %d: %v", n, err)
		}
	}
	took := time.Since(began)
	fileIs(t, s2, filepath.Join(rapid, "b"), version(updates)["b"])
	close(stop)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	written := s2.metric(t, `config_sync_syncs_total{result="written"}`)
	t.Logf("result: %d updates in %s (%.0f a minute); config-sync wrote %.0f versions; %d reads saw each whole, one version at a time, never going back",
		updates, took.Round(time.Millisecond), updates/took.Minutes(), written, reads.Load())
	if reads.Load() == 0 {
		t.Fatal("the reader read nothing")
	}
}

// readVersionsInOrder resolves ..data and reads a and b of that version until stop: each file must be one
// version's 200 lines whole, both the same version, and no version older than one already seen.
func readVersionsInOrder(dir string, stop <-chan struct{}, count *atomic.Int64) error {
	last := -1
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		data, err := os.Readlink(filepath.Join(dir, "..data"))
		if err != nil {
			return fmt.Errorf("reading ..data: %w", err)
		}
		var seen [2]int
		for i, name := range []string{"a", "b"} {
			b, err := os.ReadFile(filepath.Join(dir, data, name))
			if errors.Is(err, fs.ErrNotExist) {
				seen[0] = -2 // that version was retired meanwhile: read again
				break
			}
			if err != nil {
				return err
			}
			line, _, _ := strings.Cut(string(b), "\n")
			n, err := strconv.Atoi(strings.TrimPrefix(line, "version "))
			if err != nil || string(b) != strings.Repeat(line+"\n", 200) {
				return fmt.Errorf("%s/%s: torn: %d bytes starting %q", data, name, len(b), line)
			}
			seen[i] = n
		}
		if seen[0] == -2 {
			continue
		}
		if seen[0] != seen[1] {
			return fmt.Errorf("one ..data, two versions: a is %d, b is %d", seen[0], seen[1])
		}
		if seen[0] < last {
			return fmt.Errorf("version %d after version %d: an older version came back", seen[0], last)
		}
		last = seen[0]
		count.Add(1)
	}
}
