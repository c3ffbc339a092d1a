package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/outrigger-dev/outrigger/sidecars/shard-ambassador/ring"
)

// Hot reload of the shard list (twemproxy cannot: twemproxy#6). When CONFIG_FILE changes (the kubelet
// swaps a mounted ConfigMap's ..data link; an editor writes in place), its pool's servers are read again
// and the backend's pool is replaced: client connections stay open, each client's next batch routes over
// the new ring, requests already sent finish on their old connections, and shards the reload took out
// are closed once no request can still be waiting on them (twice TIMEOUT). Shards that stay keep their
// connections. The share of a sample of keys that moved to another shard is logged and exported, so that
// the cost of adding a shard shows before the cache misses do. Only the servers change live: a changed
// listen, hash, distribution or hash_tag (which would move every key) is reported and waits for a restart.

// remapSample is how many keys the remap share is measured on.
const remapSample = 10_000

// watchConfig reloads CONFIG_FILE on every change of its directory, and every pollEvery as a safety net
// for file systems without inotify, until ctx ends.
func (b *backend) watchConfig(ctx context.Context, pollEvery time.Duration) {
	last, _ := os.ReadFile(b.cfg.ConfigFile)
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		if err = w.Add(filepath.Dir(b.cfg.ConfigFile)); err != nil {
			b.log.Warn("watching CONFIG_FILE's directory; polling only", "dir", filepath.Dir(b.cfg.ConfigFile), "every", pollEvery, "err", err)
		}
	}
	var events <-chan fsnotify.Event
	if w != nil {
		events = w.Events
	}
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			settle.Reset(100 * time.Millisecond) // the kubelet's swap is several events: act on the last
			continue
		case <-poll.C:
		case <-settle.C:
		}
		data, err := os.ReadFile(b.cfg.ConfigFile)
		if err != nil || bytes.Equal(data, last) {
			continue // a missing file mid-swap is read again at the next event or poll
		}
		last = data
		if err := b.reload(); err != nil {
			b.metrics.reloads.WithLabelValues("invalid").Inc()
			b.log.Error("CONFIG_FILE changed but cannot be used; the running shards are kept", "file", b.cfg.ConfigFile, "err", err)
		}
	}
}

// reload reads CONFIG_FILE's servers and makes them the pool.
func (b *backend) reload() error {
	next := &Config{ConfigFile: b.cfg.ConfigFile, Pool: b.cfg.Pool, Protocol: b.cfg.Protocol, Listen: b.cfg.Listen,
		Hash: b.cfg.Hash, Distribution: b.cfg.Distribution, HashTag: b.cfg.HashTag, StatusPort: b.cfg.StatusPort}
	if err := applyNutcrackerFile(next); err != nil {
		return err
	}
	if errs := next.validate(); len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	for _, kept := range []struct{ what, was, now string }{
		{"listen", b.cfg.Listen, next.Listen}, {"hash", b.cfg.Hash, next.Hash},
		{"distribution", b.cfg.Distribution, next.Distribution}, {"hash_tag", b.cfg.HashTag, next.HashTag},
	} {
		if kept.was != kept.now {
			b.log.Warn("CONFIG_FILE changed a setting that needs a restart; it keeps its running value", "setting", kept.what, "running", kept.was, "file", kept.now)
		}
	}

	b.ringMu.Lock()
	old := b.pool.Load()
	byName := map[string]*shard{}
	for _, s := range old.shards {
		byName[s.server.String()] = s
	}
	shards := make([]*shard, 0, len(next.Servers))
	var added []string
	for i, srv := range next.Servers {
		if s, ok := byName[srv.String()]; ok {
			shards = append(shards, s)
			delete(byName, srv.String())
			continue
		}
		shards = append(shards, b.newShard(i, srv))
		added = append(added, srv.String())
	}
	if len(added) == 0 && len(byName) == 0 && slices.Equal(shards, old.shards) {
		b.ringMu.Unlock()
		b.metrics.reloads.WithLabelValues("unchanged").Inc()
		return nil
	}
	if err := b.rebuildLocked(shards, time.Now()); err != nil {
		b.ringMu.Unlock()
		return err
	}
	var removed []string
	var gone []*shard
	for _, s := range byName {
		removed = append(removed, s.server.String())
		gone = append(gone, s)
		s.metrics.setInRing(false)
	}
	b.retired = append(b.retired, gone...)
	moved := remapped(old, b.pool.Load())
	b.ringMu.Unlock()

	// No request is routed to a removed shard once every client has started a new batch; one already sent
	// ends within TIMEOUT (the watchdog). Then its connections go.
	time.AfterFunc(2*b.cfg.Timeout+time.Second, func() {
		for _, s := range gone {
			s.mu.Lock()
			conns := append([]*serverConn(nil), s.conns...)
			s.mu.Unlock()
			for _, c := range conns {
				if c != nil {
					c.fail(errRemovedByReload, false)
				}
			}
		}
	})
	b.metrics.reloads.WithLabelValues("applied").Inc()
	b.metrics.remapped.Set(moved)
	slices.Sort(removed)
	b.log.Info("reloaded CONFIG_FILE's shards", "shards", len(shards), "added", added, "removed", removed,
		"keys_moved", strconv.FormatFloat(moved*100, 'f', 1, 64)+"%")
	return nil
}

var errRemovedByReload = fmt.Errorf("the shard was removed from CONFIG_FILE")

// remapped is the share of remapSample keys whose shard (by name) differs between two pools.
func remapped(before, after *pool) float64 {
	name := func(p *pool, r *ring.Ring, key []byte) string {
		if i := r.Pick(key); i >= 0 {
			return p.shards[i].server.String()
		}
		return ""
	}
	moved := 0
	key := make([]byte, 0, 32)
	for i := range remapSample {
		key = strconv.AppendInt(append(key[:0], "remap-sample:"...), int64(i), 10)
		if name(before, before.ring, key) != name(after, after.ring, key) {
			moved++
		}
	}
	return float64(moved) / remapSample
}
