package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/config"
	"github.com/lmfs/lmfs/mount"
)

func needMount(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil || os.Geteuid() != 0 {
		t.Skipf("skipping: needs root and /dev/fuse (%v)", err)
	}
	f.Close()
}

func mountStore(t *testing.T, store string) *mount.Mounted {
	t.Helper()
	cfg := &config.Config{
		Store: config.StoreConfig{Path: store, GCInterval: "0s", MemTableSize: 4 << 20},
		FS:    config.FSConfig{BlockSize: 4096, WriteBuffer: 1 << 20},
		Cache: config.CacheConfig{Size: 1 << 20},
		Codec: config.CodecConfig{Policy: "fast", ZstdLevel: 3, CMMemory: 1 << 20, Workers: 2},
		Log:   config.LogConfig{Level: "info"},
	}
	m, err := mount.Mount(context.Background(), cfg, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFsckFindsCorruptBlock writes real files through a real mount, flips a
// byte of one stored block, and expects fsck (offline) and fsck --scrub
// (through the mount) to name the file and the damaged byte range.
func TestFsckFindsCorruptBlock(t *testing.T) {
	needMount(t)
	store := t.TempDir()
	m := mountStore(t, store)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 1000) // 44000 bytes, 11 blocks
	files := map[string][]byte{"a/b/text.txt": text, "small": []byte("hello"), "a/empty": nil}
	os.MkdirAll(filepath.Join(m.Mountpoint, "a", "b"), 0o755)
	for n, d := range files {
		if err := os.WriteFile(filepath.Join(m.Mountpoint, n), d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("a/b/text.txt", filepath.Join(m.Mountpoint, "link"))
	os.Link(filepath.Join(m.Mountpoint, "small"), filepath.Join(m.Mountpoint, "a", "small2"))
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(m.Mountpoint, "a/b/text.txt"), &st); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCLI(t, "", "fsck", "--store", store)
	if code != 0 || !strings.Contains(out, "clean") || !strings.Contains(out, "12 blocks") {
		t.Fatalf("fsck of a clean store: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	// Flip one byte in the stored record of block 7 (bytes 28672-32767).
	s, err := blockstore.Open(context.Background(), blockstore.Options{Dir: store})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *blockstore.Txn) error {
		rec, err := tx.GetBlock(st.Ino, 7)
		if err != nil {
			return err
		}
		rec[len(rec)/2] ^= 0x08
		return tx.PutBlock(st.Ino, 7, rec, rec[1])
	})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errs = runCLI(t, "", "fsck", "--store", store)
	want := fmt.Sprintf("/a/b/text.txt (inode %d) block 7 at offset 28672: block is damaged", st.Ino)
	if code != exitDamage || !strings.Contains(out, want) || !strings.Contains(out, "(bytes 28672-32767)") || !strings.Contains(out, ": 1 problems") {
		t.Fatalf("fsck of a damaged store: exit %d, want %d and a line %q\nstdout:\n%s\nstderr:\n%s", code, exitDamage, want, out, errs)
	}

	m = mountStore(t, store)
	defer m.Close()
	code, out, errs = runCLI(t, "", "fsck", "--scrub", m.Mountpoint)
	want = "/a/b/text.txt bytes 28672-32767: "
	if code != exitDamage || !strings.Contains(out, want) || !strings.Contains(out, "read 4 files") || !strings.Contains(out, "1 problems") {
		t.Fatalf("fsck --scrub: exit %d, want %d and a line starting %q\nstdout:\n%s\nstderr:\n%s", code, exitDamage, want, out, errs)
	}
	code, _, errs = runCLI(t, "", "fsck", "--store", store)
	if code != 1 || !strings.Contains(errs, "--scrub") {
		t.Errorf("fsck of a mounted store: exit %d, stderr %q; want 1 and a hint to use --scrub", code, errs)
	}
}

func TestFsckUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"fsck", "--store", filepath.Join(t.TempDir(), "none")},
		{"fsck", "--scrub"},
		{"fsck", "--scrub", t.TempDir()},
		{"fsck", "/some/mountpoint"},
	} {
		code, _, errs := runCLI(t, "", args...)
		if code != 1 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 with a message", args, code, errs)
		}
	}
}
