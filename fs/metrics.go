package fs

import (
	"sync/atomic"
	"time"

	"github.com/lmfs/lmfs/fs/sched"
)

// Direction says whether a block was encoded or decoded.
type Direction int

// The coding directions.
const (
	Encode Direction = iota
	Decode
)

// String is the direction's metric label.
func (d Direction) String() string {
	if d == Encode {
		return "encode"
	}
	return "decode"
}

// maxCodecs bounds codec ids (six bits of block UserMeta).
const maxCodecs = 64

// CodingCount is what was coded with one codec in one direction.
type CodingCount struct {
	Blocks   uint64        // blocks coded
	RawBytes uint64        // their decoded bytes
	Stored   uint64        // their stored record bytes
	Time     time.Duration // summed coding time over all workers
}

// Metrics is a snapshot of the filesystem's counters since New.
type Metrics struct {
	// Coded maps direction and codec id to what was coded.
	Coded map[Direction]map[byte]CodingCount
	// CacheHits and CacheMisses count block lookups of reads in the
	// decoded-block cache (dirty blocks are not counted).
	CacheHits, CacheMisses uint64
	// ReadAheadBlocks counts blocks decoded ahead of a sequential reader.
	ReadAheadBlocks uint64
	// DecodeErrors counts blocks that failed their checks on a read;
	// WriteErrors failed flushes (coding or storing dirty blocks).
	DecodeErrors, WriteErrors uint64
	// Queued and Running are the scheduler's jobs per priority now.
	Queued, Running [sched.NumPriorities]int
	// Recompress is what background recompression did.
	Recompress RecodeStats
	// DirtyBytes is the dirty data held in memory now.
	DirtyBytes int64
	// CacheBytes is the decoded-block cache's use now.
	CacheBytes int64
}

type codingCounter struct{ blocks, raw, stored, nanos atomic.Uint64 }

// counters are the FS's metric counters, updated lock-free.
type counters struct {
	coded                     [2][maxCodecs]codingCounter
	hits, misses, readAhead   atomic.Uint64
	decodeErrors, writeErrors atomic.Uint64
}

// coded records one block coded in direction d with codec id (from the
// record's header).
func (c *counters) add(d Direction, codec byte, raw, stored int, took time.Duration) {
	x := &c.coded[d][codec%maxCodecs]
	x.blocks.Add(1)
	x.raw.Add(uint64(raw))
	x.stored.Add(uint64(stored))
	x.nanos.Add(uint64(took))
}

// Metrics returns a snapshot of the counters (cheap: no store access).
func (f *FS) Metrics() Metrics {
	m := Metrics{
		Coded:           map[Direction]map[byte]CodingCount{Encode: {}, Decode: {}},
		CacheHits:       f.ctr.hits.Load(),
		CacheMisses:     f.ctr.misses.Load(),
		ReadAheadBlocks: f.ctr.readAhead.Load(),
		DecodeErrors:    f.ctr.decodeErrors.Load(),
		WriteErrors:     f.ctr.writeErrors.Load(),
		Recompress:      f.recoded.stats(),
		DirtyBytes:      f.dirtyBytes.Load(),
		CacheBytes:      f.cache.size(),
	}
	for d := range 2 {
		for id := range maxCodecs {
			x := &f.ctr.coded[d][id]
			if n := x.blocks.Load(); n > 0 {
				m.Coded[Direction(d)][byte(id)] = CodingCount{Blocks: n, RawBytes: x.raw.Load(), Stored: x.stored.Load(), Time: time.Duration(x.nanos.Load())}
			}
		}
	}
	m.Queued, m.Running = f.sched.Depth()
	return m
}
