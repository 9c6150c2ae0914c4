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
	// Workers is how many blocks are coded in parallel (0: one per core).
	Workers int
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
	sem   chan struct{}

	ns sync.RWMutex

	statesMu sync.Mutex
	states   map[uint64]*inodeState

	dirtyMu    sync.Mutex
	dirtyNodes map[*inodeState]struct{}
	dirtyBytes atomic.Int64
	dirtyLimit int64
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
	return &FS{
		st: o.Store, reg: o.Registry, ch: o.Chooser, bs: bs, log: o.Logger,
		cache:      newBlockCache(o.CacheSize),
		sem:        make(chan struct{}, o.Workers),
		states:     map[uint64]*inodeState{},
		dirtyNodes: map[*inodeState]struct{}{},
		dirtyLimit: o.WriteBuffer,
	}, nil
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
	opens int
	refs  int // go-fuse nodes pointing here; guarded by FS.statesMu
	path  string
}

// state returns the shared state of in.Ino, creating it from in if absent,
// and takes a reference for a new node.
func (f *FS) state(in blockstore.Inode) *inodeState {
	f.statesMu.Lock()
	defer f.statesMu.Unlock()
	s := f.states[in.Ino]
	if s == nil {
		s = &inodeState{attr: in}
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
	busy := s.opens > 0 || len(s.dirty) > 0
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

// overLimit flushes other files' dirty blocks while the global write buffer
// bound is exceeded. The caller must hold no inode lock.
func (f *FS) overLimit(ctx context.Context) error {
	for f.dirtyBytes.Load() > f.dirtyLimit {
		f.dirtyMu.Lock()
		var victim *inodeState
		for s := range f.dirtyNodes {
			victim = s
			break
		}
		f.dirtyMu.Unlock()
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
		errs = append(errs, f.flushLocked(ctx, s))
		s.mu.Unlock()
	}
	errs = append(errs, f.st.Sync())
	return errors.Join(errs...)
}

// DirtyBytes reports the dirty data held in memory.
func (f *FS) DirtyBytes() int64 { return f.dirtyBytes.Load() }

// flushLocked codes and stores s's dirty blocks with its inode record. The
// blocks are coded in parallel by up to Options.Workers goroutines.
func (f *FS) flushLocked(ctx context.Context, s *inodeState) error {
	if len(s.dirty) == 0 {
		f.dirtyMu.Lock()
		delete(f.dirtyNodes, s)
		f.dirtyMu.Unlock()
		return nil
	}
	ino := s.attr.Ino
	size := s.attr.Size
	idx := make([]uint64, 0, len(s.dirty))
	for b := range s.dirty {
		idx = append(idx, b)
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	recs := make([][]byte, len(idx))
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for i, b := range idx {
		n := blockLen(size, b, f.bs)
		data := s.dirty[b][:n]
		if n == 0 || allZero(data) {
			continue // hole: delete
		}
		f.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-f.sem; wg.Done() }()
			recs[i], errs[i] = f.ch.Encode(ctx, nil, data)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("code blocks of inode %d: %w", ino, err)
	}
	const perTxn = 256
	for lo := 0; lo < len(idx); lo += perTxn {
		hi := min(lo+perTxn, len(idx))
		err := f.st.Update(func(t *blockstore.Txn) error {
			for i := lo; i < hi; i++ {
				if recs[i] == nil {
					if err := t.DeleteBlock(ino, idx[i]); err != nil {
						return err
					}
					continue
				}
				if err := t.PutBlock(ino, idx[i], recs[i], recs[i][1]); err != nil {
					return err
				}
			}
			return t.PutInode(s.attr)
		})
		if err != nil {
			return fmt.Errorf("store blocks of inode %d: %w", ino, err)
		}
		for i := lo; i < hi; i++ {
			b := idx[i]
			n := blockLen(size, b, f.bs)
			buf := s.dirty[b]
			delete(s.dirty, b)
			f.dirtyBytes.Add(-int64(cap(buf)))
			if recs[i] == nil {
				f.cache.put(ino, b, nil) // a hole
			} else {
				f.cache.put(ino, b, buf[:n:n])
			}
		}
	}
	f.dirtyMu.Lock()
	delete(f.dirtyNodes, s)
	f.dirtyMu.Unlock()
	return nil
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
