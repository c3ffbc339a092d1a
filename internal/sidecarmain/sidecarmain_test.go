package sidecarmain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
)

type config struct{ port string }

// load is a sidecar's settings in miniature: PORT must be a number; -h prints help.
func load(args []string, lookupEnv func(string) (string, bool), help io.Writer) (config, error) {
	if len(args) > 0 && args[0] == "-h" {
		fmt.Fprintln(help, "usage: PORT=<number>")
		return config{}, flag.ErrHelp
	}
	port, _ := lookupEnv("PORT")
	var problems []error
	if strings.Trim(port, "0123456789") != "" || port == "" {
		problems = append(problems, fmt.Errorf("invalid PORT=%q: want a number", port))
	}
	if v, ok := lookupEnv("MODE"); ok && v != "fast" {
		problems = append(problems, fmt.Errorf("invalid MODE=%q: want fast", v))
	}
	return config{port}, errors.Join(problems...)
}

func TestExitCodesAndErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		args                   []string
		env                    map[string]string
		runErr                 error
		wantCode               int
		wantStdout, wantStderr string
		wantRun                bool
	}{
		{"help", []string{"-h"}, nil, nil, 0, "usage: PORT=<number>\n", "", false},
		{"one line per invalid setting, nothing started", nil, map[string]string{"PORT": "x", "MODE": "slow"}, nil, 2, "",
			"demo: invalid PORT=\"x\": want a number\ndemo: invalid MODE=\"slow\": want fast\n", false},
		{"run fails", nil, map[string]string{"PORT": "80"}, errors.New("listen: address in use"), 1, "", "demo: listen: address in use\n", true},
		{"run ends after a signal", nil, map[string]string{"PORT": "80"}, nil, 0, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			ran := false
			run := func(_ context.Context, cfg config) error {
				ran = true
				if cfg.port != tc.env["PORT"] {
					t.Errorf("run got port %q", cfg.port)
				}
				return tc.runErr
			}
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			code := exitCode(context.Background(), "demo", tc.args, lookup, &stdout, &stderr, load, run)
			if code != tc.wantCode || stdout.String() != tc.wantStdout || stderr.String() != tc.wantStderr || ran != tc.wantRun {
				t.Errorf("exit %d, stdout %q, stderr %q, ran %v; want %d, %q, %q, %v",
					code, stdout.String(), stderr.String(), ran, tc.wantCode, tc.wantStdout, tc.wantStderr, tc.wantRun)
			}
		})
	}
}
