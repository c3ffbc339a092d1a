package envflag

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The parsers below store a parsed value into *p and return an error that says what is accepted.
// They are the vocabulary shared by every sidecar, so that "true", "8443" or "10s" mean the same everywhere.

// String accepts any value.
func String(p *string) func(string) error {
	return func(s string) error { *p = s; return nil }
}

// NonEmpty accepts any value but "".
func NonEmpty(p *string) func(string) error {
	return func(s string) error {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("must be set")
		}
		*p = s
		return nil
	}
}

// Bool accepts true/false, 1/0, yes/no, on/off (any case).
func Bool(p *bool) func(string) error {
	return func(s string) error {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "1", "yes", "on":
			*p = true
		case "false", "0", "no", "off":
			*p = false
		default:
			return fmt.Errorf("want true or false")
		}
		return nil
	}
}

// Int accepts a whole number from min to max.
func Int(p *int, min, max int) func(string) error {
	return func(s string) error {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < min || n > max {
			return fmt.Errorf("want a whole number from %d to %d", min, max)
		}
		*p = n
		return nil
	}
}

// Port accepts a TCP port from 1 to 65535.
func Port(p *int) func(string) error {
	return func(s string) error {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("want a port number from 1 to 65535")
		}
		*p = n
		return nil
	}
}

// OptionalPort is Port, but "" or "0" means disabled (stored as 0).
func OptionalPort(p *int) func(string) error {
	return func(s string) error {
		if strings.TrimSpace(s) == "" || strings.TrimSpace(s) == "0" {
			*p = 0
			return nil
		}
		return Port(p)(s)
	}
}

// Duration accepts a Go duration ("500ms", "10s", "5m") of at least min.
func Duration(p *time.Duration, min time.Duration) func(string) error {
	return func(s string) error {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < min {
			return fmt.Errorf("want a duration such as 10s or 5m, at least %s", min)
		}
		*p = d
		return nil
	}
}

// SecondsOrDuration accepts a bare number of seconds ("10", as older APIs took it) or a duration ("10s",
// "5m") of at least min. A bare number always means seconds: an old value is never reinterpreted.
func SecondsOrDuration(p *time.Duration, min time.Duration) func(string) error {
	return func(s string) error {
		s = strings.TrimSpace(s)
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			d := time.Duration(f * float64(time.Second))
			if d < min {
				return fmt.Errorf("want seconds (e.g. 10) or a duration (e.g. 10s, 5m), at least %s", min)
			}
			*p = d
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < min {
			return fmt.Errorf("want seconds (e.g. 10) or a duration (e.g. 10s, 5m), at least %s", min)
		}
		*p = d
		return nil
	}
}

// OneOf accepts exactly one of values (case-sensitive).
func OneOf(p *string, values ...string) func(string) error {
	return func(s string) error {
		for _, v := range values {
			if s == v {
				*p = s
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(values, ", "))
	}
}

// List accepts a comma-separated list; blanks around items are trimmed and empty items dropped.
func List(p *[]string) func(string) error {
	return func(s string) error {
		*p = SplitList(s)
		return nil
	}
}

// SplitList splits a comma-separated list, trimming blanks and dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// HostPort accepts host:port or :port with a valid port.
func HostPort(p *string) func(string) error {
	return func(s string) error {
		_, port, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("want host:port or :port")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("want host:port or :port with a port from 1 to 65535")
		}
		*p = s
		return nil
	}
}

// AbsolutePath accepts an absolute path and stores it cleaned ("/etc/config/" → "/etc/config").
func AbsolutePath(p *string) func(string) error {
	return func(s string) error {
		if !filepath.IsAbs(s) {
			return fmt.Errorf("want an absolute path such as /etc/config")
		}
		*p = filepath.Clean(s)
		return nil
	}
}

// OptionalAbsolutePath is AbsolutePath, but "" (unset) is accepted too.
func OptionalAbsolutePath(p *string) func(string) error {
	return func(s string) error {
		if s == "" {
			*p = ""
			return nil
		}
		return AbsolutePath(p)(s)
	}
}

// CommandName accepts a process's command name such as nginx: no path, no arguments ("" is accepted too:
// unset).
func CommandName(p *string) func(string) error {
	return func(s string) error {
		if strings.ContainsAny(s, "/ \t") {
			return fmt.Errorf("want a command name such as nginx (no path, no arguments)")
		}
		*p = s
		return nil
	}
}

