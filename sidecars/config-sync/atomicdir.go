package main

// The kubelet's AtomicWriter (k8s.io/kubernetes/pkg/volume/util) is not importable as a library (the
// kubernetes module is built with replace directives and is not meant to be required), so its layout and
// algorithm are reproduced here, step for step, because apps and libraries already rely on it byte for byte:
//
//	TARGET_DIR/..2026_11_21_06_20_00.123456789/app.conf   the files of one version (never changed once linked)
//	TARGET_DIR/..data -> ..2026_11_21_06_20_00.123456789  swapped by rename(2): atomic
//	TARGET_DIR/app.conf -> ..data/app.conf                the user-visible names
//
// A reader that opens TARGET_DIR/app.conf gets a whole old or a whole new file; a reader that resolves ..data
// once and reads several files through it gets them all from one version.
//
// One deliberate difference: the kubelet removes the replaced version right after the swap, so a reader whose
// path lookup resolved ..data to it an instant before can get ENOENT (this package's reader test catches
// that). Here the replaced version stays for a grace period (a second) before it is removed.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
	// fileMode and dirMode match the kubelet's ConfigMap and Secret volumes (defaultMode 0644): readable by
	// the app whatever its user and group.
	fileMode = 0o644
	dirMode  = 0o755
)

// files is one version of the configuration: a relative path ("app.conf", or "sub/app.conf" in volume
// mode) → content.
type files map[string][]byte

// equal reports whether f and g hold the same paths with the same contents.
func (f files) equal(g files) bool {
	if len(f) != len(g) {
		return false
	}
	for p, b := range f {
		if c, ok := g[p]; !ok || !bytes.Equal(b, c) {
			return false
		}
	}
	return true
}

// validatePath refuses paths that could escape the directory or collide with the layout's own ..names.
func validatePath(p string) error {
	if p == "" || filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("file name %q: want a clean relative name", p)
	}
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, "..") {
			return fmt.Errorf("file name %q: a name must not start with '..' (reserved by the atomic layout)", p)
		}
	}
	return nil
}

// atomicDir writes versions of files into one directory with the kubelet's atomic layout.
type atomicDir struct {
	path string
	// now names the version directories.
	now func() time.Time
	// grace is how long a replaced version stays readable before it is removed.
	grace time.Duration

	mu      sync.Mutex           // serializes write and the delayed removal of replaced versions
	retired map[string]time.Time // replaced version → when
}

// writeResult says what a write did.
type writeResult struct {
	// Changed is true when a new version was linked in (false: the content on disk was already equal).
	Changed bool
	// Replaced is true when the new version replaced an earlier one (false on the first write into the dir).
	Replaced bool
}

// write makes the directory hold exactly want. When the current version already equals want it changes
// nothing on disk but restores missing user-visible links. On failure the current version stays in place.
func (d *atomicDir) write(want files) (writeResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range want {
		if err := validatePath(p); err != nil {
			return writeResult{}, err
		}
	}
	if err := os.MkdirAll(d.path, dirMode); err != nil {
		return writeResult{}, fmt.Errorf("creating %s: %w", d.path, err)
	}
	// (2) The current version, if any.
	oldTS, err := os.Readlink(filepath.Join(d.path, dataDirName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return writeResult{}, fmt.Errorf("reading %s: %w", filepath.Join(d.path, dataDirName), err)
	}
	// (4) Compare with what is on disk: unchanged content is not written again.
	if oldTS != "" {
		current, err := readTree(filepath.Join(d.path, oldTS))
		if err == nil && current.equal(want) {
			return writeResult{}, d.linkVisible(want)
		}
	}
	// (5, 6) A new timestamped directory with the whole payload.
	tsDir, err := os.MkdirTemp(d.path, d.now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return writeResult{}, fmt.Errorf("creating a version directory in %s: %w", d.path, err)
	}
	tsName := filepath.Base(tsDir)
	if err := writeTree(tsDir, want); err != nil {
		os.RemoveAll(tsDir)
		return writeResult{}, err
	}
	// (7, 8) ..data_tmp -> new version, renamed over ..data: the atomic switch.
	tmpLink := filepath.Join(d.path, newDataDirName)
	if err := os.Remove(tmpLink); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(tsDir)
		return writeResult{}, fmt.Errorf("removing a stale %s: %w", tmpLink, err)
	}
	if err := os.Symlink(tsName, tmpLink); err != nil {
		os.RemoveAll(tsDir)
		return writeResult{}, fmt.Errorf("linking %s: %w", tmpLink, err)
	}
	if err := os.Rename(tmpLink, filepath.Join(d.path, dataDirName)); err != nil {
		os.Remove(tmpLink)
		os.RemoveAll(tsDir)
		return writeResult{}, fmt.Errorf("switching %s to the new version: %w", filepath.Join(d.path, dataDirName), err)
	}
	// (9) User-visible links for new names; (10) links of names that are gone are removed.
	if err := d.linkVisible(want); err != nil {
		return writeResult{Changed: true, Replaced: oldTS != ""}, err
	}
	// (11) Earlier versions are removed: the one just replaced after the grace period, any other (left by
	// a crash, or replaced more than grace ago) now.
	if oldTS != "" && oldTS != tsName {
		if d.retired == nil {
			d.retired = map[string]time.Time{}
		}
		d.retired[oldTS] = time.Now()
		time.AfterFunc(d.grace, d.removeRetired)
	}
	if err := d.removeVersionsExcept(tsName); err != nil {
		return writeResult{Changed: true, Replaced: oldTS != ""}, err
	}
	return writeResult{Changed: true, Replaced: oldTS != ""}, nil
}

