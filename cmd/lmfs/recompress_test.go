package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/config"
	"github.com/lmfs/lmfs/mount"
)

// mountCfg returns the default configuration for store with 4 KiB blocks.
func mountCfg(t *testing.T, store, policy string) *config.Config {
	t.Helper()
	c, _, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Store.Path, c.Store.GCInterval = store, "1h"
	c.FS.BlockSize, c.FS.WriteBuffer, c.Cache.Size = 4096, 1<<20, 1<<20
	c.Codec.Policy, c.Codec.Workers = policy, 2
	return c
}

func storeStats(t *testing.T, dir string) blockstore.Stats {
	t.Helper()
	s, err := blockstore.Open(context.Background(), blockstore.Options{Dir: dir, MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRecompressUpgradesAFastStore writes files through a mount with policy
// fast, upgrades the unmounted store with lmfs recompress --policy balanced,
// and checks that it stores fewer bytes, reads back every byte, and is clean.
func TestRecompressUpgradesAFastStore(t *testing.T) {
	store, mnt := fuseStore(t)
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 3*4096+17)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	files := map[string][]byte{
		"text":   sample(40_000),
		"random": random,
		"small":  []byte("tiny file\n"),
		"d/deep": bytes.Repeat([]byte("line of a log 12:00:01 ok\n"), 900),
	}
	m, err := mount.Mount(context.Background(), mountCfg(t, store, "fast"), mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		p := filepath.Join(mnt, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			m.Close()
			t.Fatal(err)
		}
	}
	// While mounted, the command says how recompression happens instead.
	code, _, errs := runCLI(t, "", "recompress", "--store", store, "--policy", "balanced")
	if code == 0 || !strings.Contains(errs, "recompressed by lmfs itself") {
		t.Errorf("recompress of a mounted store: exit %d, %q", code, errs)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	before := storeStats(t, store)
	if before.Blocks[3] != 0 || before.Waiting[1] == 0 {
		t.Fatalf("a fast store has %v blocks per codec, %v waiting", before.Blocks, before.Waiting)
	}
	code, out, errs := runCLI(t, "", "recompress", "--store", store, "--policy", "fast")
	if code == 0 || !strings.Contains(errs, "re-codes nothing") {
		t.Errorf("recompress --policy fast: exit %d, %q", code, errs)
	}
	code, out, errs = runCLI(t, "", "recompress", "--store", store, "--policy", "balanced", "--workers", "2")
	if code != 0 || !strings.Contains(out, "re-coded") {
		t.Fatalf("recompress: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	t.Log(strings.TrimSpace(out))
	after := storeStats(t, store)
	if after.StoredBytes >= before.StoredBytes || after.Blocks[3] == 0 {
		t.Errorf("stored %d bytes before, %d after; cm blocks %d", before.StoredBytes, after.StoredBytes, after.Blocks[3])
	}
	if len(after.Waiting) != 0 || after.LogicalBytes != before.LogicalBytes {
		t.Errorf("after: waiting %v, logical %d (was %d)", after.Waiting, after.LogicalBytes, before.LogicalBytes)
	}
	code, out, _ = runCLI(t, "", "recompress", "--store", store, "--policy", "balanced")
	if code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("second recompress: exit %d, %q", code, out)
	}
	code, out, errs = runCLI(t, "", "fsck", "--store", store)
	if code != 0 {
		t.Fatalf("fsck after recompress: exit %d: %s %s", code, out, errs)
	}
	code, out, _ = runCLI(t, "", "stats", "--store", store)
	if code != 0 || !strings.Contains(out, "waiting for recompression  0 blocks") {
		t.Errorf("stats: exit %d\n%s", code, out)
	}
	m, err = mount.Mount(context.Background(), mountCfg(t, store, "balanced"), mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s after recompress: %v, %d bytes, equal %v", name, err, len(got), bytes.Equal(got, data))
		}
	}
}

// TestRecompressStopped: a run stopped part way (SIGINT cancels the context)
// reports the blocks it did not get to as left for a later run, not as
// changed meanwhile, keeps the store intact, and a second run finishes them.
func TestRecompressStopped(t *testing.T) {
	store, mnt := fuseStore(t)
	m, err := mount.Mount(context.Background(), mountCfg(t, store, "fast"), mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := sample(8 * 4096)
	if err := os.WriteFile(filepath.Join(mnt, "text"), data, 0o644); err != nil {
		m.Close()
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Policy max codes with the LM, which on a CPU takes far longer than the
	// 200 ms this run is given.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"recompress", "--store", store, "--policy", "max", "--workers", "2"}, strings.NewReader(""), &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "run it again") {
		t.Errorf("stopped recompress: exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), "0 changed meanwhile") || strings.Contains(out.String(), " 0 left for a later run") {
		t.Errorf("stopped recompress reports %q: want its unfinished blocks left for a later run", out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	if c, o, e := runCLI(t, "", "fsck", "--store", store); c != 0 {
		t.Fatalf("fsck after a stopped recompress: exit %d: %s %s", c, o, e)
	}
	if c, o, e := runCLI(t, "", "recompress", "--store", store, "--policy", "balanced", "--workers", "2"); c != 0 || !strings.Contains(o, "0 left for a later run") {
		t.Fatalf("second recompress: exit %d, %q %q", c, o, e)
	}
	m, err = mount.Mount(context.Background(), mountCfg(t, store, "balanced"), mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got, err := os.ReadFile(filepath.Join(mnt, "text")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after the runs: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, data))
	}
}

// fuseStore skips t without root and a usable /dev/fuse, isolates the config,
// and returns a store directory and a mount point.
func fuseStore(t *testing.T) (store, mnt string) {
	t.Helper()
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil || os.Geteuid() != 0 {
		t.Skipf("skipping: needs root and a usable /dev/fuse (%v)", err)
	} else {
		f.Close()
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	return t.TempDir(), t.TempDir()
}
