// Command localcluster keeps the local cluster (e2e/cluster with a node: kubelet, containerd, kube-proxy,
// CoreDNS) running in the background between commands, for `make cluster`, `make cluster-down`, `make
// images` and `make demo`. Everything it keeps is under one directory (--dir, _output/cluster):
//
//	localcluster up --dir D [IMAGE...]   start the cluster in a background process (or reuse the running one),
//	                                     load the images into its node, print the KUBECONFIG line
//	localcluster down --dir D            stop it in order and put the host back (after a killed run too)
//	localcluster load --dir D IMAGE...   copy images from podman's store into the running node
//	localcluster running --dir D         exit 0 when a cluster runs
//
// The background process is `localcluster serve`: it owns the cluster's processes (they die with it) and
// stops them in order on SIGTERM. A serve that was killed leaves its host record behind, and the next `up`
// or `down` puts the host back from it (cluster.RecoverHost).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: localcluster up|down|load|running|serve --dir DIR [IMAGE...]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("localcluster "+os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "_output/cluster", "the cluster's directory (state, logs, kubeconfig)")
	_ = fs.Parse(os.Args[2:])
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatal(err)
	}
	s := state{dir: abs}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch os.Args[1] {
	case "up":
		err = s.up(ctx, fs.Args())
	case "down":
		err = s.down()
	case "load":
		err = s.load(ctx, fs.Args())
	case "running":
		if _, ok := s.running(); !ok {
			os.Exit(1)
		}
	case "serve":
		err = s.serve(ctx, fs.Args())
	default:
		err = fmt.Errorf("unknown command %q: want up, down, load, running or serve", os.Args[1])
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
	os.Exit(1)
}

// state is the cluster's directory: serve writes info.json once the cluster is ready and removes it when
// it has stopped.
type state struct{ dir string }

// info is what a running cluster tells the other commands.
type info struct {
	PID        int    `json:"pid"`
	Kubeconfig string `json:"kubeconfig"`
	APIServer  string `json:"apiServer"`
}

func (s state) infoPath() string { return filepath.Join(s.dir, "info.json") }
func (s state) pidPath() string  { return filepath.Join(s.dir, "serve.pid") }

// servePID returns the pid of a live serve process of this directory (ready or still starting).
func (s state) servePID() (int, bool) {
	data, err := os.ReadFile(s.pidPath())
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid, err == nil && pid > 0 && syscall.Kill(pid, 0) == nil
}
func (s state) logPath() string { return filepath.Join(s.dir, "localcluster.log") }

// running returns the running cluster's info.
func (s state) running() (info, bool) {
	var in info
	data, err := os.ReadFile(s.infoPath())
	if err != nil || json.Unmarshal(data, &in) != nil {
		return in, false
	}
	return in, syscall.Kill(in.PID, 0) == nil
}

func (s state) up(ctx context.Context, images []string) error {
	if pid, ok := s.servePID(); ok {
		in, ready := s.running()
		if !ready {
			return fmt.Errorf("a cluster is starting in %s (pid %d): wait for it, or stop it with `make cluster-down`", s.dir, pid)
		}
		fmt.Printf("cluster: already running (pid %d)\n", in.PID)
		if err := s.load(ctx, images); err != nil {
			return err
		}
		printUsage(in)
		return nil
	}
	start := time.Now()
	if recovered, err := cluster.RecoverHost(); err != nil {
		return err
	} else if recovered {
		fmt.Println("cluster: put back what a killed cluster left on the host")
	}
	// A new cluster each time: the previous run's data, logs and mounts' directories go.
	if err := os.RemoveAll(filepath.Join(s.dir, "run")); err != nil {
		return fmt.Errorf("removing the previous run: %w", err)
	}
	_ = os.Remove(s.infoPath())
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(s.logPath())
	if err != nil {
		return err
	}
	defer logFile.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, append([]string{"serve", "--dir", s.dir}, images...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: it outlives this command and the terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Printf("cluster: starting (etcd, kube-apiserver, controllers, containerd, kubelet, kube-proxy, CoreDNS; log %s)\n", s.logPath())
	follow, _ := os.Open(s.logPath())
	defer follow.Close()
	for {
		printNew(follow)
		if in, ok := s.running(); ok {
			printNew(follow)
			fmt.Printf("cluster: ready in %s\n", time.Since(start).Round(100*time.Millisecond))
			printUsage(in)
			return nil
		}
		select {
		case err := <-exited:
			printNew(follow)
			return fmt.Errorf("the cluster did not start (%v): its log is %s; the host was put back", err, s.logPath())
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// printNew copies what was appended to the log since the last call, each line prefixed.
func printNew(f *os.File) {
	if f == nil {
		return
	}
	data, _ := io.ReadAll(f)
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line != "" {
			fmt.Print("  " + line)
		}
	}
}

func printUsage(in info) {
	fmt.Printf("cluster: API server %s; use it with\n\n  export KUBECONFIG=%s\n  kubectl get pods -A\n\nand stop it with `make cluster-down`.\n", in.APIServer, in.Kubeconfig)
}

func (s state) down() error {
	start := time.Now()
	if pid, ok := s.servePID(); ok {
		fmt.Printf("cluster: stopping (pid %d): pods, kubelet, kube-proxy, containerd, the host's changes, kube-apiserver, etcd\n", pid)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return err
		}
		deadline := time.Now().Add(3 * time.Minute)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("the cluster (pid %d) did not stop within 3 minutes; its log is %s", pid, s.logPath())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	_ = os.Remove(s.pidPath())
	recovered, err := cluster.RecoverHost()
	if err != nil {
		return err
	}
	_ = os.Remove(s.infoPath())
	if recovered {
		fmt.Println("cluster: put back what a killed cluster left on the host")
	}
	fmt.Printf("cluster: stopped, host restored (%s)\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

func (s state) load(ctx context.Context, images []string) error {
	if len(images) == 0 {
		return nil
	}
	if _, ok := s.running(); !ok {
		return errors.New("no cluster runs: start one with `make cluster`")
	}
	start := time.Now()
	if err := cluster.LoadImagesInto(ctx, filepath.Join(s.dir, "run"), images...); err != nil {
		return err
	}
	fmt.Printf("cluster: loaded %d images into the node (%s)\n", len(images), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// serve runs the cluster until SIGTERM.
func (s state) serve(ctx context.Context, images []string) error {
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	if err := os.WriteFile(s.pidPath(), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(s.pidPath())
	c, err := cluster.New(ctx, cluster.Options{
		Dir:  filepath.Join(s.dir, "run"),
		Log:  logf,
		Node: &cluster.NodeOptions{Images: images},
	})
	if err != nil {
		return err
	}
	in := info{PID: os.Getpid(), Kubeconfig: c.Kubeconfig(), APIServer: c.RESTConfig().Host}
	data, _ := json.Marshal(in)
	if err := os.WriteFile(s.infoPath()+".tmp", data, 0o644); err == nil {
		err = os.Rename(s.infoPath()+".tmp", s.infoPath())
	}
	if err != nil {
		_ = c.Stop()
		return err
	}
	<-ctx.Done()
	logf("stopping on %s", strconv.Quote(context.Cause(ctx).Error()))
	_ = os.Remove(s.infoPath())
	if err := c.Stop(); err != nil {
		return err
	}
	logf("stopped; host restored")
	return nil
}
