package fs

import (
	"context"
	"errors"
	"sync"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/fs/sched"
)

// seqSlack is how far (in bytes) a read may start from where the handle's
// previous read ended and still count as sequential: the kernel sends a
// sequential reader's requests from several threads, so they can arrive a
// little out of order.
const seqSlack = 256 << 10

// errAlreadyCached ends a read-ahead that found its block cached; a reader
// waiting for it looks in the cache again.
var errAlreadyCached = errors.New("block already cached")

// readAheadState is one open handle's read pattern.
type readAheadState struct {
	mu     sync.Mutex
	next   uint64 // where the last read ended
	streak int    // sequential reads in a row
	sched  uint64 // blocks below this were already scheduled
}

// readAhead notes a read of [off, end) through h and, once the handle reads
// sequentially (a read starting where the last ended, give or take
// seqSlack, or a first read at offset 0), has the coding scheduler decode up
// to f.ra blocks past end
// into the cache at read-ahead priority. Random reads schedule nothing. The
// caller holds n.s.mu for reading.
func (f *FS) readAhead(n *node, h *handle, off, end, size uint64) {
	r := &h.ra
	r.mu.Lock()
	seq := r.next > 0 && off+seqSlack >= r.next && off <= r.next+seqSlack
	// A handle's first read at offset 0 starts a sequential stream too (cat,
	// cp, cmp and tar read from the start), with a quarter of the window
	// until a second read confirms it. Waiting for that second read costs a
	// whole decode batch on a GPU, seconds for blocks of 64 KiB.
	start := !seq && r.next == 0 && off == 0 && end > 0
	if seq {
		r.streak++
	} else {
		r.streak = 0
		r.sched = 0
	}
	r.next = max(r.next, end)
	if !seq {
		r.next = end
	}
	bs := uint64(f.bs)
	first := max((end+bs-1)/bs, r.sched)
	// The window: f.ra blocks, or two reads' worth if reads are larger.
	ra := uint64(f.ra)
	if start {
		ra = max(1, ra/4)
	}
	window := max(ra, 2*((end-off+bs-1)/bs))
	window = min(window, uint64(f.raMax))
	last := min((end+bs-1)/bs+window, blocksFor(size, f.bs)) // exclusive
	if (r.streak < 1 && !start) || first >= last {
		r.mu.Unlock()
		return
	}
	r.sched = last
	r.mu.Unlock()
	// Read the records now, under the caller's inode lock, so that the
	// generation they were read at is known; the jobs only decode.
	s := n.s
	ino := n.ino
	gen := f.cache.gen(ino)
	for blk := first; blk < last; blk++ {
		if _, dirty := s.block(blk); dirty || f.cache.has(ino, blk) {
			continue
		}
		rec, err := f.getRecord(ino, blk)
		if err != nil || len(rec) < 2 {
			continue // a hole, or an error the read of the block reports
		}
		if !f.startReadAhead(ino, blk, rec, gen) {
			return // shutting down
		}
	}
}

// startReadAhead queues the decode of rec, block blk of ino as stored at
// cache generation gen, into the cache. While the job waits, a read of the
// block decodes it itself; once the job runs, such a read waits for it. The
// result is dropped if the inode's blocks changed since gen. It reports
// false when the scheduler is closed.
func (f *FS) startReadAhead(ino, blk uint64, rec []byte, gen uint64) bool {
	k := cacheKey{ino, blk}
	var call *decodeCall
	t := &CodeTask{Dir: Decode, In: rec}
	run := func(ctx context.Context) error {
		if f.cache.has(ino, blk) || f.cache.gen(ino) != gen {
			return errAlreadyCached
		}
		c, mine := f.startDecode(k, gen)
		if !mine {
			return errAlreadyCached
		}
		call = c
		if f.cache.has(ino, blk) { // a read decoded it meanwhile
			return errAlreadyCached
		}
		var err error
		t.Out, err = f.decode(ctx, rec)
		return err
	}
	then := func(err error) {
		if err == nil {
			f.ctr.readAhead.Add(1)
			f.cache.putIfGen(ino, blk, t.Out, gen)
		}
		// A failed read-ahead is not logged: the read of the block, if
		// it comes, decodes it again and reports the error.
		if call != nil {
			f.endDecode(k, call, t.Out, err)
		}
	}
	_, err := f.sched.Submit(f.ctx, sched.ReadAhead, sched.Task{Key: DecodeKey(f.reg, coder.ID(rec[1])), Payload: t, Run: run, Then: then})
	return err == nil
}
