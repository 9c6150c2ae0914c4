// Package blockstore keeps everything lmfs stores in Badger: the superblock,
// inode records, directory entries, block records, extended attributes,
// symlink targets and the orphan list. The key layout is in KEYS.md.
package blockstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// FormatVersion is the store format this build writes and the newest it reads.
const FormatVersion = 1

// RootIno is the inode number of the root directory.
const RootIno = 1

// ValueThreshold is the largest value Badger keeps in its LSM tree; larger
// ones (most block records) go to the value log, and count in a
// transaction's size only by a small pointer.
const ValueThreshold = 512

// inoBatch is how many inode numbers are reserved per counter update.
const inoBatch = 256

// ErrNotFound is returned when a key (inode, entry, block, xattr) is absent.
var ErrNotFound = errors.New("not found")

// ErrInUse is returned by Open when another process holds the store.
var ErrInUse = errors.New("store in use")

// Options configures Open.
type Options struct {
	// Dir is the store directory; it is created if missing.
	Dir string
	// BlockSize is the logical block size written into a new store's
	// superblock. An existing store keeps its own.
	BlockSize int
	// MemTableSize is Badger's memtable size in bytes.
	MemTableSize int64
	// SyncWrites makes every commit durable (otherwise only Sync is).
	SyncWrites bool
	// GCInterval is how often value-log GC runs; 0 disables it.
	GCInterval time.Duration
	// ValueLogFileSize is the size of Badger's value-log files (default
	// 128 MiB); space is given back a whole file at a time.
	ValueLogFileSize int64
	// Logger receives the store's and Badger's log lines; nil means slog.Default().
	Logger *slog.Logger
}

// Store is an open lmfs store. It is safe for concurrent use.
type Store struct {
	dir       string
	db        *badger.DB
	lock      *os.File
	blockSize int
	memTable  int64
	log       *slog.Logger

	// garbage counts value bytes deleted (or replaced) since the last
	// compaction, to decide when value-log GC needs one first.
	garbage atomic.Int64

	inoMu    sync.Mutex
	inoNext  uint64
	inoLimit uint64

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Open opens (or creates) the store in o.Dir. It refuses a store written in a
// newer format and a store another process has open, naming that process.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.BlockSize == 0 {
		o.BlockSize = 64 << 10
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = 128 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 16 << 20
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	lock, err := lockStore(o.Dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: o.Dir, lock: lock, memTable: o.MemTableSize, log: o.Logger.With("store", o.Dir), stop: make(chan struct{})}
	bo := badger.DefaultOptions(filepath.Join(o.Dir, "badger")).
		WithLogger(badgerLogger{s.log}).
		WithSyncWrites(o.SyncWrites).
		WithNumVersionsToKeep(1).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(o.MemTableSize / 2).
		WithValueThreshold(ValueThreshold).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(8 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(bo)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open Badger database in %s: %w", bo.Dir, err)
	}
	s.db = db
	if err := s.initSuper(o.BlockSize); err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	if o.GCInterval > 0 {
		s.wg.Add(1)
		go s.gcLoop(o.GCInterval)
	}
	if err := s.CleanOrphans(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("clean orphaned inodes: %w", err)
	}
	return s, nil
}

// Exists reports whether dir holds a store (without opening it).
func Exists(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "badger"))
	return err == nil && st.IsDir()
}

// lockStore takes the store's pid file lock, or says which process holds it.
func lockStore(dir string) (*os.File, error) {
	p := filepath.Join(dir, "lmfs.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(p)
		f.Close()
		pid := strings.TrimSpace(string(b))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("%w: store %s is open in lmfs process %s; unmount it (lmfs umount MOUNTPOINT) or stop that process first", ErrInUse, dir, pid)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func (s *Store) initSuper(blockSize int) error {
	return s.Update(func(t *Txn) error {
		item, err := t.t.Get([]byte{pSuper})
		if errors.Is(err, badger.ErrKeyNotFound) {
			sb := make([]byte, 12)
			copy(sb, "LMFS")
			binary.BigEndian.PutUint32(sb[4:], FormatVersion)
			binary.BigEndian.PutUint32(sb[8:], uint32(blockSize))
			if err := t.t.Set([]byte{pSuper}, sb); err != nil {
				return err
			}
			now := time.Now().UnixNano()
			root := Inode{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid()), Nlink: 2, Atime: now, Mtime: now, Ctime: now}
			if err := t.PutInode(root); err != nil {
				return err
			}
			s.blockSize = blockSize
			return t.t.Set([]byte{pCounter}, be64(RootIno+1))
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 12 || string(v[:4]) != "LMFS" {
				return fmt.Errorf("store %s has no valid lmfs superblock: it is not an lmfs store or it is damaged", s.dir)
			}
			ver := binary.BigEndian.Uint32(v[4:])
			if ver > FormatVersion {
				return fmt.Errorf("store %s has format version %d but this lmfs reads up to version %d: use a newer lmfs", s.dir, ver, FormatVersion)
			}
			s.blockSize = int(binary.BigEndian.Uint32(v[8:]))
			return nil
		})
	})
}

