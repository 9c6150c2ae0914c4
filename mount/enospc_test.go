package mount

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A full disk under the store gives the writer ENOSPC; the daemon stays up,
// earlier data stays intact and the store stays consistent.
func TestFullDiskGivesENOSPC(t *testing.T) {
	needFuse(t)
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=48m"); err != nil {
		t.Skipf("cannot mount a small tmpfs for the store: %v", err)
	}
	defer syscall.Unmount(disk, syscall.MNT_DETACH)
	store := filepath.Join(disk, "store")
	m, mnt := mountT(t, store)
	keep := bytes.Repeat([]byte("precious "), 1000)
	if err := os.WriteFile(filepath.Join(mnt, "keep"), keep, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	buf := make([]byte, 1<<20)
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		rng.Read(buf)
		_, werr = f.Write(buf)
		if werr == nil && i%8 == 7 {
			werr = f.Sync()
		}
	}
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 100 MiB of random data to a store on a 48 MiB disk: %v (close: %v), want ENOSPC", werr, cerr)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "keep")); err != nil || !bytes.Equal(got, keep) {
		t.Fatalf("earlier file after ENOSPC: %d bytes, %v", len(got), err)
	}
	if err := os.Remove(filepath.Join(mnt, "big")); err != nil {
		t.Fatalf("deleting on a full store: %v", err)
	}
	closeT(t, m)
	checkStore(t, store, "after ENOSPC")
}
