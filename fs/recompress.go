package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/fs/sched"
)

// RecompressOptions configures background recompression: blocks stored by
// the fast write path are re-coded with Chooser while the filesystem is idle
// and swapped in with blockstore.ReplaceBlockIf, so a write, truncate or
// unlink meanwhile always wins.
type RecompressOptions struct {
	// Chooser re-codes blocks (the configured policy); nil disables
	// background recompression.
	Chooser *coder.Chooser
	// Level is the recode level of Chooser's policy (PolicyLevel): blocks
	// below it are re-coded and stored with it.
	Level uint8
	// Idle is how long the filesystem must go without writes before the
	// work starts; it pauses when writes come in. 0 means 2 seconds.
	Idle time.Duration
	// Workers is how many blocks are re-coded in parallel (0: one).
	Workers int
}

// PolicyLevel returns the recode level (blockstore.LevelFast, ...) that
// blocks coded with policy p are stored with.
func PolicyLevel(p coder.Policy) uint8 {
	switch p {
	case coder.PolicyBalanced:
		return blockstore.LevelBalanced
	case coder.PolicyMax:
		return blockstore.LevelMax
	}
	return blockstore.LevelFast
}

// RecodeStats counts what recompression did.
type RecodeStats struct {
	Recoded uint64 // blocks replaced by a smaller record
	Kept    uint64 // blocks whose record stayed (nothing smaller), level raised
	Lost    uint64 // blocks changed or removed meanwhile: the result was dropped
	Stopped uint64 // blocks left as they were because the run was stopped
	Failed  uint64 // blocks that could not be decoded or coded (logged)
	Before  uint64 // stored bytes of the recoded and kept blocks before
	After   uint64 // and after
	Raw     uint64 // their decoded bytes
}

type recodeCounters struct {
	recoded, kept, lost, stopped, failed, before, after, raw atomic.Uint64
}

func (c *recodeCounters) add(r recodeResult) {
	switch {
	case r.err != nil:
		c.failed.Add(1)
	case r.stopped:
		c.stopped.Add(1)
	case r.lost:
		c.lost.Add(1)
	case r.newSize < r.oldSize:
		c.recoded.Add(1)
	default:
		c.kept.Add(1)
	}
	if r.err == nil && !r.lost && !r.stopped {
		c.before.Add(uint64(r.oldSize))
		c.after.Add(uint64(r.newSize))
		c.raw.Add(uint64(r.rawSize))
	}
}

func (c *recodeCounters) stats() RecodeStats {
	return RecodeStats{
		Recoded: c.recoded.Load(), Kept: c.kept.Load(), Lost: c.lost.Load(), Stopped: c.stopped.Load(), Failed: c.failed.Load(),
		Before: c.before.Load(), After: c.after.Load(), Raw: c.raw.Load(),
	}
}

// RecompressStats reports what background recompression has done since New.
func (f *FS) RecompressStats() RecodeStats { return f.recoded.stats() }

// touch records a write or flush: background recompression waits until the
// filesystem has been idle for a while, and wakes after new data is stored.
func (f *FS) touch() {
	f.lastWrite.Store(time.Now().UnixNano())
	select {
	case f.wrote <- struct{}{}:
	default:
	}
}

// recoder re-codes single blocks of a store.
type recoder struct {
	st    *blockstore.Store
	reg   *coder.Registry
	ch    *coder.Chooser
	level uint8
	log   *slog.Logger
	// decode and encode, if set, replace r.reg.Decode and r.ch.Encode:
	// the daemon runs them on its coding scheduler at background priority.
	decode func(ctx context.Context, rec []byte) ([]byte, error)
	encode func(ctx context.Context, raw []byte) ([]byte, error)
}

type recodeResult struct {
	oldSize, newSize, rawSize int
	lost, stopped             bool
	err                       error
}

// recode re-codes block blk of ino with r.ch if its level is below r.level,
// and swaps it in unless the block changed meanwhile. When nothing smaller
// comes out, the old record stays and only its level is raised, so the block
// is not tried again by this policy.
func (r *recoder) recode(ctx context.Context, ino, blk uint64) recodeResult {
	rec, meta, ver, err := r.st.GetBlockVersion(ino, blk)
	if errors.Is(err, blockstore.ErrNotFound) {
		return recodeResult{lost: true}
	}
	if err != nil {
		return recodeResult{err: err}
	}
	if blockstore.MetaLevel(meta) >= r.level {
		return recodeResult{lost: true} // done by someone else meanwhile
	}
	var raw, out []byte
	if r.decode != nil {
		raw, err = r.decode(ctx, rec)
	} else {
		raw, _, err = r.reg.Decode(ctx, nil, rec)
	}
	if err != nil && ctx.Err() != nil {
		return recodeResult{stopped: true} // stopping: the block stays as it is
	}
	if err != nil {
		return recodeResult{err: fmt.Errorf("decode block %d of inode %d (run lmfs fsck): %w", blk, ino, err)}
	}
	if r.encode != nil {
		out, err = r.encode(ctx, raw)
	} else {
		out, err = r.ch.Encode(ctx, nil, raw)
	}
	if err != nil && ctx.Err() != nil {
		return recodeResult{stopped: true} // stopping: the block stays as it is
	}
	if err != nil {
		return recodeResult{err: fmt.Errorf("re-code block %d of inode %d: %w", blk, ino, err)}
	}
	if len(out) >= len(rec) {
		out = rec
	}
	ok, err := r.st.ReplaceBlockIf(ino, blk, ver, out, blockstore.Meta(out[1], r.level))
	if err != nil {
		return recodeResult{err: err}
	}
	return recodeResult{oldSize: len(rec), newSize: len(out), rawSize: len(raw), lost: !ok}
}

