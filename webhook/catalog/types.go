package catalog

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/outrigger-dev/outrigger/internal/appprobe"
	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// parameterType checks a value and says what is accepted. ENV types reuse the sidecars' own parsers
// (internal/envflag), so that the webhook refuses exactly what the sidecar binary would refuse at start.
type parameterType func(p Parameter) (func(string) error, error)

// ParameterTypes are the accepted values of Parameter.Type.
var ParameterTypes = map[string]parameterType{
	"string": func(Parameter) (func(string) error, error) {
		var s string
		return envflag.String(&s), nil
	},
	"bool": func(Parameter) (func(string) error, error) {
		var b bool
		return envflag.Bool(&b), nil
	},
	"port": func(Parameter) (func(string) error, error) {
		var n int
		return envflag.Port(&n), nil
	},
	"int": func(p Parameter) (func(string) error, error) {
		min, max := 0, int(^uint(0)>>1)
		var err error
		if p.Min != "" {
			if min, err = strconv.Atoi(p.Min); err != nil {
				return nil, fmt.Errorf("min %q: want a whole number", p.Min)
			}
		}
		if p.Max != "" {
			if max, err = strconv.Atoi(p.Max); err != nil {
				return nil, fmt.Errorf("max %q: want a whole number", p.Max)
			}
		}
		var n int
		return envflag.Int(&n, min, max), nil
	},
	"duration": func(p Parameter) (func(string) error, error) {
		return durationCheck(p, envflag.Duration)
	},
	"seconds-or-duration": func(p Parameter) (func(string) error, error) {
		return durationCheck(p, envflag.SecondsOrDuration)
	},
	"enum": func(p Parameter) (func(string) error, error) {
		if len(p.Values) == 0 {
			return nil, fmt.Errorf("an enum needs values")
		}
		var s string
		return envflag.OneOf(&s, p.Values...), nil
	},
	"list": func(Parameter) (func(string) error, error) {
		var l []string
		return envflag.List(&l), nil
	},
	"host-port": func(Parameter) (func(string) error, error) {
		var s string
		return envflag.HostPort(&s), nil
	},
	"absolute-path": func(Parameter) (func(string) error, error) {
		var p string
		abs := envflag.AbsolutePath(&p)
		return func(s string) error {
			if err := abs(s); err != nil {
				return err
			}
			// Kubernetes refuses ':' in a mountPath, and a path parameter may become one.
			if strings.Contains(s, ":") {
				return fmt.Errorf("want an absolute path without ':' such as /etc/config")
			}
			return nil
		}, nil
	},
	"object-name": func(Parameter) (func(string) error, error) {
		return func(s string) error {
			if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
				return fmt.Errorf("want a Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters")
			}
			return nil
		}, nil
	},
	"namespace": func(Parameter) (func(string) error, error) {
		return func(s string) error {
			if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
				return fmt.Errorf("want a namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters")
			}
			return nil
		}, nil
	},
	"command-name": func(Parameter) (func(string) error, error) {
		var s string
		return envflag.CommandName(&s), nil
	},
	"delimiters": func(Parameter) (func(string) error, error) {
		var s string
		return envflag.Delimiters(&s), nil
	},
	// signal: a signal by name or number; Values, when set, are the only signals accepted (SIGHUP, ...).
	"signal": func(p Parameter) (func(string) error, error) {
		for _, v := range p.Values {
			if unix.SignalNum(v) == 0 {
				return nil, fmt.Errorf("values: %q is not a signal name such as SIGHUP", v)
			}
		}
		var sig syscall.Signal
		return envflag.Signal(&sig, p.Values...), nil
	},
	// size: bytes, plain or with Ki, Mi or Gi; Min and Max (sizes too) bound it.
	"size": func(p Parameter) (func(string) error, error) {
		min, max, err := SizeBounds(p)
		if err != nil {
			return nil, err
		}
		var n int64
		return envflag.Size(&n, min, max), nil
	},
	"quantity": func(Parameter) (func(string) error, error) {
		return CheckQuantity, nil
	},
	// app-probes: what the injector tells https-proxy about the app's probes (appprobe.Format).
	"app-probes": func(Parameter) (func(string) error, error) {
		return func(s string) error { _, err := appprobe.Parse(s); return err }, nil
	},
	"repo-url": func(Parameter) (func(string) error, error) {
		var s string
		return envflag.RepoURL(&s), nil
	},
	"url": func(Parameter) (func(string) error, error) {
		var s string
		return envflag.HTTPURL(&s), nil
	},
}

// durationCheck builds a duration check with the parameter's Min and Max (both optional durations).
func durationCheck(p Parameter, parser func(*time.Duration, time.Duration) func(string) error) (func(string) error, error) {
	var min, max time.Duration
	var err error
	if p.Min != "" {
		if min, err = time.ParseDuration(p.Min); err != nil {
			return nil, fmt.Errorf("min %q: want a duration", p.Min)
		}
	}
	if p.Max != "" {
		if max, err = time.ParseDuration(p.Max); err != nil {
			return nil, fmt.Errorf("max %q: want a duration", p.Max)
		}
	}
	var d time.Duration
	parse := parser(&d, min)
	return func(s string) error {
		if err := parse(s); err != nil {
			return err
		}
		if max > 0 && d > max {
			return fmt.Errorf("want a duration from %s to %s", min, max)
		}
		return nil
	}, nil
}

// TypeNames lists the accepted parameter types.
func TypeNames() []string {
	names := make([]string, 0, len(ParameterTypes))
	for n := range ParameterTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Check validates value for p and returns an error that says what is accepted. The empty string is
// accepted for a parameter that is not required: it means "the sidecar's default" (except for a quantity:
// an empty resource annotation is refused, not read as "unset"). A NUL byte is refused whatever the type;
// newlines, $(VAR) and $$ are passed to the sidecar literally (see inject.EnvLiteral).
func (p Parameter) Check(value string) error {
	t, ok := ParameterTypes[p.Type]
	if !ok {
		return fmt.Errorf("parameter type %q is unknown", p.Type)
	}
	check, err := t(p)
	if err != nil {
		return err
	}
	if value == "" && !p.Required && p.Type != "quantity" {
		return nil
	}
	if strings.ContainsRune(value, 0) {
		// An environment variable cannot hold NUL (execve ends the string there), and no other value
		// the catalog knows can either.
		return fmt.Errorf("must not contain a NUL byte")
	}
	if err := check(value); err != nil {
		return err
	}
	if p.Probed && loopbackHost(value) {
		return fmt.Errorf("want an address the kubelet's probes can reach, such as :8080: they come from outside the pod's loopback, so the container would fail them and restart (keep the port private with a NetworkPolicy instead)")
	}
	return nil
}

// SizeBounds are a size parameter's Min and Max in bytes (1 and 1 TiB when unset).
func SizeBounds(p Parameter) (min, max int64, err error) {
	min, max = 1, 1<<40
	for _, b := range []struct {
		text string
		into *int64
	}{{p.Min, &min}, {p.Max, &max}} {
		if b.text == "" {
			continue
		}
		if err := envflag.Size(b.into, 0, 1<<40)(b.text); err != nil {
			return 0, 0, fmt.Errorf("bound %q: %v", b.text, err)
		}
	}
	if min > max {
		return 0, 0, fmt.Errorf("min %q is above max %q", p.Min, p.Max)
	}
	return min, max, nil
}

// loopbackHost reports whether host:port listens on loopback only (localhost, 127.0.0.0/8, ::1).
func loopbackHost(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
