package fs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/fs/sched"
)

// Open opens the file; O_TRUNC truncates it.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	f := n.fsys
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if flags&syscall.O_TRUNC != 0 && s.attr.Mode&syscall.S_IFMT == syscall.S_IFREG && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		if s.attr.Size != 0 {
			if err := f.truncateLocked(ctx, n, 0); err != nil {
				return nil, 0, f.errno("open", n.ino, err)
			}
			ts := now()
			s.attr.Mtime, s.attr.Ctime = ts, ts
			if err := f.putInode(s); err != nil {
				return nil, 0, f.errno("open", n.ino, err)
			}
		}
	}
	s.opens++
	return &handle{}, fuse.FOPEN_KEEP_CACHE, 0
}

// Release closes a handle; the last one flushes, and purges an unlinked file.
func (n *node) Release(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	f := n.fsys
	s := n.s
	s.mu.Lock()
	s.opens--
	last := s.opens == 0
	var err error
	if last && s.attr.Nlink > 0 {
		err = f.flushLocked(context.Background(), s)
	}
	gone := last && s.attr.Nlink == 0
	s.mu.Unlock()
	if gone {
		f.purge(n.ino)
		return 0
	}
	return f.errno("release", n.ino, err)
}

// Flush (every close) writes the file's dirty blocks to the store, so that
// close reports errors such as ENOSPC.
func (n *node) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	ctx = uninterruptible(ctx)
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attr.Nlink == 0 {
		return 0
	}
	return n.fsys.errno("flush", n.ino, n.fsys.flushLocked(ctx, s))
}

// Fsync makes the file's data and metadata durable.
func (n *node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	f := n.fsys
	s := n.s
	s.mu.Lock()
	err := f.flushLocked(ctx, s)
	if err == nil && s.attr.Nlink > 0 {
		err = f.putInode(s)
	}
	s.mu.Unlock()
	if err == nil {
		err = f.st.Sync()
	}
	return f.errno("fsync", n.ino, err)
}

// decodeCall is a decode of one block in progress; done is closed when
// data and err are set. gen is the cache generation its record was read at.
type decodeCall struct {
	done chan struct{}
	gen  uint64
	data []byte
	err  error
}

// startDecode registers a decode of (ino, blk) at generation gen, or returns
// the one in progress (and false).
func (f *FS) startDecode(k cacheKey, gen uint64) (*decodeCall, bool) {
	f.decMu.Lock()
	defer f.decMu.Unlock()
	if c := f.decoding[k]; c != nil {
		return c, false
	}
	c := &decodeCall{done: make(chan struct{}), gen: gen}
	f.decoding[k] = c
	return c, true
}

func (f *FS) endDecode(k cacheKey, c *decodeCall, data []byte, err error) {
	f.decMu.Lock()
	delete(f.decoding, k)
	f.decMu.Unlock()
	c.data, c.err = data, err
	close(c.done)
}

// getRecord reads the stored record of block blk of ino (nil: a hole).
func (f *FS) getRecord(ino, blk uint64) ([]byte, error) {
	var rec []byte
	err := f.st.View(func(t *blockstore.Txn) error {
		var err error
		rec, err = t.GetBlock(ino, blk)
		return err
	})
	if errors.Is(err, blockstore.ErrNotFound) {
		return nil, nil
	}
	return rec, err
}

// readBlock returns the decoded contents of stored block blk (nil for a
// hole), decoded by the coding scheduler at read priority. A block that
// fails its checks is an EIO error, logged with the inode, path and block.
// The caller holds s.mu.
func (f *FS) readBlock(ctx context.Context, n *node, blk uint64) ([]byte, error) {
	if b, ok := f.cache.get(n.ino, blk); ok {
		f.ctr.hits.Add(1)
		return b, nil
	}
	k := cacheKey{n.ino, blk}
	gen := f.cache.gen(n.ino)
	c, mine := f.startDecode(k, gen)
	if !mine {
		// A read-ahead (or another reader) is decoding it: its result is
		// good if it read the record after the last change of the
		// inode's blocks (we hold s.mu, so none can happen now).
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.err == nil && c.gen == gen {
			f.ctr.hits.Add(1)
			return c.data, nil
		}
		if c, mine = f.startDecode(k, gen); !mine {
			return f.decodeBlock(ctx, n, blk) // rare: decode on our own
		}
	}
	if b, ok := f.cache.get(n.ino, blk); ok {
		// A decode ended between our look and our registration.
		f.ctr.hits.Add(1)
		f.endDecode(k, c, b, nil)
		return b, nil
	}
	data, err := f.decodeBlock(ctx, n, blk)
	f.endDecode(k, c, data, err)
	return data, err
}

