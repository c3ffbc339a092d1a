package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// gitCommand runs the git binary with a fixed, minimal environment: no system or global config (nothing
// outside the sidecar's settings changes what git does), no terminal prompts, and the credentials wired in
// through GIT_ASKPASS (HTTP) or GIT_SSH_COMMAND (SSH), never through the command line.
type gitCommand struct {
	// Bin is the git executable ("git": found on PATH).
	Bin string
	// Env is added to every command's environment.
	Env []string
}

// newGitCommand prepares the environment for cfg's repository and credentials.
func newGitCommand(cfg *Config) (*gitCommand, error) {
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + globalConfigPath(cfg.Root),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_OPTIONAL_LOCKS=0",
		"LC_ALL=C",
		// HOME is only read (for nothing, with the settings above); it must exist for ssh.
		"HOME=" + cfg.Root,
	}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	} else {
		env = append(env, "PATH=/usr/bin:/bin")
	}
	if cfg.Username != "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the sidecar's own binary for GIT_ASKPASS: %w", err)
		}
		env = append(env, "GIT_ASKPASS="+self, askpassUserEnv+"="+cfg.Username, askpassFileEnv+"="+cfg.PasswordFile)
	}
	if isSSH(cfg.Repo) {
		env = append(env, "GIT_SSH_COMMAND="+sshCommand(cfg))
	}
	bin, err := exec.LookPath("git")
	if err != nil {
		bin = "/usr/bin/git" // where the image has it, when the container has no PATH
	}
	return &gitCommand{Bin: bin, Env: env}, nil
}

// globalConfig is the only git config besides the repository's own. The repository of a file:// URL and
// GITSYNC_ROOT may belong to another UID (a mounted volume, an earlier pod): they are trusted, as the user
// chose them. It is a file, not GIT_CONFIG_COUNT, because git drops that for the local upload-pack.
const globalConfig = "[safe]\n\tdirectory = *\n"

func globalConfigPath(root string) string { return filepath.Join(root, ".gitconfig") }

// writeGlobalConfig writes globalConfig under root (read by every git command the sidecar runs).
func writeGlobalConfig(root string) error {
	if b, err := os.ReadFile(globalConfigPath(root)); err == nil && string(b) == globalConfig {
		return nil
	}
	if err := os.WriteFile(globalConfigPath(root), []byte(globalConfig), 0o644); err != nil {
		return fmt.Errorf("writing git's config: %w", err)
	}
	return nil
}

// sshCommand is the ssh invocation git uses (through /bin/sh, so paths are single-quoted).
func sshCommand(cfg *Config) string {
	args := []string{"ssh", "-i", shellQuote(cfg.SSHKeyFile), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10", "-F", "/dev/null"}
	if cfg.SSHKnownHosts {
		args = append(args, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+shellQuote(cfg.SSHKnownHostsFile))
	} else {
		args = append(args, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null")
	}
	return strings.Join(args, " ")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Run runs git with args in dir and returns its trimmed standard output. On failure the error holds
// the command (with URLs redacted) and git's own last lines of standard error, which say what went wrong.
// ctx bounds the command and every process it starts (the whole process group is killed).
func (g *gitCommand) Run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.Bin, args...)
	cmd.Dir = dir
	cmd.Env = g.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		msg := gitMessage(stderr.String())
		if msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", subcommand(args), err, msg)
		}
		return "", fmt.Errorf("git %s: %w", subcommand(args), err)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// gitMessage keeps what git says went wrong: its non-empty lines without the generic advice.
func gitMessage(stderr string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Please make sure you have the correct access rights") || l == "and the repository exists." {
			continue
		}
		lines = append(lines, l)
	}
	return lastLines(strings.Join(lines, "\n"), 4)
}

func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// subcommand names the git command in errors ("fetch", "worktree add"); the caller's message names the
// repository and the commit, so URLs and hashes are not repeated.
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		if args[i] == "-c" {
			i++
			continue
		}
		if args[i] == "worktree" || args[i] == "submodule" {
			if i+1 < len(args) {
				return args[i] + " " + args[i+1]
			}
		}
		return args[i]
	}
	return ""
}

// The askpass protocol: git runs GIT_ASKPASS with a prompt ("Username for 'https://host': " or
// "Password for 'https://user@host': ") and reads the answer from its standard output. The sidecar's own
// binary answers, so the image needs no shell script and the password never appears in an argument list
// or a config file: it is read from GITSYNC_PASSWORD_FILE at every fetch (a rotated Secret is picked up).
const (
	askpassUserEnv = "OUTRIGGER_GITSYNC_ASKPASS_USERNAME"
	askpassFileEnv = "OUTRIGGER_GITSYNC_ASKPASS_PASSWORD_FILE"
)

// isAskpass reports whether this process was started by git as GIT_ASKPASS.
func isAskpass() bool {
	_, ok := os.LookupEnv(askpassUserEnv)
	return ok && len(os.Args) == 2
}

// askpass answers git's prompt on stdout. It returns an error (git then fails the fetch) when the
// password file cannot be read.
func askpass(prompt string) (string, error) {
	if strings.HasPrefix(prompt, "Username") {
		return os.Getenv(askpassUserEnv), nil
	}
	file := os.Getenv(askpassFileEnv)
	if file == "" {
		return "", errors.New("git asked for a password, but GITSYNC_PASSWORD_FILE is not set")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading GITSYNC_PASSWORD_FILE: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
