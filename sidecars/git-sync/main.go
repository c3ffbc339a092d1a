// Command git-sync is the Outrigger sidecar that keeps a directory shared with the app in step with a
// git repository: it clones, then follows a branch, tag or commit; each new commit is checked out into its
// own directory and published by atomically swapping a symlink, so the app never reads a half-updated
// tree. After each new commit it can call a webhook and run a command. Its settings are kubernetes/git-sync
// v4's GITSYNC_* variables; /healthz, /readyz (after the first sync) and /metrics are on STATUS_PORT.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/outrigger-dev/outrigger/internal/sidecarmain"
)

var version = "dev"

func main() {
	if isAskpass() { // started by git as GIT_ASKPASS: answer its prompt and exit
		answer, err := askpass(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "git-sync askpass:", err)
			os.Exit(1)
		}
		fmt.Println(answer)
		return
	}
	sidecarmain.Main("git-sync", loadConfigWithVersion, run)
}

// loadConfigWithVersion is loadConfig, whose help ends with the version.
func loadConfigWithVersion(args []string, lookupEnv func(string) (string, bool), help io.Writer) (*Config, error) {
	cfg, err := loadConfig(args, lookupEnv, help)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(help, "\ngit-sync %s\n", version)
	}
	return cfg, err
}