// decodeBlock reads and decodes block blk of n and caches it.
func (f *FS) decodeBlock(ctx context.Context, n *node, blk uint64) ([]byte, error) {
	f.ctr.misses.Add(1)
	rec, err := f.getRecord(n.ino, blk)
	if err != nil || rec == nil {
		return nil, err
	}
	data, err := f.code(ctx, sched.Read, &CodeTask{Dir: Decode, In: rec}, nil)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, sched.ErrClosed) {
			return nil, err
		}
		f.ctr.decodeErrors.Add(1)
		f.log.Error("block is damaged; reads of its range fail with EIO", "ino", n.ino, "path", n.path(), "block", blk, "offset", blk*uint64(f.bs), "err", err)
		return nil, fmt.Errorf("%w: block %d of inode %d: %v", syscall.EIO, blk, n.ino, err)
	}
	f.cache.put(n.ino, blk, data)
	return data, nil
}

// readBlocks returns the contents of the blocks of spans: dirty ones from
// memory, the others through readBlock, in parallel when several must be
// decoded (a large read of a slow codec runs at the scheduler's parallel
// throughput). The caller holds n.s.mu.
func (f *FS) readBlocks(ctx context.Context, n *node, spans []Span) ([][]byte, error) {
	s := n.s
	out := make([][]byte, len(spans))
	var missing []int
	for i, sp := range spans {
		if b, ok := s.block(sp.Block); ok {
			out[i] = b
		} else if b, ok := f.cache.get(n.ino, sp.Block); ok {
			f.ctr.hits.Add(1)
			out[i] = b
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 1 {
		var err error
		out[missing[0]], err = f.readBlock(ctx, n, spans[missing[0]].Block)
		return out, err
	}
	errs := make([]error, len(spans))
	var wg sync.WaitGroup
	for _, i := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = f.readBlock(ctx, n, spans[i].Block)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first in file order
		}
	}
	return out, nil
}

// dirtyBlock returns the writable buffer of block blk, reading its current
// contents first when load is set. The caller holds s.mu for writing.
func (f *FS) dirtyBlock(ctx context.Context, n *node, blk uint64, load bool) ([]byte, error) {
	s := n.s
	if b, ok := s.dirty[blk]; ok {
		return b, nil
	}
	buf := make([]byte, f.bs)
	if load && blk*uint64(f.bs) < s.attr.Size {
		old, ok := s.inflight[blk]
		if !ok {
			var err error
			if old, err = f.readBlock(ctx, n, blk); err != nil {
				return nil, err
			}
		}
		copy(buf, old)
	}
	if s.dirty == nil {
		s.dirty = map[uint64][]byte{}
	}
	s.dirty[blk] = buf
	f.markDirty(s, int64(cap(buf)))
	return buf, nil
}

// Read reads from the dirty blocks, the block cache or the store.
func (n *node) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	ctx = uninterruptible(ctx)
	f := n.fsys
	s := n.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	size := s.attr.Size
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if uint64(off) >= size {
		return fuse.ReadResultData(nil), 0
	}
	end := min(uint64(off)+uint64(len(dest)), size)
	if h, ok := fh.(*handle); ok && f.ra > 0 {
		f.readAhead(n, h, uint64(off), end, size)
	}
	spans := Spans(uint64(off), int(end-uint64(off)), f.bs)
	blocks, err := f.readBlocks(ctx, n, spans)
	if err != nil {
		return nil, f.errno("read", n.ino, err)
	}
	pos := 0
	for i, sp := range spans {
		src := blocks[i]
		dst := dest[pos : pos+sp.Len]
		c := 0
		if sp.Skip < len(src) {
			c = copy(dst, src[sp.Skip:])
		}
		clear(dst[c:])
		pos += sp.Len
	}
	return fuse.ReadResultData(dest[:pos]), 0
}

