package blockstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestMetaPacking(t *testing.T) {
	for _, c := range []struct {
		codec byte
		level uint8
	}{{0, LevelFast}, {1, LevelFast}, {3, LevelBalanced}, {5, LevelMax}, {63, 3}} {
		m := Meta(c.codec, c.level)
		if MetaCodec(m) != c.codec || MetaLevel(m) != c.level {
			t.Errorf("Meta(%d, %d) = %#x unpacks to codec %d level %d", c.codec, c.level, m, MetaCodec(m), MetaLevel(m))
		}
	}
}

// putFile stores a regular file ino of size bytes with blocks 0..n-1 holding
// recs[i], coded with codec 1 at LevelFast.
func putFile(t *testing.T, s *Store, ino uint64, size uint64, recs ...[]byte) {
	t.Helper()
	err := s.Update(func(tx *Txn) error {
		if err := tx.PutInode(Inode{Ino: ino, Mode: syscall.S_IFREG | 0o644, Nlink: 1, Size: size}); err != nil {
			return err
		}
		for i, r := range recs {
			if err := tx.PutBlock(ino, uint64(i), r, Meta(1, LevelFast)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getBlock(t *testing.T, s *Store, ino, blk uint64) ([]byte, byte, error) {
	t.Helper()
	rec, meta, _, err := s.GetBlockVersion(ino, blk)
	return rec, meta, err
}

// TestReplaceBlockIf checks that the swap happens only when nothing touched
// the block since it was read, and that a write, truncate or purge wins.
func TestReplaceBlockIf(t *testing.T) {
	cases := []struct {
		name      string
		meanwhile func(t *testing.T, s *Store)
		replaced  bool
		want      string // the block's record afterwards; "" means absent
	}{
		{"untouched", func(*testing.T, *Store) {}, true, "new"},
		{"rewritten with other bytes", func(t *testing.T, s *Store) {
			if err := s.Update(func(tx *Txn) error { return tx.PutBlock(2, 0, []byte("write"), Meta(1, LevelFast)) }); err != nil {
				t.Fatal(err)
			}
		}, false, "write"},
		{"rewritten with the same bytes", func(t *testing.T, s *Store) {
			if err := s.Update(func(tx *Txn) error { return tx.PutBlock(2, 0, []byte("old0"), Meta(1, LevelFast)) }); err != nil {
				t.Fatal(err)
			}
		}, false, "old0"},
		{"truncated away", func(t *testing.T, s *Store) {
			if err := s.DeleteBlocksFrom(2, 0); err != nil {
				t.Fatal(err)
			}
		}, false, ""},
		{"purged", func(t *testing.T, s *Store) {
			if err := s.Purge(2); err != nil {
				t.Fatal(err)
			}
		}, false, ""},
		{"other block written", func(t *testing.T, s *Store) {
			if err := s.Update(func(tx *Txn) error { return tx.PutBlock(2, 1, []byte("x"), Meta(1, LevelFast)) }); err != nil {
				t.Fatal(err)
			}
		}, true, "new"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, t.TempDir())
			defer s.Close()
			putFile(t, s, 2, 8192, []byte("old0"), []byte("old1"))
			_, _, ver, err := s.GetBlockVersion(2, 0)
			if err != nil {
				t.Fatal(err)
			}
			c.meanwhile(t, s)
			ok, err := s.ReplaceBlockIf(2, 0, ver, []byte("new"), Meta(3, LevelBalanced))
			if err != nil {
				t.Fatal(err)
			}
			if ok != c.replaced {
				t.Errorf("replaced = %v, want %v", ok, c.replaced)
			}
			rec, meta, err := getBlock(t, s, 2, 0)
			if c.want == "" {
				if err == nil {
					t.Fatalf("block is back after it was removed: %q", rec)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(rec) != c.want {
				t.Errorf("block holds %q, want %q", rec, c.want)
			}
			if wantMeta := Meta(3, LevelBalanced); c.replaced && meta != wantMeta {
				t.Errorf("meta %#x, want %#x", meta, wantMeta)
			}
		})
	}
}

// TestReplaceBlockIfRacesWrites runs writes and conditional swaps of one
// block concurrently: a swap may only wrap the newest write, so after the
// last write the block holds it (or its swap), never an older one.
func TestReplaceBlockIfRacesWrites(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	putFile(t, s, 2, 4096, []byte("w0"))
	const writes = 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var swaps, lost int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rec, _, ver, err := s.GetBlockVersion(2, 0)
			if err != nil {
				t.Error(err)
				return
			}
			if bytes.HasPrefix(rec, []byte("r:")) {
				continue
			}
			ok, err := s.ReplaceBlockIf(2, 0, ver, append([]byte("r:"), rec...), Meta(3, LevelBalanced))
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				swaps++
			} else {
				lost++
			}
		}
	}()
	for i := 1; i <= writes; i++ {
		w := []byte(fmt.Sprintf("w%d", i))
		if err := s.Update(func(tx *Txn) error { return tx.PutBlock(2, 0, w, Meta(1, LevelFast)) }); err != nil {
			t.Fatal(err)
		}
		rec, _, err := getBlock(t, s, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimPrefix(string(rec), "r:"); got != string(w) {
			t.Fatalf("after write %q the block holds %q", w, rec)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d swaps, %d lost to writes", swaps, lost)
	if swaps == 0 {
		t.Error("no swap ever succeeded")
	}
}

func TestPendingAndStats(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	putFile(t, s, 2, 3*4096, []byte("a"), []byte("bb"), []byte("ccc"))
	putFile(t, s, 3, 4096, []byte("dddd"))
	if err := s.Update(func(tx *Txn) error { return tx.PutBlock(2, 1, []byte("B"), Meta(3, LevelBalanced)) }); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blocks, byts, err := s.Pending(ctx, LevelBalanced)
	if err != nil {
		t.Fatal(err)
	}
	if blocks[1] != 3 || byts[1] != 1+3+4 || len(blocks) != 1 {
		t.Errorf("pending for balanced: blocks %v bytes %v, want 3 zstd blocks of 8 bytes", blocks, byts)
	}
	blocks, _, _ = s.Pending(ctx, LevelMax)
	if blocks[1] != 3 || blocks[3] != 1 {
		t.Errorf("pending for max: %v, want 3 zstd and 1 cm", blocks)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Waiting[1] != 3 || st.WaitingBytes[1] != 8 || st.Blocks[3] != 1 || st.Blocks[1] != 3 {
		t.Errorf("stats: waiting %v/%v blocks %v", st.Waiting, st.WaitingBytes, st.Blocks)
	}
	// A paged scan sees every pending block once, in key order.
	var got []string
	var ino, blk uint64
	for {
		refs, ni, nb, done, err := s.PendingBlocks(ctx, ino, blk, LevelBalanced, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			got = append(got, fmt.Sprintf("%d/%d", r.Ino, r.Blk))
		}
		if done {
			break
		}
		ino, blk = ni, nb
	}
	if want := "2/0 2/2 3/0"; strings.Join(got, " ") != want {
		t.Errorf("pending scan found %v, want %s", got, want)
	}
}
