package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var versionDirRE = regexp.MustCompile(`^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$`)

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// TestAtomicDirLayout checks the kubelet's layout exactly: one timestamped version directory, ..data
// linking to it, one key -> ..data/key link per key, modes readable by any user, and nothing else.
func TestAtomicDirLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config")
	d := &atomicDir{path: dir, now: func() time.Time { return time.Date(2026, 11, 21, 6, 20, 0, 0, time.UTC) }}
	res, err := d.write(files{"app.conf": []byte("a=1\n"), "logo.png": {0x89, 'P', 'N', 'G', 0, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Replaced {
		t.Errorf("first write: %+v, want changed and not replaced", res)
	}
	names := listDir(t, dir)
	if len(names) != 4 || names[0] != "..2026_11_21_06_20_00."+names[0][len("..2026_11_21_06_20_00."):] || names[1] != "..data" || names[2] != "app.conf" || names[3] != "logo.png" {
		t.Fatalf("directory holds %q, want [..2026_11_21_06_20_00.<n> ..data app.conf logo.png]", names)
	}
	if !versionDirRE.MatchString(names[0]) {
		t.Errorf("version directory %q does not look like the kubelet's", names[0])
	}
	if got, _ := os.Readlink(filepath.Join(dir, "..data")); got != names[0] {
		t.Errorf("..data -> %q, want %q", got, names[0])
	}
	for _, key := range []string{"app.conf", "logo.png"} {
		if got, _ := os.Readlink(filepath.Join(dir, key)); got != "..data/"+key {
			t.Errorf("%s -> %q, want ..data/%s", key, got, key)
		}
		info, err := os.Stat(filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644 (readable by the app's user and group)", key, info.Mode().Perm())
		}
	}
	info, _ := os.Stat(filepath.Join(dir, names[0]))
	if info.Mode().Perm() != 0o755 {
		t.Errorf("version directory mode %v, want 0755", info.Mode().Perm())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "logo.png")); !bytes.Equal(b, []byte{0x89, 'P', 'N', 'G', 0, 0xff}) {
		t.Errorf("binary file reads %q", b)
	}
}

func TestAtomicDirUnchangedIsNotWritten(t *testing.T) {
	dir := t.TempDir()
	d := &atomicDir{path: dir, now: time.Now}
	if _, err := d.write(files{"a": []byte("1")}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Readlink(filepath.Join(dir, "..data"))
	res, err := d.write(files{"a": []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Readlink(filepath.Join(dir, "..data"))
	if res.Changed || before != after {
		t.Errorf("equal content rewritten: %+v, ..data %s -> %s", res, before, after)
	}
	// A user-visible link someone removed is put back, still without a new version.
	os.Remove(filepath.Join(dir, "a"))
	if res, err := d.write(files{"a": []byte("1")}); err != nil || res.Changed {
		t.Fatalf("repairing a link: %+v %v", res, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a")); err != nil || string(b) != "1" {
		t.Errorf("link not restored: %q %v", b, err)
	}
}

func TestAtomicDirUpdateRemovesOldVersionAndKeys(t *testing.T) {
	dir := t.TempDir()
	d := &atomicDir{path: dir, now: time.Now, grace: 300 * time.Millisecond}
	if _, err := d.write(files{"a": []byte("1"), "gone": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// A file of the app's own in the directory is left alone.
	if err := os.WriteFile(filepath.Join(dir, "mine"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := d.write(files{"a": []byte("2"), "new": []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !res.Replaced {
		t.Errorf("update: %+v, want changed and replaced", res)
	}
	// The replaced version stays readable for the grace period, then goes.
	if names := listDir(t, dir); len(names) != 6 || !versionDirRE.MatchString(names[0]) || !versionDirRE.MatchString(names[1]) {
		t.Fatalf("right after the swap the directory holds %q, want both versions", names)
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		names := listDir(t, dir)
		return len(names) == 5 && versionDirRE.MatchString(names[0]) && strings.Join(names[1:], " ") == "..data a mine new",
			fmt.Sprintf("directory holds %q, want one version, ..data, a, mine, new", names)
	})
	for key, want := range map[string]string{"a": "2", "new": "n", "mine": "keep"} {
		if b, _ := os.ReadFile(filepath.Join(dir, key)); string(b) != want {
			t.Errorf("%s = %q, want %q", key, b, want)
		}
	}
}

func TestAtomicDirNestedPathsAndCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	// What a crash between steps can leave: a stale ..data_tmp and an unlinked version directory.
	os.Symlink("nowhere", filepath.Join(dir, "..data_tmp"))
	os.Mkdir(filepath.Join(dir, "..2020_01_01_00_00_00.42"), 0o755)
	d := &atomicDir{path: dir, now: time.Now}
	if _, err := d.write(files{"conf.d/a.conf": []byte("A"), "top": []byte("T")}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "conf.d", "a.conf")); err != nil || string(b) != "A" {
		t.Errorf("nested file: %q %v", b, err)
	}
	if got, _ := os.Readlink(filepath.Join(dir, "conf.d")); got != "..data/conf.d" {
		t.Errorf("conf.d -> %q, want ..data/conf.d", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "..2020_01_01_00_00_00.42")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover version directory not removed: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "..data_tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale ..data_tmp not removed: %v", err)
	}
}

func TestAtomicDirRefusesReservedAndEscapingNames(t *testing.T) {
	d := &atomicDir{path: t.TempDir(), now: time.Now}
	for _, name := range []string{"..data", "../etc/passwd", "/abs", "a/../../b", "sub/..x", ""} {
		if _, err := d.write(files{name: []byte("x")}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("write(%q): %v, want an error naming it", name, err)
		}
	}
}

// TestAtomicDirReadersNeverSeeTornOrMixed runs readers against a writer switching between large versions:
// a reader of one file always gets a whole version, and a reader that resolves ..data once gets both
// files from the same version.
func TestAtomicDirReadersNeverSeeTornOrMixed(t *testing.T) {
	dir := t.TempDir()
	d := &atomicDir{path: dir, now: time.Now, grace: 100 * time.Millisecond}
	version := func(n int) files {
		v := bytes.Repeat([]byte(fmt.Sprintf("version %06d\n", n)), 20000) // 300 KB
		return files{"a": v, "b": v}
	}
	if _, err := d.write(version(0)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var reads, fileReads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- readWholeFiles(dir, stop, &fileReads) }()
	go func() { defer wg.Done(); errs <- readConsistentPairs(dir, stop, &reads) }()
	// Keep switching versions while the readers read, until each has done thousands of reads.
	for n := 1; len(errs) == 0 && (n <= 100 || reads.Load() < 1000 || fileReads.Load() < 2000); n++ {
		if _, err := d.write(version(n)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d pair reads, %d file reads, no torn or mixed state", reads.Load(), fileReads.Load())
}

// checkWhole fails unless b is one version's content: the same line repeated to the full size.
func checkWhole(name string, b []byte) (string, error) {
	line, _, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return "", fmt.Errorf("%s: %d bytes without a line", name, len(b))
	}
	want := bytes.Repeat(append(line, '\n'), len(b)/(len(line)+1))
	if len(b) != 20000*(len(line)+1) || !bytes.Equal(b, want) {
		return "", fmt.Errorf("%s: torn read: %d bytes starting %q", name, len(b), line)
	}
	return string(line), nil
}

// readWholeFiles reads dir/a through its user-visible link until stop.
func readWholeFiles(dir string, stop <-chan struct{}, count *atomic.Int64) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		b, err := os.ReadFile(filepath.Join(dir, "a"))
		if err != nil {
			return fmt.Errorf("reading a: %w", err)
		}
		if _, err := checkWhole("a", b); err != nil {
			return err
		}
		count.Add(1)
	}
}

// readConsistentPairs resolves ..data once per read and reads a and b from that version, as an app that
// needs several files from one version does. A version removed under it is retried, not an error.
func readConsistentPairs(dir string, stop <-chan struct{}, count *atomic.Int64) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		version, err := os.Readlink(filepath.Join(dir, "..data"))
		if err != nil {
			return fmt.Errorf("reading ..data: %w", err)
		}
		a, errA := os.ReadFile(filepath.Join(dir, version, "a"))
		b, errB := os.ReadFile(filepath.Join(dir, version, "b"))
		if errors.Is(errA, fs.ErrNotExist) || errors.Is(errB, fs.ErrNotExist) {
			continue // that version was replaced and removed meanwhile
		}
		if errA != nil || errB != nil {
			return fmt.Errorf("reading %s: %v %v", version, errA, errB)
		}
		la, err := checkWhole("a", a)
		if err != nil {
			return err
		}
		lb, err := checkWhole("b", b)
		if err != nil {
			return err
		}
		if la != lb {
			return fmt.Errorf("mixed versions through one ..data: a is %q, b is %q", la, lb)
		}
		count.Add(1)
	}
}

// TestInPlaceWritesAreCaught is the control for the test above: the same reader catches a writer that
// rewrites the file in place (as kiwigrid/k8s-sidecar does), so a pass above means something.
func TestInPlaceWritesAreCaught(t *testing.T) {
	dir := t.TempDir()
	write := func(n int) {
		v := bytes.Repeat([]byte(fmt.Sprintf("version %06d\n", n)), 20000)
		if err := os.WriteFile(filepath.Join(dir, "a"), v, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	stop := make(chan struct{})
	var reads atomic.Int64
	errc := make(chan error, 1)
	go func() { errc <- readWholeFiles(dir, stop, &reads) }()
	deadline := time.Now().Add(20 * time.Second)
	for n := 1; time.Now().Before(deadline); n++ {
		write(n)
		select {
		case err := <-errc:
			t.Logf("caught after %d writes: %v", n, err)
			return
		default:
		}
	}
	close(stop)
	<-errc
	t.Fatalf("the reader never saw a torn file in %d reads of in-place writes: it cannot tell atomic writes apart", reads.Load())
}
