package fs

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestFlushDownToWaitsForFlushInProgress: when every dirty byte is held by a
// flush that is still coding (the background flusher took the file), a
// writer over the write buffer waits for that flush instead of returning
// with the buffer overrun.
func TestFlushDownToWaitsForFlushInProgress(t *testing.T) {
	f := newTestFS(t)
	s := &inodeState{inflight: map[uint64][]byte{0: make([]byte, 4096)}, flushing: true}
	s.flushDone = sync.NewCond(&s.mu)
	f.dirtyMu.Lock()
	f.flushingNodes[s] = struct{}{}
	f.dirtyMu.Unlock()
	f.dirtyBytes.Add(4096)

	done := make(chan error, 1)
	go func() { done <- f.flushDownTo(context.Background(), 0) }()
	select {
	case err := <-done:
		t.Fatalf("flushDownTo returned (%v) with %d bytes dirty while a flush was coding them", err, f.DirtyBytes())
	case <-time.After(100 * time.Millisecond):
	}

	// The flush ends as flushLocked ends one: bytes stored, state cleared.
	s.mu.Lock()
	f.dirtyBytes.Add(-4096)
	s.inflight, s.flushing = nil, false
	s.flushDone.Broadcast()
	f.dirtyMu.Lock()
	delete(f.flushingNodes, s)
	f.dirtyMu.Unlock()
	s.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flushDownTo still waits after the flush ended")
	}
}

// TestFlushDownToStopsOnCancel: a writer waiting for a flush in progress
// gives up when its context is cancelled.
func TestFlushDownToStopsOnCancel(t *testing.T) {
	f := newTestFS(t)
	s := &inodeState{flushing: true}
	s.flushDone = sync.NewCond(&s.mu)
	f.dirtyMu.Lock()
	f.flushingNodes[s] = struct{}{}
	f.dirtyMu.Unlock()
	f.dirtyBytes.Add(4096)
	t.Cleanup(func() { f.dirtyBytes.Add(-4096) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.flushDownTo(ctx, 0); err == nil {
		t.Fatal("flushDownTo with a cancelled context returned no error")
	}
}
