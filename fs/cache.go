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
type blockCache struct {
	mu    sync.Mutex
	max   int64
	used  int64
	lru   *list.List
	items map[cacheKey]*list.Element
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

func (c *blockCache) put(ino, blk uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
