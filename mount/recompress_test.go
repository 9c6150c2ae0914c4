package mount

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/config"
	lfs "github.com/lmfs/lmfs/fs"
)

// recompressConfig is the test configuration with policy balanced and
// background recompression after idle.
func recompressConfig(store, idle string) *config.Config {
	c := cfgFor(store)
	c.Codec.Policy = "balanced"
	c.Recompress = config.RecompressConfig{Enabled: true, Idle: idle, Workers: 2}
	return c
}

// textOf returns n bytes of word-like text (compressible; cm beats zstd).
func textOf(rng *rand.Rand, n int) []byte {
	words := []string{"block", "store", "badger", "codec", "the", "of", "mixing", "context", "model", "fuse", "inode", "write", "read", "zstd", "and", "a"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(9) == 0 {
			b.WriteString(fmt.Sprintf(" %d.\n", rng.IntN(1000)))
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// waitRecompressed waits until no block of the store is below the balanced
// level any more.
func waitRecompressed(t *testing.T, m *Mounted, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		blocks, _, err := m.Store.Pending(context.Background(), blockstore.LevelBalanced)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range blocks {
			n += c
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d blocks still wait for recompression after %v (%+v)", n, limit, m.FS.RecompressStats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWritesCodeFastAndRecompressWhenIdle: with policy balanced and
// recompression on, a write is stored with zstd, and cm replaces it once the
// filesystem is idle; the bytes stay the same before, during and after.
func TestWritesCodeFastAndRecompressWhenIdle(t *testing.T) {
	needFuse(t)
	store, mnt := t.TempDir(), t.TempDir()
	m, err := Mount(context.Background(), recompressConfig(store, "1s"), mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if m != nil {
			m.Close()
		}
	}()
	data := textOf(rand.New(rand.NewPCG(1, 2)), 10*4096+123)
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := m.Store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks[3] != 0 || st.Waiting[1] != 11 {
		t.Errorf("right after the write: blocks %v, waiting %v; want 11 zstd blocks waiting, none cm", st.Blocks, st.Waiting)
	}
	waitRecompressed(t, m, 60*time.Second)
	after, err := m.Store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Blocks[3] != 11 || after.StoredBytes >= st.StoredBytes {
		t.Errorf("after recompression: blocks %v, stored %d bytes (was %d); want 11 cm blocks, smaller", after.Blocks, after.StoredBytes, st.StoredBytes)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after recompression: %v, equal %v", err, bytes.Equal(got, data))
	}
	rs := m.FS.RecompressStats()
	if rs.Recoded != 11 || rs.After >= rs.Before {
		t.Errorf("recompress stats %+v, want 11 blocks recoded smaller", rs)
	}
	err = m.Close()
	m = nil
	if err != nil {
		t.Fatal(err)
	}
	// Remounted: every byte comes from the re-coded blocks.
	m, err = Mount(context.Background(), recompressConfig(store, "1s"), mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after remount: %v, equal %v", err, bytes.Equal(got, data))
	}
}

// TestRecompressionRacesWritesTruncatesUnlinks runs writers, truncates and
// unlinks against the same files while background recompression runs (a
// short idle time makes it start between bursts), then checks every byte,
// also after a remount, and that the store is clean.
func TestRecompressionRacesWritesTruncatesUnlinks(t *testing.T) {
	needFuse(t)
	store, mnt := t.TempDir(), t.TempDir()
	cfg := recompressConfig(store, "20ms")
	m, err := Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if m != nil {
			m.Close()
		}
	}()
	const files = 4
	dur := 3 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	want := make([][]byte, files)
	var mus [files]sync.Mutex
	name := func(i int) string { return filepath.Join(mnt, fmt.Sprintf("f%d", i)) }
	for i := range files {
		want[i] = textOf(rand.New(rand.NewPCG(uint64(i), 9)), 12*4096)
		if err := os.WriteFile(name(i), want[i], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitRecompressed(t, m, 60*time.Second) // the files start cm-coded and being re-coded
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	stop := time.Now().Add(dur)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 77))
			for time.Now().Before(stop) {
				i := rng.IntN(files)
				mus[i].Lock()
				err := raceOp(rng, name(i), &want[i])
				mus[i].Unlock()
				if err != nil {
					errc <- err
					return
				}
				time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond) // let the recompressor in
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	check := func(when string) {
		for i := range files {
			got, err := os.ReadFile(name(i))
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if !bytes.Equal(got, want[i]) {
				t.Fatalf("%s: file %d differs: %d bytes, want %d; first difference at %d", when, i, len(got), len(want[i]), firstDiff(got, want[i]))
			}
		}
	}
	check("right after the race")
	waitRecompressed(t, m, 120*time.Second)
	check("after recompression")
	rs := m.FS.RecompressStats()
	t.Logf("recompression: %+v", rs)
	if rs.Recoded == 0 {
		t.Error("nothing was re-coded")
	}
	err = m.Close()
	m = nil
	if err != nil {
		t.Fatal(err)
	}
	m, err = Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("after remount")
	err = m.Close()
	m = nil
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, store, "after recompression")
}

// raceOp does one random operation on file p and updates its model.
func raceOp(rng *rand.Rand, p string, model *[]byte) error {
	switch op := rng.IntN(10); {
	case op < 6: // overwrite or extend a range
		off := rng.IntN(len(*model) + 4096)
		data := textOf(rng, 1+rng.IntN(3*4096))
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(data, int64(off)); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if end := off + len(data); end > len(*model) {
			*model = append(*model, make([]byte, end-len(*model))...)
		}
		copy((*model)[off:], data)
	case op < 8: // truncate, down or up
		n := rng.IntN(14 * 4096)
		if err := os.Truncate(p, int64(n)); err != nil {
			return err
		}
		if n <= len(*model) {
			*model = (*model)[:n]
		} else {
			*model = append(*model, make([]byte, n-len(*model))...)
		}
	default: // unlink and write anew
		if err := os.Remove(p); err != nil {
			return err
		}
		data := textOf(rng, rng.IntN(12*4096))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		*model = data
	}
	return nil
}

// waitingBlocks asks the mounted lmfs at mnt how many blocks wait for
// recompression (the stats extended attribute of lmfs stats MOUNTPOINT).
func waitingBlocks(t *testing.T, mnt string) uint64 {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := syscall.Getxattr(mnt, lfs.StatsXattr, buf)
	if err != nil {
		t.Fatalf("stats of the mount: %v", err)
	}
	var st blockstore.Stats
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		t.Fatal(err)
	}
	var w uint64
	for _, c := range st.Waiting {
		w += c
	}
	return w
}

// TestKillDuringRecompression kills the daemon (kill -9) while it re-codes
// fsync'ed files in the background: nothing is lost, fsck is clean, and the
// next mount finishes the work.
func TestKillDuringRecompression(t *testing.T) {
	needFuse(t)
	store, mnt := t.TempDir(), t.TempDir()
	t.Setenv("LMFS_TEST_RECOMPRESS_IDLE", "200ms")
	d := startDaemon(t, store, mnt)
	killed := false
	defer func() {
		if !killed {
			d.Process.Kill()
			d.Wait()
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	}()
	want := map[string][]byte{}
	for i := range 4 {
		name := fmt.Sprintf("f%d", i)
		data := textOf(rand.New(rand.NewPCG(uint64(i), 5)), 6*4096-i*1000)
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		want[name] = data
	}
	total := waitingBlocks(t, mnt)
	deadline := time.Now().Add(60 * time.Second)
	var w uint64
	for w = total; w == total && time.Now().Before(deadline); w = waitingBlocks(t, mnt) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := d.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.Wait()
	killed = true
	t.Logf("killed with %d of %d blocks still waiting for recompression", w, total)
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		t.Fatalf("unmount after kill: %v", err)
	}
	checkStore(t, store, "after recompression")
	m, err := Mount(context.Background(), recompressConfig(store, "50ms"), mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	check := func(when string) {
		for name, data := range want {
			got, err := os.ReadFile(filepath.Join(mnt, name))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s %s: %v, %d bytes, want %d, first difference at %d", name, when, err, len(got), len(data), firstDiff(got, data))
			}
		}
	}
	check("after kill -9")
	waitRecompressed(t, m, 120*time.Second)
	check("after recompression finished")
}
