// Package fs is the lmfs filesystem: go-fuse nodes for directories, files and
// symlinks whose namespace, attributes and data live in a blockstore.Store.
// File data is a sequence of fixed-size blocks, each coded on its own through
// a coder.Chooser and decoded through a coder.Registry.
//
// Locking: FS.ns serializes namespace changes (create, link, unlink, rename,
// ...); each inode has one inodeState whose mutex is shared by every handle
// and every node of that inode, and guards its attributes and dirty blocks.
// Lock order: FS.ns, then inodeState.mu; at most one inodeState.mu at a time,
// except that namespace changes may lock the states of the inodes they touch
// in increasing inode order.
package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/fs/sched"
)

// StatsXattr is the extended attribute of the root directory that returns the
// store's statistics as JSON (blockstore.Stats), so that `lmfs stats` works
// while the store is mounted.
const StatsXattr = "user.lmfs.stats"

// Options configures New.
type Options struct {
	// Store holds the filesystem.
	Store *blockstore.Store
	// Registry decodes blocks; Chooser codes them.
	Registry *coder.Registry
	Chooser  *coder.Chooser
	// WriteBuffer bounds the dirty data held in memory, in bytes.
	WriteBuffer int64
	// CacheSize bounds the decoded-block cache, in bytes.
	CacheSize int64
	// Workers is how many blocks are coded in parallel (0: one per core):
	// the coding scheduler's workers, shared by reads, flushes and
	// background recompression.
	Workers int
	// ReadAhead is how many blocks a sequential reader gets decoded ahead
	// of it (0: four per worker, as many as lmfs decompress keeps in
	// flight); it is capped at a quarter of the cache.
	// -1 turns read-ahead off.
	ReadAhead int
	// Batchers are batch backends of the coding scheduler, by job key
	// (see sched.Batcher; none: every job runs on its own).
	Batchers map[string]sched.Batcher
	// Level is the recode level (blockstore.LevelFast, ...) of Chooser's
	// policy, stored with every block it codes (see PolicyLevel).
	Level uint8
	// Recompress, when its Chooser is set, re-codes stored blocks in the
	// background while the filesystem is idle.
	Recompress RecompressOptions
	// Logger gets the filesystem's log lines; nil means slog.Default().
	Logger *slog.Logger
}

// FS is a mounted (or mountable) lmfs filesystem.
type FS struct {
	st    *blockstore.Store
	reg   *coder.Registry
	ch    *coder.Chooser
	bs    int
	log   *slog.Logger
	cache *blockCache
	sched *sched.Scheduler
	ctr   counters
	ra    int // read-ahead window in blocks (0: off)
	raMax int // its bound when reads are large (a quarter of the cache)

	// decoding holds the decodes in progress, so that a read waits for a
	// read-ahead of its block instead of decoding it again.
	decMu    sync.Mutex
	decoding map[cacheKey]*decodeCall

	ns sync.RWMutex

	statesMu sync.Mutex
	states   map[uint64]*inodeState

	dirtyMu    sync.Mutex
	dirtyNodes map[*inodeState]struct{}
	// flushingNodes holds the states whose flush is coding blocks: their
	// bytes still count in dirtyBytes until stored.
	flushingNodes map[*inodeState]struct{}
	dirtyBytes    atomic.Int64
	dirtyLimit    int64

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	level     uint8
	lastWrite atomic.Int64    // unix nanoseconds of the last write or flush
	wrote     chan struct{}   // wakes the idle recompressor
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	recoded   *recodeCounters
}

