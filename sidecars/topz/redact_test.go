package main

import (
	"slices"
	"testing"
)

func TestRedactArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"sleep", "1000", "--password=hunter2"}, []string{"sleep", "1000", "--password=<redacted>"}},
		{[]string{"app", "--password=two words"}, []string{"app", "--password=<redacted>"}},
		{[]string{"app", "--token", "s3cr3t", "--verbose"}, []string{"app", "--token", "<redacted>", "--verbose"}},
		{[]string{"app", "-client-secret=abc", "--DB_PASSWORD=x"}, []string{"app", "-client-secret=<redacted>", "--DB_PASSWORD=<redacted>"}},
		{[]string{"redis-server", "--requirepass", "foo"}, []string{"redis-server", "--requirepass", "<redacted>"}},
		{[]string{"env", "API_KEY=k3y", "PATH=/bin"}, []string{"env", "API_KEY=<redacted>", "PATH=/bin"}},
		{[]string{"psql", "host=db user=app password=pa55 dbname=x"}, []string{"psql", "host=db user=app password=<redacted> dbname=x"}},
		{[]string{"curl", "https://h/x?a=1&token=t0k&b=2"}, []string{"curl", "https://h/x?a=1&token=<redacted>&b=2"}},
		{[]string{"app", "--dsn=postgres://app:pa55w0rd@127.0.0.1:5432/db?sslmode=off&password=again"},
			[]string{"app", "--dsn=postgres://app:<redacted>@127.0.0.1:5432/db?sslmode=off&password=<redacted>"}},
		{[]string{"app", "--opts=a=1,secret=x"}, []string{"app", "--opts=a=1,secret=<redacted>"}},
		{[]string{"git", "clone", "https://user:ghp_abc@github.example/r.git"}, []string{"git", "clone", "https://user:<redacted>@github.example/r.git"}},
		// Not secrets: a token file's path, a user without a password, an ordinary flag, a lone "=".
		{[]string{"app", "--token-file=/var/run/t", "https://user@h/", "--listen=:8080", "="}, []string{"app", "--token-file=/var/run/t", "https://user@h/", "--listen=:8080", "="}},
		// argv[0] is never taken as a flag.
		{[]string{"--password"}, []string{"--password"}},
		{nil, []string{}},
	} {
		got := redactArgs(tc.in)
		if !slices.Equal(got, tc.want) {
			t.Errorf("redactArgs(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactDoesNotChangeItsInput(t *testing.T) {
	in := []string{"app", "--password=x"}
	redactArgs(in)
	if in[1] != "--password=x" {
		t.Fatalf("input modified: %q", in)
	}
}

func TestIsSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"--password": true, "db.pass": true, "PGPASSWORD": true, "x-api-key": true, "--auth-token": true,
		"--token-file": false, "--user": false, "--listen": false, "": false, "--": false,
	} {
		if got := isSecretName(name); got != want {
			t.Errorf("isSecretName(%q) = %t, want %t", name, got, want)
		}
	}
}
