package main

import (
	"strings"
	"testing"

	"github.com/outrigger-dev/outrigger/internal/sidecarspec"
	"github.com/outrigger-dev/outrigger/webhook/server"
)

// TestAPIAgreement: the webhook's settings, the root Dockerfile's ENV lines and the README's table agree.
func TestAPIAgreement(t *testing.T) {
	var o server.Options
	var a, b, c int
	var s string
	if problems := sidecarspec.ImageProblems("../../Dockerfile", "../../README.md", settings(&o, &a, &b, &c, &s)); len(problems) > 0 {
		t.Fatalf("the webhook's settings disagree:\n%s", strings.Join(problems, "\n"))
	}
}

func TestBadSettingsAreNamed(t *testing.T) {
	env := map[string]string{"WEBHOOK_PORT": "https", "MIN_TLS_VERSION": "1.1"}
	_, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`invalid WEBHOOK_PORT="https": want a port number`, `invalid MIN_TLS_VERSION="1.1": want one of 1.2, 1.3`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}
