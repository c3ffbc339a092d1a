// Command git-sync is the Outrigger sidecar that keeps a directory shared with the app in step with a
// git repository: it clones, then follows a branch, tag or commit; each new commit is checked out into its
// own directory and published by atomically swapping a symlink, so the app never reads a half-updated
// tree. After each new commit it can call a webhook and run a command. Its settings are kubernetes/git-sync
// v4's GITSYNC_* variables; /healthz, /readyz (after the first sync) and /metrics are on STATUS_PORT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := loadConfig(os.Args[1:], os.LookupEnv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Printf("\ngit-sync %s\n", version)
		os.Exit(0)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "git-sync:", line)
		}
		os.Exit(2)
	}
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "git-sync:", err)
		os.Exit(1)
	}
}
