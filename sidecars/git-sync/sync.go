package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// worktreesDir holds one checkout per commit, named by the commit hash, under GITSYNC_ROOT.
const worktreesDir = ".worktrees"

var fullHash = regexp.MustCompile(`^[0-9a-f]{40}$`)

// syncer keeps GITSYNC_ROOT in step with the remote: a bare repository in root/.git, one checkout per
// commit in root/.worktrees/<hash>, and the link, which always points at a complete checkout.
//
// A sync that fails leaves the published checkout and the link as they were. Only one goroutine may call
// a syncer's methods.
type syncer struct {
	cfg *Config
	git *gitCommand
	log *slog.Logger
	// current is the published commit ("" before the first sync).
	current string
	// replaced holds when each earlier checkout stopped being published.
	replaced map[string]time.Time
}

// keepReplaced is how long a replaced checkout stays after the swap, at least: a reader that resolved the
// link just before the swap can finish reading it. It is removed by the first sync after that.
const keepReplaced = time.Second

func (s *syncer) gitDir() string              { return filepath.Join(s.cfg.Root, ".git") }
func (s *syncer) worktree(hash string) string { return filepath.Join(s.cfg.Root, worktreesDir, hash) }

// prepare makes sure the bare repository exists and is sane (a broken one is re-created: it is only a
// cache of the remote), and adopts the checkout the link already points at, so that a restarted sidecar
// does not re-publish what the app already has.
func (s *syncer) prepare(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(s.cfg.Root, worktreesDir), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", s.cfg.Root, err)
	}
	if err := writeGlobalConfig(s.cfg.Root); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.gitDir(), "HEAD")); err == nil {
		if _, err := s.git.Run(ctx, s.gitDir(), "rev-parse", "--git-dir"); err == nil {
			s.adopt(ctx)
			return nil
		}
		s.log.Warn("the repository in GITSYNC_ROOT is damaged: re-creating it", "dir", s.gitDir())
		if err := os.RemoveAll(s.gitDir()); err != nil {
			return fmt.Errorf("removing the damaged repository %s: %w", s.gitDir(), err)
		}
	}
	if _, err := s.git.Run(ctx, s.cfg.Root, "init", "-q", "--bare", s.gitDir()); err != nil {
		return fmt.Errorf("creating the repository in %s: %w", s.gitDir(), err)
	}
	return nil
}

// adopt takes the link's current target as the published commit if it is a complete checkout of it.
func (s *syncer) adopt(ctx context.Context) {
	target, err := os.Readlink(s.cfg.Link)
	if err != nil {
		return
	}
	hash := filepath.Base(target)
	if !fullHash.MatchString(hash) {
		return
	}
	head, err := s.git.Run(ctx, s.worktree(hash), "rev-parse", "HEAD")
	if err == nil && head == hash {
		s.current = hash
		s.log.Info("resuming from the published checkout", "hash", hash)
	}
}

// syncResult says what one sync did.
type syncResult struct {
	// Hash is the published commit after the sync.
	Hash string
	// Changed is true when a new commit was checked out and published.
	Changed bool
}

// sync fetches the ref's commit, checks it out into its own directory and publishes it by swapping the
// link. It first removes the checkouts replaced at least keepReplaced ago.
func (s *syncer) sync(ctx context.Context) (syncResult, error) {
	s.removeOldCheckouts(ctx)
	remote, err := s.remoteHash(ctx)
	if err != nil {
		return syncResult{Hash: s.current}, err
	}
	if remote == s.current {
		return syncResult{Hash: s.current}, nil
	}
	if err := s.checkout(ctx, remote); err != nil {
		return syncResult{Hash: s.current}, err
	}
	if err := s.publish(remote); err != nil {
		os.RemoveAll(s.worktree(remote))
		return syncResult{Hash: s.current}, err
	}
	if s.current != "" {
		if s.replaced == nil {
			s.replaced = map[string]time.Time{}
		}
		s.replaced[s.current] = time.Now()
	}
	s.current = remote
	// Housekeeping; a failure here does not undo the sync.
	if _, err := s.git.Run(ctx, s.gitDir(), "-c", "gc.pruneExpire=now", "-c", "gc.worktreePruneExpire=now", "gc", "--auto", "--quiet"); err != nil {
		s.log.Warn("git gc failed", "err", err)
	}
	return syncResult{Hash: remote, Changed: true}, nil
}

// remoteHash resolves GITSYNC_REF on the remote. A full commit hash is taken as it is; anything else
// is looked up with ls-remote, trying the exact name, then a branch, then a tag (peeled to its commit).
func (s *syncer) remoteHash(ctx context.Context) (string, error) {
	ref := s.cfg.Ref
	if fullHash.MatchString(ref) {
		return ref, nil
	}
	out, err := s.git.Run(ctx, s.cfg.Root, "ls-remote", s.cfg.Repo, ref, "refs/heads/"+ref, "refs/tags/"+ref, "refs/tags/"+ref+"^{}")
	if err != nil {
		return "", explainRemoteError(s.cfg, fmt.Errorf("asking %s for %s: %w", envflag.RedactURL(s.cfg.Repo), ref, err))
	}
	refs := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		hash, name, ok := strings.Cut(line, "\t")
		if ok {
			refs[name] = hash
		}
	}
	for _, name := range []string{ref, "refs/heads/" + ref, "refs/tags/" + ref + "^{}", "refs/tags/" + ref} {
		if h, ok := refs[name]; ok && fullHash.MatchString(h) {
			return h, nil
		}
	}
	return "", fmt.Errorf("ref %q not found in %s: want a branch, a tag, HEAD or a full 40-character commit hash", ref, envflag.RedactURL(s.cfg.Repo))
}

