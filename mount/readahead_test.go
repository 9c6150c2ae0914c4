package mount

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	lfs "github.com/lmfs/lmfs/fs"
)

// decodes is how many blocks the filesystem has decoded so far.
func decodes(m *Mounted) uint64 {
	var n uint64
	for _, c := range m.FS.Metrics().Coded[lfs.Decode] {
		n += c.Blocks
	}
	return n
}

// TestReadAhead: a sequential read of a file (freshly mounted, so nothing is
// cached) gets its blocks decoded ahead, returns every byte, and decodes each
// block exactly once; random reads (posix_fadvise RANDOM, so the kernel asks
// for just the pages read) decode only the blocks they touch and schedule no
// read-ahead.
func TestReadAhead(t *testing.T) {
	needFuse(t)
	store, mnt := t.TempDir(), t.TempDir()
	cfg := cfgFor(store) // 4 KiB blocks, 1 MiB cache, 2 workers
	m, err := Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := textOf(rand.New(rand.NewPCG(5, 6)), 3<<20+777)
	nblk := uint64(len(data)+4095) / 4096
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	closeT(t, m)

	remount := func() *Mounted {
		t.Helper()
		m, err := Mount(context.Background(), cfg, mnt, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m = remount()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		i := firstDiff(got, data)
		t.Fatalf("sequential read: %d bytes, want %d; first difference at %d", len(got), len(data), i)
	}
	mt := m.FS.Metrics()
	if mt.ReadAheadBlocks == 0 {
		t.Errorf("a sequential read of %d blocks decoded none ahead", nblk)
	}
	if d := decodes(m); d != nblk {
		t.Errorf("sequential read decoded %d blocks, want each of the %d once", d, nblk)
	}
	t.Logf("sequential read: %d blocks, %d decoded ahead, cache hits %d misses %d", nblk, mt.ReadAheadBlocks, mt.CacheHits, mt.CacheMisses)
	closeT(t, m)

	m = remount()
	defer closeT(t, m)
	f, err = os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	blocks := []uint64{700, 10, 400, 150, 600, 50, 300, 768, 0, 200}
	buf := make([]byte, 4096)
	for _, b := range blocks {
		n, err := f.ReadAt(buf, int64(b*4096))
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		want := data[b*4096 : min(uint64(len(data)), (b+1)*4096)]
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("random read of block %d: wrong bytes", b)
		}
	}
	if ra := m.FS.Metrics().ReadAheadBlocks; ra != 0 {
		t.Errorf("random reads decoded %d blocks ahead, want none", ra)
	}
	if d := decodes(m); d != uint64(len(blocks)) {
		t.Errorf("%d random reads of one block each decoded %d blocks", len(blocks), d)
	}
}

// TestReadAheadRacesWrites: sequential readers keep read-ahead busy while
// one writer overwrites, extends, truncates and flushes the same file. Every
// so often (the readers still running) a fresh read of the whole file, with
// the kernel's page cache dropped, must equal the writer's model: a block
// decoded ahead from a record that a flush or truncate replaced must never
// reach the cache.
func TestReadAheadRacesWrites(t *testing.T) {
	needFuse(t)
	mnt := t.TempDir()
	cfg := cfgFor(t.TempDir())
	cfg.Cache.Size = 256 << 10 // half the file: reads keep decoding
	m, err := Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, m)
	p := filepath.Join(mnt, "f")
	rng := rand.New(rand.NewPCG(9, 10))
	model := textOf(rng, 512<<10)
	if err := os.WriteFile(p, model, 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				f, err := os.Open(p)
				if err != nil {
					t.Error(err)
					return
				}
				dropPageCache(f)
				for {
					if n, err := f.Read(buf); n == 0 || err != nil {
						break
					}
				}
				f.Close()
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	w, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ops := 300
	if testing.Short() {
		ops = 100
	}
	for i := 1; i <= ops; i++ {
		switch rng.IntN(10) {
		case 0: // truncate (shrink or extend)
			n := rng.IntN(600 << 10)
			if err := w.Truncate(int64(n)); err != nil {
				t.Fatal(err)
			}
			if n <= len(model) {
				model = model[:n]
			} else {
				model = append(model, make([]byte, n-len(model))...)
			}
		case 1, 2: // flush to the store
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
		default: // overwrite a range, maybe past the end
			off := rng.IntN(600 << 10)
			data := textOf(rng, 1+rng.IntN(20<<10))
			if _, err := w.WriteAt(data, int64(off)); err != nil {
				t.Fatal(err)
			}
			if end := off + len(data); end > len(model) {
				model = append(model, make([]byte, end-len(model))...)
			}
			copy(model[off:], data)
		}
		if i%25 == 0 {
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			dropPageCache(f)
			got, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model) {
				t.Fatalf("after %d operations: read %d bytes, want %d; first difference at %d", i, len(got), len(model), firstDiff(got, model))
			}
		}
	}
	t.Logf("read-ahead decoded %d blocks during the race", m.FS.Metrics().ReadAheadBlocks)
}

// TestReadAheadFromStart: a handle's first read at offset 0 (cat, cp and cmp
// start there) already gets a quarter of the read-ahead window decoded
// ahead, without waiting for a second read (with the 2 workers of cfgFor the
// window is 8 blocks: 2 at the start), and the next sequential read widens
// it to the whole window.
func TestReadAheadFromStart(t *testing.T) {
	needFuse(t)
	store, mnt := t.TempDir(), t.TempDir()
	cfg := cfgFor(store)
	m, err := Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := textOf(rand.New(rand.NewPCG(7, 8)), 64*4096)
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	closeT(t, m)
	m, err = Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, m)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// FADV_RANDOM: the kernel asks for just the pages read, so the only
	// read-ahead is the filesystem's own.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	waitAhead := func(want uint64, exact bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ra := m.FS.Metrics().ReadAheadBlocks
			if ra == want || (!exact && ra >= want) {
				return
			}
			if time.Now().After(deadline) || (exact && ra > want) {
				t.Fatalf("%d blocks decoded ahead, want %d", ra, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i, wantAhead := range []uint64{2, 9} {
		n, err := f.ReadAt(buf, int64(i*4096))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], data[i*4096:(i+1)*4096]) {
			t.Fatalf("read of block %d: wrong bytes", i)
		}
		waitAhead(wantAhead, true)
	}
}