// Reserve is the free space kept on the store's filesystem: Badger writes
// its memtable log, value log and tables through mmap, where a full disk is
// a SIGBUS instead of an error, so lmfs refuses new data (ENOSPC) while
// Badger still has room for a memtable flush and a compaction.
func (s *Store) Reserve() int64 {
	lsm, _ := s.db.Size()
	return 2*s.memTable + 16<<20 + lsm
}

// SpaceFor returns an error wrapping syscall.ENOSPC when storing need more
// bytes would eat into Reserve.
func (s *Store) SpaceFor(need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return fmt.Errorf("statfs of the store directory: %w", err)
	}
	avail := int64(st.Bavail) * int64(st.Bsize)
	if avail < need+s.Reserve() {
		return fmt.Errorf("%w: the store's filesystem has %d bytes free, %d more are needed plus %d kept free for the store's own work; delete files or give the store more space", syscall.ENOSPC, avail, need, s.Reserve())
	}
	return nil
}

// TxnLimits returns how many entries and bytes one transaction may safely
// hold (half of Badger's limits, which scale with the memtable size).
func (s *Store) TxnLimits() (count int, bytes int64) {
	return int(s.db.MaxBatchCount() / 2), s.db.MaxBatchSize() / 2
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// BlockSize returns the store's logical block size.
func (s *Store) BlockSize() int { return s.blockSize }

// Sync makes every committed transaction durable.
func (s *Store) Sync() error {
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("sync store %s: %w", s.dir, err)
	}
	return nil
}

// Close stops value-log GC, closes Badger and releases the store lock.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		err = s.db.Close()
		_ = s.lock.Truncate(0) // no process holds the store any more
		s.lock.Close()
	})
	return err
}

func (s *Store) gcLoop(every time.Duration) {
	defer s.wg.Done()
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tk.C:
			s.RunGC()
		}
	}
}

// gcCompactAfter is how many deleted value bytes make RunGC compact the LSM
// tree first: Badger learns which value-log bytes are garbage only when
// compaction drops the deleted keys, so without this a deleted file's space
// could wait for unrelated write activity.
const gcCompactAfter = 64 << 20

// RunGC runs Badger's value-log GC until it finds nothing more to rewrite,
// returning the number of value-log files rewritten. When much was deleted
// since the last run it first flushes the memtable and compacts the LSM tree
// so that the garbage is known.
func (s *Store) RunGC() int {
	if g := s.garbage.Load(); g >= gcCompactAfter {
		s.garbage.Add(-g)
		if err := s.compact(); err != nil {
			s.log.Warn("compaction before value-log GC failed", "err", err)
		}
	}
	n := 0
	for {
		select {
		case <-s.stop:
			return n
		default:
		}
		if err := s.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("value-log GC failed", "err", err)
			}
			return n
		}
		n++
		s.log.Debug("value-log GC rewrote a file")
	}
}

// compact flushes the memtable (DropPrefix of a marker key does that) and
// compacts every level into the last, recording value-log garbage.
func (s *Store) compact() error {
	marker := []byte{pGCMarker}
	if err := s.db.Update(func(t *badger.Txn) error { return t.Set(marker, nil) }); err != nil {
		return err
	}
	if err := s.db.DropPrefix(marker); err != nil {
		return err
	}
	return s.db.Flatten(1)
}

// Update runs fn in a read-write transaction and commits it, retrying on
// conflicts with concurrent transactions. fn may run more than once.
func (s *Store) Update(fn func(*Txn) error) error {
	for attempt := 0; ; attempt++ {
		var deleted int64
		err := s.db.Update(func(bt *badger.Txn) error {
			t := &Txn{t: bt, s: s}
			err := fn(t)
			deleted = t.deleted
			return err
		})
		if errors.Is(err, badger.ErrConflict) && attempt < 100 {
			time.Sleep(time.Duration(attempt+1) * 100 * time.Microsecond)
			continue
		}
		if err == nil && deleted > 0 {
			s.garbage.Add(deleted)
		}
		return mapErr(err)
	}
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Txn) error) error {
	return mapErr(s.db.View(func(bt *badger.Txn) error { return fn(&Txn{t: bt, s: s}) }))
}

// mapErr turns an out-of-space error into ENOSPC so the writer sees it.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) {
		return err
	}
	if strings.Contains(err.Error(), "no space left on device") {
		return fmt.Errorf("%w: %v", syscall.ENOSPC, err)
	}
	return err
}

// AllocIno returns a new, never used inode number.
func (s *Store) AllocIno() (uint64, error) {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	if s.inoNext == s.inoLimit {
		var next uint64
		err := s.Update(func(t *Txn) error {
			item, err := t.t.Get([]byte{pCounter})
			if err != nil {
				return fmt.Errorf("read inode counter: %w", err)
			}
			v, err := item.ValueCopy(nil)
			if err != nil || len(v) != 8 {
				return fmt.Errorf("inode counter is damaged (%d bytes, %v)", len(v), err)
			}
			next = binary.BigEndian.Uint64(v)
			return t.t.Set([]byte{pCounter}, be64(next+inoBatch))
		})
		if err != nil {
			return 0, err
		}
		s.inoNext, s.inoLimit = next, next+inoBatch
	}
	n := s.inoNext
	s.inoNext++
	return n, nil
}

// badgerLogger sends Badger's log lines to slog; its chatty info lines go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {}
