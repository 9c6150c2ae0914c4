package mount

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// storeDiskBytes sums the allocated size of the files under dir (Badger
// preallocates its files sparsely, so apparent sizes would overstate it).
func storeDiskBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Sys().(*syscall.Stat_t).Blocks * 512
			}
		}
		return nil
	})
	return n
}

// TestDeletedSpaceComesBack writes 320 MiB of incompressible data through
// a real lmfs process, deletes 256 MiB of it, and measures how long it takes
// until the store's files on disk shrink by at least half the deleted
// amount. The daemon runs with store.gc_interval 5s; the default is 5m, and
// the delay scales with it (the space comes back at the first GC run after
// the delete, when the deleted bytes reach the compaction threshold). The
// test fails if the space has not come back after 12 intervals.
func TestDeletedSpaceComesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: writes 320 MiB and waits for value-log GC")
	}
	needFuse(t)
	const interval = 5 * time.Second
	store, mnt := t.TempDir(), t.TempDir()
	d := startLmfs(t, writeConfig(t, "store:\n  gc_interval: 5s\nlog:\n  level: warn\n"), store, mnt)
	const fileSize, files, deleted = 64 << 20, 5, 4
	data := randomBytes(fileSize)
	for i := 0; i < files; i++ {
		f, err := os.Create(filepath.Join(mnt, fmt.Sprint("f", i)))
		if err != nil {
			t.Fatal(err)
		}
		data[0] = byte(i) // distinct files
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	before := storeDiskBytes(store)
	for i := 0; i < deleted; i++ {
		if err := os.Remove(filepath.Join(mnt, fmt.Sprint("f", i))); err != nil {
			t.Fatal(err)
		}
	}
	del := time.Now()
	target := before - int64(deleted*fileSize)/2
	var now int64
	for {
		now = storeDiskBytes(store)
		if now <= target {
			break
		}
		if time.Since(del) > 12*interval {
			t.Fatalf("store still uses %.0f MiB %v after deleting %d MiB of %.0f MiB (gc_interval %v)",
				mib(now), time.Since(del).Round(time.Second), deleted*fileSize>>20, mib(before), interval)
		}
		time.Sleep(250 * time.Millisecond)
	}
	took := time.Since(del)
	t.Logf("store on disk: %.0f MiB before deleting %d MiB, %.0f MiB %v after the delete (gc_interval %v: %.1f intervals)",
		mib(before), deleted*fileSize>>20, mib(now), took.Round(100*time.Millisecond), interval, took.Seconds()/interval.Seconds())
	// Watch two more intervals for the rest (the value-log file being
	// written is never collected).
	low, lowAt := now, took
	for time.Since(del) < took+2*interval {
		time.Sleep(250 * time.Millisecond)
		if n := storeDiskBytes(store); n < low {
			low, lowAt = n, time.Since(del)
		}
	}
	t.Logf("lowest: %.0f MiB, %v after the delete", mib(low), lowAt.Round(100*time.Millisecond))
	// The file left is intact.
	got, err := os.ReadFile(filepath.Join(mnt, fmt.Sprint("f", files-1)))
	data[0] = byte(files - 1)
	if err != nil || len(got) != fileSize || string(got[:4096]) != string(data[:4096]) || string(got[fileSize-4096:]) != string(data[fileSize-4096:]) {
		t.Fatalf("remaining file after GC: %d bytes, %v", len(got), err)
	}
	d.stop(t)
}
