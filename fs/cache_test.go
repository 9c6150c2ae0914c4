package fs

import "testing"

func TestBlockCacheEvictsLRUWithinBound(t *testing.T) {
	c := newBlockCache(3 * 164)
	for i := uint64(0); i < 3; i++ {
		c.put(1, i, make([]byte, 100))
	}
	if _, ok := c.get(1, 0); !ok { // 0 becomes most recent
		t.Fatal("block 0 missing")
	}
	c.put(2, 0, make([]byte, 100)) // evicts 1/1
	if _, ok := c.get(1, 1); ok {
		t.Fatal("least recently used block not evicted")
	}
	for _, k := range []cacheKey{{1, 0}, {1, 2}, {2, 0}} {
		if _, ok := c.get(k.ino, k.blk); !ok {
			t.Fatalf("block %v evicted", k)
		}
	}
	if c.size() != 3*164 {
		t.Fatalf("size %d", c.size())
	}
	c.put(1, 0, make([]byte, 50)) // replace shrinks
	if c.size() != 2*164+114 {
		t.Fatalf("size after replace %d", c.size())
	}
	c.dropFrom(1, 1)
	if _, ok := c.get(1, 2); ok {
		t.Fatal("dropFrom left block 2")
	}
	if _, ok := c.get(1, 0); !ok {
		t.Fatal("dropFrom removed block 0")
	}
	c.put(3, 0, make([]byte, 1000)) // larger than the cache: not kept
	if _, ok := c.get(3, 0); ok || c.size() > 3*164 {
		t.Fatal("oversized block cached")
	}
}

// TestBlockCacheGenerations: a read-ahead fill decoded before a flush or a
// truncate changed the inode's blocks is dropped; one decoded after is kept.
func TestBlockCacheGenerations(t *testing.T) {
	c := newBlockCache(1 << 20)
	for _, change := range []struct {
		name string
		do   func()
	}{
		{"flush", func() { c.store(7, 0, []byte("new")) }},
		{"truncate", func() { c.dropFrom(7, 0) }},
	} {
		g := c.gen(7)
		other := c.gen(8)
		change.do()
		if c.putIfGen(7, 1, []byte("stale"), g) || c.has(7, 1) {
			t.Errorf("%s: a fill from before it was cached", change.name)
		}
		if !c.putIfGen(8, 1, []byte("other inode"), other) {
			t.Errorf("%s: a fill of another inode was dropped", change.name)
		}
		if !c.putIfGen(7, 1, []byte("fresh"), c.gen(7)) {
			t.Errorf("%s: a fill from after it was dropped", change.name)
		}
		c.dropFrom(7, 1)
	}
}