// Write copies data into the inode's dirty blocks (read-modify-write for
// partial blocks, under the inode lock every handle shares).
func (n *node) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	f := n.fsys
	s := n.s
	if off < 0 {
		return 0, syscall.EINVAL
	}
	s.mu.Lock()
	pos := 0
	for _, sp := range Spans(uint64(off), len(data), f.bs) {
		buf, err := f.dirtyBlock(ctx, n, sp.Block, sp.Len != f.bs)
		if err != nil {
			s.mu.Unlock()
			return uint32(pos), f.errno("write", n.ino, err)
		}
		copy(buf[sp.Skip:sp.Skip+sp.Len], data[pos:])
		pos += sp.Len
	}
	if end := uint64(off) + uint64(len(data)); end > s.attr.Size {
		s.attr.Size = end
	}
	ts := now()
	s.attr.Mtime, s.attr.Ctime = ts, ts
	s.mu.Unlock()
	if err := f.noteWrite(ctx); err != nil {
		return 0, f.errno("write", n.ino, err)
	}
	return uint32(len(data)), 0
}

// truncateLocked sets the size of n's file. Blocks past the new end are
// deleted from the store before the smaller size is stored, and the new last
// block is cut, so no stale byte can come back when the file grows again.
// The caller holds s.mu for writing.
func (f *FS) truncateLocked(ctx context.Context, n *node, size uint64) error {
	s := n.s
	s.waitFlush()
	old := s.attr.Size
	if size >= old {
		s.attr.Size = size
		return nil
	}
	keep := blocksFor(size, f.bs)
	for b, buf := range s.dirty {
		if b >= keep {
			delete(s.dirty, b)
			f.dirtyBytes.Add(-int64(cap(buf)))
		}
	}
	if r := int(size % uint64(f.bs)); r != 0 {
		buf, err := f.dirtyBlock(ctx, n, size/uint64(f.bs), true)
		if err != nil {
			return err
		}
		clear(buf[r:])
	}
	f.cache.dropFrom(n.ino, keep)
	if err := f.st.DeleteBlocksFrom(n.ino, keep); err != nil {
		return err
	}
	s.attr.Size = size
	return f.flushLocked(ctx, s)
}

// Allocate implements fallocate mode 0 (extend the size; blocks stay holes
// until written) and FALLOC_FL_KEEP_SIZE (a no-op: space is not reserved).
func (n *node) Allocate(ctx context.Context, fh gofs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	const keepSize = 0x1
	if mode&^keepSize != 0 {
		return syscall.EOPNOTSUPP
	}
	if mode&keepSize != 0 {
		return 0
	}
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if end := off + size; end > s.attr.Size {
		s.attr.Size = end
		s.attr.Ctime = now()
		return n.fsys.errno("fallocate", n.ino, n.fsys.putInode(s))
	}
	return 0
}

// Lseek implements SEEK_DATA and SEEK_HOLE at block granularity.
func (n *node) Lseek(ctx context.Context, fh gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	f := n.fsys
	s := n.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	size := s.attr.Size
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	if off >= size {
		return 0, syscall.ENXIO
	}
	bs := uint64(f.bs)
	first := off / bs
	nblk := blocksFor(size, f.bs)
	var stored []uint64
	_ = f.st.View(func(t *blockstore.Txn) error {
		if whence == seekData {
			if b, ok := t.NextBlock(n.ino, first); ok {
				stored = []uint64{b}
			}
			return nil
		}
		stored = t.BlockNumbers(n.ino, first, nblk)
		return nil
	})
	if whence == seekData {
		best := uint64(1<<64 - 1)
		if len(stored) > 0 {
			best = stored[0]
		}
		for _, m := range []map[uint64][]byte{s.dirty, s.inflight} {
			for b := range m {
				if b >= first && b < best {
					best = b
				}
			}
		}
		if best >= nblk {
			return 0, syscall.ENXIO
		}
		return max(off, best*bs), 0
	}
	isData := map[uint64]bool{}
	for _, b := range stored {
		isData[b] = true
	}
	b := first
	for b < nblk && (isData[b] || s.dirty[b] != nil || s.inflight[b] != nil) {
		b++
	}
	return max(off, min(b*bs, size)), 0
}

// uninterruptible keeps ctx's values but drops its cancellation. go-fuse
// cancels a request's context when the kernel forwards an interrupt, which it
// does for any signal the calling thread gets (for a Go program, the
// runtime's preemption signal, many times a second). A read, write, close or
// fsync of a regular file is not expected to fail with EINTR, and callers do
// not retry close, so the data operations run to completion instead.
func uninterruptible(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }
