package fs

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/fs/sched"
)

// newTestFS returns a filesystem over a new store with one worker.
func newTestFS(t *testing.T) *FS {
	t.Helper()
	ctx := context.Background()
	st, err := blockstore.Open(ctx, blockstore.Options{Dir: t.TempDir(), BlockSize: 4096, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := coder.NewStandard(coder.Options{ZstdLevel: 3, CMMemory: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := coder.NewChooser(reg, coder.PolicyFast)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{Store: st, Registry: reg, Chooser: ch, Workers: 1, CacheSize: 1 << 20,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	return f
}

// TestReadAheadDropsStaleBlocks: a read-ahead decode queued (or running)
// when the inode's stored blocks change (a flush stores the block anew, a
// truncate drops it) never puts the old contents into the cache; one with
// nothing changed does.
func TestReadAheadDropsStaleBlocks(t *testing.T) {
	f := newTestFS(t)
	old := []byte(strings.Repeat("old contents of the block ", 100))
	rec, err := f.ch.Encode(context.Background(), nil, old)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(ino uint64)
		want   []byte // cached afterwards (nil: not cached)
	}{
		{"unchanged", func(uint64) {}, old},
		{"flushed", func(ino uint64) { f.cache.store(ino, 0, []byte("new")) }, []byte("new")},
		{"truncated", func(ino uint64) { f.cache.dropFrom(ino, 0) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ino := uint64(len(tc.name)) // a fresh inode per case
			// Hold the only worker so that the read-ahead stays queued.
			release := make(chan struct{})
			started := make(chan struct{})
			go f.sched.Do(context.Background(), sched.Read, "hold", func(context.Context) error {
				close(started)
				<-release
				return nil
			})
			<-started
			if !f.startReadAhead(ino, 0, rec, f.cache.gen(ino)) {
				t.Fatal("read-ahead not queued")
			}
			tc.change(ino)
			close(release)
			// A job queued after the read-ahead runs after it.
			if err := f.sched.Do(context.Background(), sched.Flush, "after", func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			got, ok := f.cache.get(ino, 0)
			if ok != (tc.want != nil) || !bytes.Equal(got, tc.want) {
				t.Fatalf("cached %.30q (%v), want %.30q", got, ok, tc.want)
			}
		})
	}
}