// explainRemoteError adds what to check to git's message for the common causes.
func explainRemoteError(cfg *Config, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Authentication failed") || strings.Contains(msg, "could not read Username") || strings.Contains(msg, "could not read Password"):
		return fmt.Errorf("authentication failed: check GITSYNC_USERNAME and the password in GITSYNC_PASSWORD_FILE: %w", err)
	case strings.Contains(msg, "Host key verification failed"):
		return fmt.Errorf("the SSH host key is not in GITSYNC_SSH_KNOWN_HOSTS_FILE (%s): %w", cfg.SSHKnownHostsFile, err)
	case strings.Contains(msg, "Permission denied (publickey"):
		return fmt.Errorf("the SSH server refused the key in GITSYNC_SSH_KEY_FILE (%s): %w", cfg.SSHKeyFile, err)
	}
	return err
}

// checkout fetches hash and checks it out into its own directory, with submodules. On failure nothing
// is left behind.
func (s *syncer) checkout(ctx context.Context, hash string) (err error) {
	args := []string{"fetch", "--quiet", "--no-tags", "--no-recurse-submodules"}
	if s.cfg.Depth > 0 {
		args = append(args, "--depth", strconv.Itoa(s.cfg.Depth))
	}
	args = append(args, s.cfg.Repo, hash)
	if _, err := s.git.Run(ctx, s.gitDir(), args...); err != nil {
		return explainRemoteError(s.cfg, fmt.Errorf("fetching %s from %s: %w", hash, envflag.RedactURL(s.cfg.Repo), err))
	}
	dir := s.worktree(hash)
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			s.git.Run(context.WithoutCancel(ctx), s.gitDir(), "worktree", "prune")
		}
	}()
	// A directory left by a crash is not trusted: start it again.
	if _, statErr := os.Stat(dir); statErr == nil {
		os.RemoveAll(dir)
		s.git.Run(ctx, s.gitDir(), "worktree", "prune")
	}
	if _, err := s.git.Run(ctx, s.gitDir(), "worktree", "add", "--quiet", "--force", "--detach", dir, hash+"^{commit}"); err != nil {
		return fmt.Errorf("checking out %s: %w", hash, err)
	}
	if s.cfg.Submodules != "off" {
		if _, statErr := os.Stat(filepath.Join(dir, ".gitmodules")); statErr == nil {
			args := []string{"submodule", "update", "--init"}
			if s.cfg.Submodules == "recursive" {
				args = append(args, "--recursive")
			}
			if s.cfg.Depth > 0 {
				args = append(args, "--depth", strconv.Itoa(s.cfg.Depth))
			}
			if _, err := s.git.Run(ctx, dir, args...); err != nil {
				return fmt.Errorf("updating the submodules of %s: %w", hash, err)
			}
		}
	}
	return nil
}

// publish points the link at hash's checkout atomically: the new symlink is written under a temporary
// name and renamed over the link (rename(2) replaces it in one step, so a reader finds the old or the new
// checkout, never none). The target is relative, so it resolves wherever the volume is mounted.
func (s *syncer) publish(hash string) error {
	target, err := filepath.Rel(filepath.Dir(s.cfg.Link), s.worktree(hash))
	if err != nil {
		return fmt.Errorf("publishing %s: %w", hash, err)
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Link), 0o755); err != nil {
		return fmt.Errorf("publishing %s: %w", hash, err)
	}
	tmp := s.cfg.Link + ".tmp-" + hash[:12]
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("publishing %s: %w", hash, err)
	}
	if err := os.Rename(tmp, s.cfg.Link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publishing %s: swapping the link %s: %w", hash, s.cfg.Link, err)
	}
	return nil
}

// removeOldCheckouts deletes every checkout but the published one and those replaced less than
// keepReplaced ago, and tells git they are gone. Checkouts left by an earlier run are removed at once.
func (s *syncer) removeOldCheckouts(ctx context.Context) {
	entries, err := os.ReadDir(filepath.Join(s.cfg.Root, worktreesDir))
	if err != nil {
		s.log.Warn("listing old checkouts", "err", err)
		return
	}
	removed := false
	for _, e := range entries {
		if e.Name() == s.current {
			continue
		}
		if at, ok := s.replaced[e.Name()]; ok && time.Since(at) < keepReplaced {
			continue
		}
		delete(s.replaced, e.Name())
		if err := os.RemoveAll(filepath.Join(s.cfg.Root, worktreesDir, e.Name())); err != nil {
			s.log.Warn("removing an old checkout", "dir", e.Name(), "err", err)
			continue
		}
		removed = true
	}
	if removed {
		if _, err := s.git.Run(ctx, s.gitDir(), "worktree", "prune"); err != nil {
			s.log.Warn("git worktree prune", "err", err)
		}
	}
}

var errNoSync = errors.New("no successful sync yet")
