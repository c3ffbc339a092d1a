package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// Config is the validated configuration of one config-sync process.
type Config struct {
	// ConfigMap and Secret name the objects followed in Namespace (API mode). Either may be empty, not both.
	ConfigMap string
	Secret    string
	// Namespace holds them; "" means the pod's own (read from the service-account mount).
	Namespace string
	// Kubeconfig is a kubeconfig file used instead of the in-cluster service account ("" = in-cluster).
	Kubeconfig string
	// SourceDir, when set, turns on volume mode: that mounted ConfigMap directory is followed instead of the API.
	SourceDir string
	// TargetDir receives the files in the kubelet's atomic layout.
	TargetDir string
	// UpdateFrequency is the poll period when a watch cannot be held (and the re-read period in volume mode).
	UpdateFrequency time.Duration
	// Debounce is how long changes must be quiet before the app is told to reload (0 = after every write).
	Debounce time.Duration

	// ReloadProcess, when set, is the command name of the processes sent ReloadSignal after a change.
	ReloadProcess string
	ReloadSignal  syscall.Signal
	// ReloadURL, when set, is requested with ReloadMethod after a change; any 2xx answer is success.
	ReloadURL    *url.URL
	ReloadMethod string
	// ReloadCommand, when set, is executed (no shell) after a change; exit status 0 is success.
	ReloadCommand []string
	// ReloadRetries is how many times a failed HTTP or command reload is retried, with backoff.
	ReloadRetries int
	// ReloadTimeout bounds each reload request or command run.
	ReloadTimeout time.Duration

	// StatusPort serves /healthz, /readyz and /metrics over plain HTTP.
	StatusPort int

	// Not settings: fixed here, overridden by tests.

	// restConfig, when set, is used instead of Kubeconfig or the in-cluster configuration.
	restConfig *rest.Config
	// statusListener, when set, is used instead of listening on StatusPort on every interface.
	statusListener net.Listener
	// logger, when set, replaces the stderr logger.
	logger *slog.Logger
	// procRoot is where /proc is mounted (the processes to signal are found there).
	procRoot string
	// maxReloadDelay bounds how long a continuous stream of changes can hold the reload back.
	maxReloadDelay time.Duration
	// reloadBackoff is the first pause between reload retries; it doubles up to reloadBackoffCap.
	reloadBackoff, reloadBackoffCap time.Duration
}

// settings is the one declaration of the ENV API: names, defaults, usage lines and parsers.
func settings(c *Config) envflag.Set {
	return envflag.Set{Program: "config-sync", Vars: []envflag.Var{
		{Env: "CONFIGMAP", Default: "", Usage: "the ConfigMap whose keys are written to TARGET_DIR (API mode; the service account needs get/list/watch on it: ClusterRole outrigger-config-sync)", Parse: objectName(&c.ConfigMap)},
		{Env: "SECRET", Default: "", Usage: "a Secret whose keys are written to TARGET_DIR as well (API mode, optional; needs get/list/watch on secrets)", Parse: objectName(&c.Secret)},
		{Env: "NAMESPACE", Default: "", Usage: "namespace of the ConfigMap and Secret (empty: the pod's own, from the downward API)", Parse: namespaceName(&c.Namespace)},
		{Env: "KUBECONFIG", Default: "", Usage: "kubeconfig file to use instead of the pod's service account (for running outside a cluster)", Parse: envflag.String(&c.Kubeconfig)},
		{Env: "SOURCE_DIR", Default: "", Usage: "volume mode: follow this mounted ConfigMap directory instead of the API (with source-configmap: /etc/config-source)", Parse: envflag.OptionalAbsolutePath(&c.SourceDir)},
		{Env: "TARGET_DIR", Default: "/etc/config", Usage: "directory the files are written to, in the kubelet's atomic layout (the shared volume)", Parse: envflag.AbsolutePath(&c.TargetDir)},
		{Env: "UPDATE_FREQUENCY", Default: "60", Usage: "poll period when a watch cannot be held: seconds (10) or a duration (10s, 5m)", Parse: envflag.SecondsOrDuration(&c.UpdateFrequency, time.Second)},
		{Env: "DEBOUNCE", Default: "200ms", Usage: "quiet time after the last change before the app is told to reload (0s: after every change)", Parse: envflag.Duration(&c.Debounce, 0)},
		{Env: "RELOAD_PROCESS", Default: "", Usage: "command name of the processes sent RELOAD_SIGNAL after a change (needs a shared PID namespace, which the injector sets; a different UID needs CAP_KILL)", Parse: envflag.CommandName(&c.ReloadProcess)},
		{Env: "RELOAD_SIGNAL", Default: "HUP", Usage: "signal sent to RELOAD_PROCESS after a change: HUP, USR1, USR2, TERM, KILL...", Parse: reloadSignal(&c.ReloadSignal)},
		{Env: "RELOAD_URL", Default: "", Usage: "URL requested after a change (e.g. http://localhost:9090/-/reload); a 2xx answer is success", Parse: reloadURL(&c.ReloadURL)},
		{Env: "RELOAD_METHOD", Default: "POST", Usage: "HTTP method of the RELOAD_URL request", Parse: envflag.OneOf(&c.ReloadMethod, "POST", "PUT", "GET", "PATCH")},
		{Env: "RELOAD_COMMAND", Default: "", Usage: "command run after a change, split on blanks, no shell (it must exist in the config-sync container)", Parse: command(&c.ReloadCommand)},
		{Env: "RELOAD_RETRIES", Default: "5", Usage: "retries of a failed RELOAD_URL request or RELOAD_COMMAND, with backoff from 200ms to 5s", Parse: envflag.Int(&c.ReloadRetries, 0, 100)},
		{Env: "RELOAD_TIMEOUT", Default: "10s", Usage: "time limit of each RELOAD_URL request and RELOAD_COMMAND run", Parse: envflag.Duration(&c.ReloadTimeout, 10*time.Millisecond)},
		{Env: "STATUS_PORT", Default: "9802", Usage: "plain-HTTP port for /healthz, /readyz and /metrics (the probes use 9802: each sidecar of a pod has its own status port)", Parse: envflag.Port(&c.StatusPort)},
	}}
}