// Delimiters accepts two characters (two bytes, as the hashing reads them), an opening and a closing one
// such as {} ("" is accepted too: unset).
func Delimiters(p *string) func(string) error {
	return func(s string) error {
		if s != "" && len(s) != 2 {
			return fmt.Errorf("want two characters, such as {}")
		}
		*p = s
		return nil
	}
}

// Signal accepts a signal by name, with or without SIG and in any case (HUP, SIGHUP, usr1), or by number
// (1). When allowed names signals (SIGHUP, ...), only those are accepted. "" is accepted too: unset (0).
func Signal(p *syscall.Signal, allowed ...string) func(string) error {
	return func(s string) error {
		*p = 0
		s = strings.TrimSpace(s)
		if s == "" {
			return nil
		}
		name := asciiUpper(s) // not strings.ToUpper: "ſ" must not become "S"
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		sig := unix.SignalNum(name)
		if n, err := strconv.Atoi(s); err == nil && strconv.Itoa(n) == s && unix.SignalName(syscall.Signal(n)) != "" {
			sig, name = syscall.Signal(n), unix.SignalName(syscall.Signal(n))
		}
		if len(allowed) > 0 && (sig == 0 || !slices.Contains(allowed, name)) {
			return fmt.Errorf("want one of %s (by name or number)", strings.Join(allowed, ", "))
		}
		if sig == 0 {
			return fmt.Errorf("want a signal name such as HUP, USR1, USR2, TERM or KILL")
		}
		*p = sig
		return nil
	}
}

// asciiUpper upper-cases ASCII letters only.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// sizeUnits are the suffixes Size accepts, Kubernetes' binary ones.
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}

// Size accepts a number of bytes, plain or with Ki, Mi or Gi (16Mi), from min to max bytes.
func Size(p *int64, min, max int64) func(string) error {
	return func(s string) error {
		s = strings.TrimSpace(s)
		unit, digits := int64(1), s
		for _, u := range sizeUnits {
			if strings.HasSuffix(s, u.suffix) {
				unit, digits = u.bytes, strings.TrimSuffix(s, u.suffix)
				break
			}
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || digits == "" || len(digits) > 13 || digits[0] < '0' || digits[0] > '9' || n > max/unit || n*unit < min || n*unit > max {
			return fmt.Errorf("want a size from %s to %s, in bytes or with Ki, Mi or Gi, such as 16Mi", FormatSize(min), FormatSize(max))
		}
		*p = n * unit
		return nil
	}
}

// FormatSize writes n bytes as Size reads them, in the largest unit that divides it (16Mi, 1500).
func FormatSize(n int64) string {
	for _, u := range sizeUnits {
		if n != 0 && n%u.bytes == 0 {
			return strconv.FormatInt(n/u.bytes, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// scpLike matches git's scp-like SSH syntax, user@host:path.
var scpLike = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:`)

// IsSCPLike reports whether s is git's scp-like SSH syntax, user@host:path.
func IsSCPLike(s string) bool { return scpLike.MatchString(s) }

// RepoURL accepts a git repository the sidecar's git can fetch: an https, http, ssh or file URL, or
// user@host:path. A URL with a password is refused: it would show in logs, in ps and in the pod spec.
func RepoURL(p *string) func(string) error {
	return func(s string) error {
		if s == "" {
			return errors.New("must be set: want a URL with scheme https, http, ssh or file, or user@host:path")
		}
		if !IsSCPLike(s) {
			u, err := url.Parse(s)
			if err != nil || u.Scheme == "" {
				return errors.New("want a URL with scheme https, http, ssh or file, or user@host:path")
			}
			switch u.Scheme {
			case "https", "http", "ssh", "file":
			default:
				return fmt.Errorf("scheme %q: want https, http, ssh or file", u.Scheme)
			}
			if _, hasPassword := u.User.Password(); hasPassword {
				return errors.New("a password in the URL would show in logs, in ps and in the pod spec: put it in a Secret (git-sync's credentials-secret and password-file; by hand, GITSYNC_USERNAME and GITSYNC_PASSWORD_FILE)")
			}
		}
		*p = s
		return nil
	}
}

// RedactURL hides the password of a URL (u.Redacted), for error messages and logs; other text is returned
// as it is.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, hasPassword := u.User.Password(); !hasPassword {
		return s
	}
	return u.Redacted()
}

// HTTPURL accepts an http:// or https:// URL with a host, such as a reload or webhook endpoint ("" is
// accepted too: unset).
func HTTPURL(p *string) func(string) error {
	return func(s string) error {
		if s != "" {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return errors.New("want an http or https URL such as http://localhost:9090/-/reload")
			}
		}
		*p = s
		return nil
	}
}
