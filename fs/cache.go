package fs

import (
	"container/list"
	"sync"
)

type cacheKey struct{ ino, blk uint64 }

type cacheEntry struct {
	key  cacheKey
	data []byte
}

// blockCache holds decoded blocks, least recently used evicted first, bounded
// in bytes. Cached slices are never modified after insertion. It is safe for
// concurrent use.
//
// Generations guard fills that decode without the inode lock (read-ahead):
// every change of an inode's stored blocks (a flush storing them, a
// truncate dropping them) bumps the generation of the inode's stripe, and
// putIfGen stores a block only if the generation it read the store under is
// still current.
type blockCache struct {
	mu    sync.Mutex
	max   int64
	used  int64
	lru   *list.List
	items map[cacheKey]*list.Element
	gens  [genStripes]uint64
}

const genStripes = 256

// gen returns the current generation of ino's stripe.
func (c *blockCache) gen(ino uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[ino%genStripes]
}

// putIfGen stores a block decoded from what the store held at generation
// gen, unless ino's blocks changed since; it reports whether it stored it.
func (c *blockCache) putIfGen(ino, blk uint64, data []byte, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[ino%genStripes] != gen {
		return false
	}
	c.putLocked(ino, blk, data)
	return true
}

// has reports whether block blk of ino is cached, without touching the LRU.
func (c *blockCache) has(ino, blk uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[cacheKey{ino, blk}]
	return ok
}

func newBlockCache(max int64) *blockCache {
	return &blockCache{max: max, lru: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *blockCache) get(ino, blk uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[cacheKey{ino, blk}]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).data, true
}

// put stores a block read under the inode lock (a read's fill).
func (c *blockCache) put(ino, blk uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(ino, blk, data)
}

// store stores a block whose stored record just changed (a flush), so that
// read-ahead decodes of the old record are dropped.
func (c *blockCache) store(ino, blk uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[ino%genStripes]++
	c.putLocked(ino, blk, data)
}

func (c *blockCache) putLocked(ino, blk uint64, data []byte) {
	k := cacheKey{ino, blk}
	if e, ok := c.items[k]; ok {
		c.used -= cost(e.Value.(*cacheEntry).data)
		c.lru.Remove(e)
		delete(c.items, k)
	}
	if cost(data) > c.max {
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, data: data})
	c.used += cost(data)
	for c.used > c.max {
		e := c.lru.Back()
		ce := e.Value.(*cacheEntry)
		c.lru.Remove(e)
		delete(c.items, ce.key)
		c.used -= cost(ce.data)
	}
}

// dropFrom removes the blocks of ino numbered from or more.
func (c *blockCache) dropFrom(ino, from uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[ino%genStripes]++
	for k, e := range c.items {
		if k.ino == ino && k.blk >= from {
			c.used -= cost(e.Value.(*cacheEntry).data)
			c.lru.Remove(e)
			delete(c.items, k)
		}
	}
}

func (c *blockCache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// cost is what an entry counts against the bound (the data and bookkeeping).
func cost(b []byte) int64 { return int64(cap(b)) + 64 }