// loadConfig parses flags and ENV, then checks the settings against each other. It returns flag.ErrHelp
// after printing the help to out, and otherwise every problem joined, one line each.
func loadConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	c := &Config{
		procRoot:         "/proc",
		maxReloadDelay:   10 * time.Second,
		reloadBackoff:    200 * time.Millisecond,
		reloadBackoffCap: 5 * time.Second,
	}
	if err := settings(c).Parse(args, lookupEnv, out); err != nil {
		return nil, err
	}
	var problems []error
	apiMode := c.ConfigMap != "" || c.Secret != ""
	switch {
	case apiMode && c.SourceDir != "":
		problems = append(problems, fmt.Errorf("invalid SOURCE_DIR=%q: volume mode excludes CONFIGMAP and SECRET; want either SOURCE_DIR or CONFIGMAP/SECRET", c.SourceDir))
	case !apiMode && c.SourceDir == "":
		problems = append(problems, errors.New(`invalid CONFIGMAP="": nothing to follow; want CONFIGMAP (and/or SECRET), or SOURCE_DIR for volume mode`))
	}
	if c.SourceDir != "" && within(c.SourceDir, c.TargetDir) {
		problems = append(problems, fmt.Errorf("invalid TARGET_DIR=%q: it overlaps SOURCE_DIR=%q; want two separate directories", c.TargetDir, c.SourceDir))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return c, nil
}

// within reports whether a and b are the same directory or one contains the other.
func within(a, b string) bool {
	rel := func(parent, child string) bool {
		r, err := filepath.Rel(parent, child)
		return err == nil && r != ".." && !strings.HasPrefix(r, "../")
	}
	return rel(a, b) || rel(b, a)
}

func objectName(p *string) func(string) error {
	return func(s string) error {
		if s != "" {
			if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
				return fmt.Errorf("want a Kubernetes object name (%s)", strings.Join(errs, "; "))
			}
		}
		*p = s
		return nil
	}
}

func namespaceName(p *string) func(string) error {
	return func(s string) error {
		if s != "" {
			if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
				return fmt.Errorf("want a namespace name (%s)", strings.Join(errs, "; "))
			}
		}
		*p = s
		return nil
	}
}

func reloadURL(p **url.URL) func(string) error {
	var s string
	parse := envflag.HTTPURL(&s)
	return func(v string) error {
		if err := parse(v); err != nil {
			return err
		}
		*p = nil
		if s != "" {
			*p, _ = url.Parse(s) // HTTPURL parsed it
		}
		return nil
	}
}

func command(p *[]string) func(string) error {
	return func(s string) error {
		*p = strings.Fields(s)
		return nil
	}
}

// reloadSignal is envflag.Signal without its "unset": a reload signal of 0 would send nothing and report
// every reload done.
func reloadSignal(p *syscall.Signal) func(string) error {
	parse := envflag.Signal(p)
	return func(s string) error {
		if strings.TrimSpace(s) == "" {
			return errors.New("want a signal name such as HUP, USR1, USR2, TERM or KILL")
		}
		return parse(s)
	}
}