// New returns the filesystem over o.Store.
func New(o Options) (*FS, error) {
	if o.Store == nil || o.Registry == nil || o.Chooser == nil {
		return nil, errors.New("fs.New needs a store, a codec registry and a chooser")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	bs := o.Store.BlockSize()
	if o.WriteBuffer < int64(2*bs) {
		o.WriteBuffer = int64(2 * bs)
	}
	if o.CacheSize < int64(bs) {
		o.CacheSize = int64(bs)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	ra := o.ReadAhead
	if ra == 0 {
		ra = 4 * o.Workers
	}
	raMax := int(o.CacheSize / 4 / int64(bs))
	ra = max(0, min(ra, raMax))
	bg := 0
	if o.Recompress.Chooser != nil {
		bg = max(1, o.Recompress.Workers)
	}
	f := &FS{
		st: o.Store, reg: o.Registry, ch: o.Chooser, bs: bs, log: o.Logger,
		cache: newBlockCache(o.CacheSize),
		sched: sched.New(sched.Options{
			Workers: o.Workers, Background: bg, Batchers: o.Batchers,
		}),
		ra:            ra,
		raMax:         raMax,
		decoding:      map[cacheKey]*decodeCall{},
		states:        map[uint64]*inodeState{},
		dirtyNodes:    map[*inodeState]struct{}{},
		flushingNodes: map[*inodeState]struct{}{},
		dirtyLimit:    o.WriteBuffer,
		kick:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		level:         o.Level,
		wrote:         make(chan struct{}, 1),
		recoded:       &recodeCounters{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.ctx, f.cancel = ctx, cancel
	f.wg.Add(1)
	go f.flusher()
	if o.Recompress.Chooser != nil {
		f.wg.Add(1)
		go f.recompressor(ctx, o.Recompress)
	}
	return f, nil
}

// Close flushes everything and stops the background flusher.
func (f *FS) Close(ctx context.Context) error {
	err := f.FlushAll(ctx)
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.cancel()
	f.wg.Wait()
	f.sched.Close()
	return err
}

// flusher writes dirty blocks in the background once half the write buffer
// is used, so that writers rarely wait for coding; writers flush themselves
// only when the whole buffer is full.
func (f *FS) flusher() {
	defer f.wg.Done()
	for {
		select {
		case <-f.stop:
			return
		case <-f.kick:
		}
		if err := f.flushDownTo(context.Background(), f.dirtyLimit/4); err != nil {
			f.log.Error("background flush failed; the data stays in memory and is retried", "err", err)
		}
	}
}

// noteWrite is called after a write: it wakes the background flusher or,
// above the bound, flushes in the writer. The caller holds no inode lock.
func (f *FS) noteWrite(ctx context.Context) error {
	f.touch()
	d := f.dirtyBytes.Load()
	if d > f.dirtyLimit/2 {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
	if d > f.dirtyLimit {
		return f.flushDownTo(ctx, f.dirtyLimit)
	}
	return nil
}

// Root returns the root directory node, to pass to go-fuse's fs.Mount.
func (f *FS) Root() (gofs.InodeEmbedder, error) {
	var in blockstore.Inode
	err := f.st.View(func(t *blockstore.Txn) error {
		var err error
		in, err = t.GetInode(blockstore.RootIno)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read root directory: %w", err)
	}
	return f.newNode(in), nil
}

// inodeState is the in-memory state of one inode, shared by all its nodes
// and open handles.
type inodeState struct {
	mu    sync.RWMutex
	attr  blockstore.Inode // authoritative; Size includes dirty data
	dirty map[uint64][]byte
	// inflight holds the blocks a flush is coding, readable meanwhile;
	// flushing is set while it runs, and flushDone (on mu) wakes waiters.
	inflight  map[uint64][]byte
	flushing  bool
	flushDone *sync.Cond
	opens     int
	refs      int // go-fuse nodes pointing here; guarded by FS.statesMu
	path      string
}

// waitFlush waits until no flush of s is in progress. The caller holds
// s.mu for writing.
func (s *inodeState) waitFlush() {
	for s.flushing {
		s.flushDone.Wait()
	}
}

// block returns the newest unstored contents of block blk, if any.
func (s *inodeState) block(blk uint64) ([]byte, bool) {
	if b, ok := s.dirty[blk]; ok {
		return b, true
	}
	b, ok := s.inflight[blk]
	return b, ok
}

// state returns the shared state of in.Ino, creating it from in if absent,
// and takes a reference for a new node.
func (f *FS) state(in blockstore.Inode) *inodeState {
	f.statesMu.Lock()
	defer f.statesMu.Unlock()
	s := f.states[in.Ino]
	if s == nil {
		s = &inodeState{attr: in}
		s.flushDone = sync.NewCond(&s.mu)
		f.states[in.Ino] = s
	}
	s.refs++
	return s
}

// loaded returns the state of ino if it is in memory.
func (f *FS) loaded(ino uint64) *inodeState {
	f.statesMu.Lock()
	defer f.statesMu.Unlock()
	return f.states[ino]
}

// release drops a node's reference; clean, closed states are forgotten.
func (f *FS) release(ino uint64, s *inodeState) {
	f.statesMu.Lock()
	defer f.statesMu.Unlock()
	s.refs--
	if s.refs > 0 {
		return
	}
	s.mu.RLock()
	busy := s.opens > 0 || len(s.dirty) > 0 || s.flushing
	s.mu.RUnlock()
	if !busy && f.states[ino] == s {
		delete(f.states, ino)
	}
}

func (f *FS) markDirty(s *inodeState, added int64) {
	f.dirtyBytes.Add(added)
	f.dirtyMu.Lock()
	f.dirtyNodes[s] = struct{}{}
	f.dirtyMu.Unlock()
}

// flushDownTo flushes files' dirty blocks until at most target bytes are
// dirty. The caller must hold no inode lock.
func (f *FS) flushDownTo(ctx context.Context, target int64) error {
	for f.dirtyBytes.Load() > target {
		f.dirtyMu.Lock()
		var victim, busy *inodeState
		for s := range f.dirtyNodes {
			victim = s
			break
		}
		if victim == nil {
			// Everything dirty is being coded by flushes in progress:
			// wait for one, since its bytes count until they are stored.
			for s := range f.flushingNodes {
				busy = s
				break
			}
		}
		f.dirtyMu.Unlock()
		if busy != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			busy.mu.Lock()
			busy.waitFlush()
			busy.mu.Unlock()
			continue
		}
		if victim == nil {
			return nil
		}
		victim.mu.Lock()
		err := f.flushLocked(ctx, victim)
		victim.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// FlushAll writes every dirty block to the store and syncs it; the daemon
// calls it before unmounting.
func (f *FS) FlushAll(ctx context.Context) error {
	f.dirtyMu.Lock()
	var all []*inodeState
	for s := range f.dirtyNodes {
		all = append(all, s)
	}
	f.dirtyMu.Unlock()
	var errs []error
	for _, s := range all {
		s.mu.Lock()
		if s.attr.Nlink > 0 { // an unlinked file's data is purged, not kept
			errs = append(errs, f.flushLocked(ctx, s))
		}
		s.mu.Unlock()
	}
	errs = append(errs, f.st.Sync())
	return errors.Join(errs...)
}

// DirtyBytes reports the dirty data held in memory.
func (f *FS) DirtyBytes() int64 { return f.dirtyBytes.Load() }

// flushLocked codes and stores s's dirty blocks with its inode record.
// The caller holds s.mu for writing. While the blocks are coded (in
// parallel, by up to Options.Workers goroutines) s.mu is released, so reads
// and writes of the file go on; the blocks being coded stay readable in
// s.inflight. One flush per inode runs at a time; a flush first waits for
// the one in progress, so when it returns everything dirty at its call is
// stored.
func (f *FS) flushLocked(ctx context.Context, s *inodeState) error {
	s.waitFlush()
	if len(s.dirty) == 0 {
		f.dirtyMu.Lock()
		delete(f.dirtyNodes, s)
		f.dirtyMu.Unlock()
		return nil
	}
	ino := s.attr.Ino
	size := s.attr.Size
	snap := s.dirty
	s.dirty = nil
	s.inflight = snap
	s.flushing = true
	f.dirtyMu.Lock()
	delete(f.dirtyNodes, s)
	f.flushingNodes[s] = struct{}{}
	f.dirtyMu.Unlock()

	idx := make([]uint64, 0, len(snap))
	for b := range snap {
		idx = append(idx, b)
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	recs := make([][]byte, len(idx))
	errs := make([]error, len(idx))
	s.mu.Unlock()
	jobs := make([]*sched.Job, len(idx))
	tasks := make([]*CodeTask, len(idx))
	for i, b := range idx {
		n := blockLen(size, b, f.bs)
		data := snap[b][:n]
		if n == 0 || allZero(data) {
			continue // hole: delete
		}
		// Submit waits while the flush queue is full (back-pressure).
		tasks[i] = &CodeTask{Dir: Encode, In: data}
		jobs[i], errs[i] = f.submitCode(ctx, sched.Flush, tasks[i], f.ch, nil)
		if errs[i] != nil {
			break
		}
	}
	for i, j := range jobs {
		if j != nil {
			if errs[i] = f.sched.Wait(ctx, j); errs[i] == nil {
				recs[i] = tasks[i].Out
			}
		}
	}
	s.mu.Lock()
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("code blocks of inode %d: %w", ino, err)
	}
	if err == nil {
		var need int64
		for _, r := range recs {
			need += int64(len(r)) + 64
		}
		if err = f.st.SpaceFor(need); err != nil {
			err = fmt.Errorf("store %d blocks of inode %d: %w", len(idx), ino, err)
		}
	}
	maxCount, maxBytes := f.st.TxnLimits()
	done := 0
	for lo := 0; lo < len(idx) && err == nil; lo = done {
		// As many blocks as fit one transaction (at least one).
		hi, bytes := lo, int64(0)
		for hi < len(idx) && (hi == lo || (hi-lo < maxCount-2 && bytes+txnCost(recs[hi]) < maxBytes)) {
			bytes += txnCost(recs[hi])
			hi++
		}
		err = f.st.Update(func(t *blockstore.Txn) error {
			for i := lo; i < hi; i++ {
				if recs[i] == nil {
					if err := t.DeleteBlock(ino, idx[i]); err != nil {
						return err
					}
					continue
				}
				if err := t.PutBlock(ino, idx[i], recs[i], blockstore.Meta(recs[i][1], f.level)); err != nil {
					return err
				}
			}
			return t.PutInode(s.attr)
		})
		if err != nil {
			err = fmt.Errorf("store blocks of inode %d: %w", ino, err)
			break
		}
		for i := lo; i < hi; i++ {
			b := idx[i]
			n := blockLen(size, b, f.bs)
			buf := snap[b]
			delete(snap, b)
			f.dirtyBytes.Add(-int64(cap(buf)))
			if recs[i] == nil {
				f.cache.store(ino, b, nil) // a hole
			} else {
				f.cache.store(ino, b, buf[:n:n])
			}
		}
		done = hi
	}
	if done < len(idx) {
		// Keep what was not stored dirty, unless written again meanwhile.
		for b, buf := range snap {
			if _, newer := s.dirty[b]; newer {
				f.dirtyBytes.Add(-int64(cap(buf)))
				continue
			}
			if s.dirty == nil {
				s.dirty = map[uint64][]byte{}
			}
			s.dirty[b] = buf
		}
	}
	if done > 0 {
		f.touch()
	}
	if err != nil {
		f.ctr.writeErrors.Add(1)
	}
	s.inflight = nil
	s.flushing = false
	s.flushDone.Broadcast()
	f.dirtyMu.Lock()
	delete(f.flushingNodes, s)
	if len(s.dirty) > 0 {
		f.dirtyNodes[s] = struct{}{}
	}
	f.dirtyMu.Unlock()
	return err
}

// txnCost estimates what storing rec adds to a transaction's size.
func txnCost(rec []byte) int64 {
	if len(rec) > blockstore.ValueThreshold {
		return 64
	}
	return int64(len(rec)) + 64
}

// statsJSON computes the store statistics for StatsXattr.
func (f *FS) statsJSON(ctx context.Context) ([]byte, error) {
	if err := f.FlushAll(ctx); err != nil {
		return nil, err
	}
	st, err := f.st.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(st)
}

// errno maps an error to the errno FUSE returns, logging unexpected ones.
func (f *FS) errno(op string, ino uint64, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, blockstore.ErrNotFound) {
		return syscall.ENOENT
	}
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	f.log.Error(op+" failed", "ino", ino, "err", err)
	return syscall.EIO
}
