// Command config-sync-bench measures config-sync's latency from a ConfigMap update (the API write
// acknowledged) to the new file visible in TARGET_DIR and to the reload (SIGHUP) delivered to the app,
// against a real kube-apiserver + etcd (e2e/cluster), and compares it in the same run with the floor: a bare
// client-go watch of the same ConfigMap that only receives the event.
//
// This program is also the app: config-sync signals it by its command name, so run it as a binary named
// csbench inside its own PID namespace (run.sh does), as in a pod with shareProcessNamespace.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

func main() {
	updates := flag.Int("updates", 200, "ConfigMap updates per configuration")
	binary := flag.String("binary", "_output/bin/config-sync", "the config-sync binary")
	debounces := flag.String("debounce", "200ms,0s", "DEBOUNCE values to measure (comma list)")
	flag.Parse()
	if err := run(*updates, *binary, strings.Split(*debounces, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "config-sync-bench:", err)
		os.Exit(1)
	}
}

// events collects, per version number, when each observer first saw it.
type events struct {
	mu          sync.Mutex
	floor, file map[int]time.Time
	hups        []time.Time
	changed     chan struct{}
}

func (e *events) note(m map[int]time.Time, v int) {
	e.mu.Lock()
	if _, ok := m[v]; !ok {
		m[v] = time.Now()
	}
	e.mu.Unlock()
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

func config(n int) map[string]string {
	return map[string]string{"app.conf": fmt.Sprintf("version %d\n", n) + strings.Repeat("# padding line of a realistic config file\n", 100)}
}

func versionOf(s string) int {
	line, _, _ := strings.Cut(s, "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(line, "version "))
	if err != nil {
		return -1
	}
	return n
}

func run(updates int, binary string, debounces []string) error {
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("%s not found: run `make build`", binary)
	}
	ctx := context.Background()
	c, err := cluster.New(ctx, cluster.Options{})
	if err != nil {
		return err
	}
	defer os.RemoveAll(c.Dir())
	defer c.Stop()
	client := c.Client()
	const ns = "bench"
	if err := c.EnsureNamespace(ctx, ns, nil, nil); err != nil {
		return err
	}
	cms := client.CoreV1().ConfigMaps(ns)
	version := 0
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}, Data: config(version)}, metav1.CreateOptions{})
	if err != nil {
		return err
	}

	ev := &events{floor: map[int]time.Time{}, file: map[int]time.Time{}, changed: make(chan struct{}, 1)}
	// The floor: a bare watch that only receives the event.
	w, err := cms.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "app").String(), ResourceVersion: cm.ResourceVersion})
	if err != nil {
		return err
	}
	defer w.Stop()
	go func() {
		for e := range w.ResultChan() {
			if e.Type == watch.Modified {
				ev.note(ev.floor, versionOf(e.Object.(*corev1.ConfigMap).Data["app.conf"]))
			}
		}
	}()
	// The app: counts SIGHUPs.
	hup := make(chan os.Signal, 16)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			ev.mu.Lock()
			ev.hups = append(ev.hups, time.Now())
			ev.mu.Unlock()
			select {
			case ev.changed <- struct{}{}:
			default:
			}
		}
	}()

	self := filepath.Base(os.Args[0])
	fmt.Printf("# config-sync latency: %d updates per configuration, ConfigMap of %d bytes\n\n", updates, len(config(0)["app.conf"]))
	fmt.Println("| DEBOUNCE | measure | p50 from ack | p99 from ack | max from ack | p50 from send | p99 from send |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, debounce := range debounces {
		target, err := os.MkdirTemp("", "csbench-target-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(target)
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			return err
		}
		if err := fw.Add(target); err != nil {
			return err
		}
		go func() {
			for range fw.Events {
				if b, err := os.ReadFile(filepath.Join(target, "app.conf")); err == nil {
					ev.note(ev.file, versionOf(string(b)))
				}
			}
		}()
		port, err := freePort()
		if err != nil {
			return err
		}
		cmd := exec.Command(binary)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig(), "CONFIGMAP=app", "NAMESPACE="+ns, "TARGET_DIR="+target,
			"RELOAD_PROCESS="+self, "DEBOUNCE="+debounce, "STATUS_PORT="+port)
		logf, err := os.Create(filepath.Join(os.TempDir(), "csbench-sidecar.log"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		stopSidecar := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			fw.Close()
			logf.Close()
		}
		// Ready: the current version is in place.
		if err := waitFor(ev, 30*time.Second, func() bool {
			b, err := os.ReadFile(filepath.Join(target, "app.conf"))
			return err == nil && versionOf(string(b)) == version
		}); err != nil {
			stopSidecar()
			return fmt.Errorf("config-sync did not write the first version (see %s): %w", logf.Name(), err)
		}
		var floor, file, reload, write, floorS, fileS, reloadS []time.Duration
		for i := 0; i < updates; i++ {
			version++
			cm.Data = config(version)
			ev.mu.Lock()
			hupsBefore := len(ev.hups)
			ev.mu.Unlock()
			sent := time.Now()
			if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				stopSidecar()
				return err
			}
			ack := time.Now()
			var tFloor, tFile, tHUP time.Time
			err := waitFor(ev, 10*time.Second, func() bool {
				var ok1, ok2 bool
				tFloor, ok1 = ev.floor[version]
				tFile, ok2 = ev.file[version]
				if len(ev.hups) > hupsBefore {
					tHUP = ev.hups[hupsBefore]
				}
				return ok1 && ok2 && !tHUP.IsZero()
			})
			if err != nil {
				stopSidecar()
				return fmt.Errorf("update %d: %w (floor %v, file %v, reload %v)", version, err, !tFloor.IsZero(), !tFile.IsZero(), !tHUP.IsZero())
			}
			since := func(t time.Time) time.Duration { return max(t.Sub(ack), 0) } // an event can beat the ack
			write = append(write, ack.Sub(sent))
			floor = append(floor, since(tFloor))
			file = append(file, since(tFile))
			reload = append(reload, since(tHUP))
			floorS, fileS, reloadS = append(floorS, tFloor.Sub(sent)), append(fileS, tFile.Sub(sent)), append(reloadS, tHUP.Sub(sent))
			time.Sleep(20 * time.Millisecond)
		}
		stopSidecar()
		row := func(name string, fromAck, fromSend []time.Duration) {
			p50, p99, mx := percentiles(fromAck)
			s50, s99, _ := percentiles(fromSend)
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n", debounce, name, ms(p50), ms(p99), ms(mx), ms(s50), ms(s99))
		}
		row("API write acknowledged", make([]time.Duration, len(write)), write)
		row("floor: bare client-go watch receives the event", floor, floorS)
		row("config-sync: new file visible", file, fileS)
		row("config-sync: SIGHUP delivered", reload, reloadS)
		f50, f99, _ := percentiles(floorS)
		c50, c99, _ := percentiles(fileS)
		fmt.Printf("| %s | ratio file visible / floor (from send) | | | | %.2f× | %.2f× |\n", debounce, float64(c50)/float64(f50), float64(c99)/float64(f99))
	}
	return nil
}

// waitFor re-checks cond (under ev.mu) on every observation until it holds or timeout passes.
func waitFor(ev *events, timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond) // the file check in the ready wait has no event of its own
	defer tick.Stop()
	for {
		ev.mu.Lock()
		ok := cond()
		ev.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ev.changed:
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("timed out after %s", timeout)
		}
	}
}

func percentiles(d []time.Duration) (p50, p99, mx time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}