// walkHooks lets the daemon pause a walk and skip busy blocks.
type walkHooks struct {
	pause func() bool                             // true: stop before the next block
	skip  func(ino, blk uint64) bool              // true: leave this block for later
	done  func(blockstore.BlockRef, recodeResult) // after each block
}

// walk re-codes the pending blocks from (ino, blk) on with workers
// goroutines. It returns where it stopped and whether it reached the end.
func (r *recoder) walk(ctx context.Context, ino, blk uint64, workers int, h walkHooks) (uint64, uint64, bool, error) {
	jobs := make(chan blockstore.BlockRef)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ref := range jobs {
				res := r.recode(ctx, ref.Ino, ref.Blk)
				if res.err != nil && ctx.Err() == nil {
					r.log.Warn("recompression of a block failed; it stays as it is", "ino", ref.Ino, "block", ref.Blk, "err", res.err)
				}
				if h.done != nil {
					h.done(ref, res)
				}
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	for {
		refs, ni, nb, end, err := r.st.PendingBlocks(ctx, ino, blk, r.level, 1024)
		if err != nil {
			return ino, blk, false, err
		}
		for _, ref := range refs {
			if h.pause != nil && h.pause() {
				return ref.Ino, ref.Blk, false, nil
			}
			if h.skip != nil && h.skip(ref.Ino, ref.Blk) {
				continue
			}
			select {
			case jobs <- ref:
			case <-ctx.Done():
				return ref.Ino, ref.Blk, false, ctx.Err()
			}
		}
		if end {
			return 0, 0, true, nil
		}
		ino, blk = ni, nb
	}
}

// Progress is what Recompress reports after each block.
type Progress struct {
	Blocks uint64 // blocks handled so far
	Before uint64 // their stored bytes before
	After  uint64 // and after (dropped and failed blocks count unchanged)
}

// Recompress re-codes every block of st whose recode level is below level
// with ch, on workers goroutines (0: one), calling progress (if not nil,
// from one goroutine at a time) after each block. It is for a store that is
// not mounted: `lmfs recompress`.
func Recompress(ctx context.Context, st *blockstore.Store, reg *coder.Registry, ch *coder.Chooser, level uint8, workers int, log *slog.Logger, progress func(Progress)) (RecodeStats, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &recoder{st: st, reg: reg, ch: ch, level: level, log: log}
	var c recodeCounters
	var mu sync.Mutex
	var p Progress
	_, _, _, err := r.walk(ctx, 0, 0, workers, walkHooks{done: func(ref blockstore.BlockRef, res recodeResult) {
		c.add(res)
		mu.Lock()
		defer mu.Unlock()
		p.Blocks++
		if res.err == nil && !res.lost {
			p.Before += uint64(res.oldSize)
			p.After += uint64(res.newSize)
		} else {
			p.Before += uint64(ref.Stored)
			p.After += uint64(ref.Stored)
		}
		if progress != nil {
			progress(p)
		}
	}})
	return c.stats(), err
}

// recompressor is the FS's background recompression loop: it waits until no
// write has come for o.Idle, walks the pending blocks, pauses as soon as a
// write comes in, and sleeps until new data is stored once everything is
// done. Blocks that are dirty or being flushed are skipped (their flush
// stores a newer version anyway).
func (f *FS) recompressor(ctx context.Context, o RecompressOptions) {
	defer f.wg.Done()
	if o.Idle <= 0 {
		o.Idle = 2 * time.Second
	}
	r := &recoder{st: f.st, reg: f.reg, ch: o.Chooser, level: o.Level, log: f.log,
		decode: func(ctx context.Context, rec []byte) ([]byte, error) {
			return f.code(ctx, sched.Background, &CodeTask{Dir: Decode, In: rec}, nil)
		},
		encode: func(ctx context.Context, raw []byte) ([]byte, error) {
			return f.code(ctx, sched.Background, &CodeTask{Dir: Encode, In: raw}, o.Chooser)
		},
	}
	idle := func() time.Duration { // how much longer until idle
		return time.Duration(f.lastWrite.Load() + int64(o.Idle) - time.Now().UnixNano())
	}
	hooks := walkHooks{
		pause: func() bool { return idle() > 0 },
		skip: func(ino, blk uint64) bool {
			s := f.loaded(ino)
			if s == nil {
				return false
			}
			s.mu.RLock()
			_, busy := s.block(blk)
			s.mu.RUnlock()
			return busy
		},
		done: func(_ blockstore.BlockRef, res recodeResult) { f.recoded.add(res) },
	}
	var ino, blk uint64
	for {
		for d := idle(); d > 0; d = idle() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		ni, nb, end, err := r.walk(ctx, ino, blk, o.Workers, hooks)
		if ctx.Err() != nil {
			return
		}
		ino, blk = ni, nb
		if err != nil {
			f.log.Warn("background recompression: scanning the store failed; retrying later", "err", err)
			end = true
		}
		if end {
			st := f.recoded.stats()
			f.log.Debug("background recompression is up to date", "recoded", st.Recoded, "kept", st.Kept, "lost", st.Lost, "failed", st.Failed, "bytes_before", st.Before, "bytes_after", st.After)
			select {
			case <-ctx.Done():
				return
			case <-f.wrote:
			}
		}
	}
}