// linkVisible makes TARGET_DIR/<top> -> ..data/<top> for every top-level name of want and removes such
// links whose name is no longer in want. Other entries of the directory are left alone.
func (d *atomicDir) linkVisible(want files) error {
	tops := map[string]bool{}
	for p := range want {
		tops[strings.SplitN(p, "/", 2)[0]] = true
	}
	for top := range tops {
		link := filepath.Join(d.path, top)
		target := filepath.Join(dataDirName, top)
		if got, err := os.Readlink(link); err == nil && got == target {
			continue
		}
		// A file or a wrong link in the way is replaced, as the kubelet does.
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replacing %s: %w", link, err)
		}
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("linking %s: %w", link, err)
		}
	}
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("listing %s: %w", d.path, err)
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 || tops[e.Name()] || strings.HasPrefix(e.Name(), "..") {
			continue
		}
		link := filepath.Join(d.path, e.Name())
		if got, err := os.Readlink(link); err == nil && got == filepath.Join(dataDirName, e.Name()) {
			if err := os.Remove(link); err != nil {
				return fmt.Errorf("removing %s (no longer in the source): %w", link, err)
			}
		}
	}
	return nil
}

// removeRetired removes the versions replaced at least grace ago (it runs from a timer).
func (d *atomicDir) removeRetired() {
	d.mu.Lock()
	defer d.mu.Unlock()
	current, err := os.Readlink(filepath.Join(d.path, dataDirName))
	if err != nil {
		return // the directory went away; nothing to clean
	}
	_ = d.removeVersionsExcept(current) // a failure is retried after the next write
}

// removeVersionsExcept removes every timestamped version directory but keep and those replaced less than
// grace ago. d.mu is held.
func (d *atomicDir) removeVersionsExcept(keep string) error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("listing %s: %w", d.path, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep || !isVersionDir(e.Name()) {
			continue
		}
		if since, ok := d.retired[e.Name()]; ok && time.Since(since) < d.grace {
			continue // still readable by a reader that resolved ..data just before the swap
		}
		if err := os.RemoveAll(filepath.Join(d.path, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("removing the old version %s: %w", e.Name(), err))
			continue
		}
		delete(d.retired, e.Name())
	}
	return errors.Join(errs...)
}

// isVersionDir reports whether name is a timestamped version directory: "..2026_11_21_06_20_00.<digits>".
func isVersionDir(name string) bool {
	const layout = "..2006_01_02_15_04_05."
	if len(name) <= len(layout) {
		return false
	}
	_, err := time.Parse(layout, name[:len(layout)])
	return err == nil
}

// writeTree writes f under dir (which exists), creating subdirectories, with the layout's modes set
// explicitly (MkdirTemp makes 0700 and the umask would lower the others).
func writeTree(dir string, f files) error {
	if err := os.Chmod(dir, dirMode); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", dir, err)
	}
	paths := make([]string, 0, len(f))
	for p := range f {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(dir, p)
		if sub := filepath.Dir(full); sub != dir {
			if err := os.MkdirAll(sub, dirMode); err != nil {
				return fmt.Errorf("creating %s: %w", sub, err)
			}
			for s := sub; s != dir; s = filepath.Dir(s) {
				if err := os.Chmod(s, dirMode); err != nil {
					return fmt.Errorf("setting the mode of %s: %w", s, err)
				}
			}
		}
		if err := writeFile(full, f[p]); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, content []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = fh.Write(content)
	if err == nil {
		err = fh.Chmod(fileMode)
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readTree reads every regular file under dir (following symlinks to files), skipping names that start
// with "..". Paths in the result are relative to dir, '/'-separated.
func readTree(dir string) (files, error) {
	out := files{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		if strings.HasPrefix(e.Name(), "..") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return nil
		}
		info, err := os.Stat(path) // follows a symlink
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	return out, nil
}
