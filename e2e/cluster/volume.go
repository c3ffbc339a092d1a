package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// WriteVolume lays out files in dir the way the kubelet writes and updates a ConfigMap or Secret volume:
// a new timestamped directory, a `..data` symlink swapped by rename, and `name -> ..data/name` links; the
// previous version is removed after the swap. Tests use it to hand a process (the webhook's config file,
// its certificates) exactly what it sees in a pod, updates included, without a kubelet.
func WriteVolume(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts := filepath.Join(dir, fmt.Sprintf("..%s.%d", time.Now().Format("2006_01_02_15_04_05"), time.Now().UnixNano()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ts, name), content, 0o600); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
