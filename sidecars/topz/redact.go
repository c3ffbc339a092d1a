package main

import (
	"regexp"
	"strings"
)

// redacted replaces a secret in a command line.
const redacted = "<redacted>"

// secretNameSuffixes end the names of flags and keys whose values are secrets: --password, --db-pass,
// requirepass, --client-secret, --auth-token, api_key, --credentials. Matching the end of the name keeps
// --token-file=/path (a path, not a secret) visible and errs towards hiding when unsure.
var secretNameSuffixes = []string{"password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey", "credential", "credentials", "auth"}

// isSecretName reports whether a flag or key name (leading dashes, '-', '_' and '.' ignored, any case)
// names a secret.
func isSecretName(name string) bool {
	n := strings.ToLower(strings.TrimLeft(name, "-"))
	n = strings.NewReplacer("-", "", "_", "", ".", "").Replace(n)
	if n == "" {
		return false
	}
	for _, s := range secretNameSuffixes {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

// These patterns are written by hand because the secrets sit inside arbitrary argument text (a DSN inside a
// flag, a token inside a query string), which no URL or flag parser would accept as a whole.
var (
	// urlCredentials matches scheme://user:password@ anywhere in an argument.
	urlCredentials = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^/@\s:]*):([^@\s/]*)@`)
	// keyName matches the "name=" of name=value inside an argument: a flag (--password=x), an ENV-style
	// assignment (PASSWORD=x), a DSN field (password=x) or a query parameter (?token=x&...).
	keyName = regexp.MustCompile(`[A-Za-z0-9_.\-]+=`)
)

// redactArgs returns a copy of a command line with secret values replaced by <redacted>:
//   - --password=VALUE and -password=VALUE (the whole value),
//   - --password VALUE (the next argument),
//   - name=VALUE anywhere in an argument when the name ends like a secret (see secretNameSuffixes),
//   - the password of scheme://user:password@host.
//
// It cannot know every program's conventions: short flags such as `mysql -pSECRET` or `redis-cli -a
// SECRET` are not recognised (the README lists the limits).
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	redactNext := false
	for i, a := range args {
		if redactNext {
			out[i], redactNext = redacted, false
			continue
		}
		a = urlCredentials.ReplaceAllString(a, "$1:"+redacted+"@")
		if i > 0 && strings.HasPrefix(a, "-") {
			name, _, hasValue := strings.Cut(a, "=")
			if isSecretName(name) {
				if hasValue {
					out[i] = name + "=" + redacted
				} else {
					out[i], redactNext = a, true
				}
				continue
			}
		}
		out[i] = redactKeyValues(a)
	}
	return out
}

// redactKeyValues redacts the value of every name=value in a whose name is a secret's. Names are found
// one by one (not as whole name=value matches) so that a secret nested in another value, as in
// --dsn=host/db?password=x or --opts=a,token=x, is still found. A secret's value runs to the next blank,
// '&' or ';'; commas are included, erring towards hiding.
func redactKeyValues(a string) string {
	var b strings.Builder
	last := 0
	for _, loc := range keyName.FindAllStringIndex(a, -1) {
		if loc[0] < last || !isSecretName(a[loc[0]:loc[1]-1]) {
			continue
		}
		end := len(a)
		if n := strings.IndexAny(a[loc[1]:], " \t\n&;"); n >= 0 {
			end = loc[1] + n
		}
		b.WriteString(a[last:loc[1]])
		b.WriteString(redacted)
		last = end
	}
	if last == 0 {
		return a
	}
	b.WriteString(a[last:])
	return b.String()
}
