package sched

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blocker occupies workers until released.
type blocker struct {
	started chan struct{}
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 64), release: make(chan struct{})}
}

func (b *blocker) fn(ctx context.Context) error {
	b.started <- struct{}{}
	<-b.release
	return nil
}

// waitQueued waits until the scheduler has n jobs queued at p.
func waitQueued(t *testing.T, s *Scheduler, p Priority, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, _ := s.Depth()
		if q[p] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs queued at %v, want %d", q[p], p, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPriorityOrder: with the only worker busy, jobs queued in mixed order
// run reads first, then read-ahead, then flushes, then background, each in
// submission order.
func TestPriorityOrder(t *testing.T) {
	s := New(Options{Workers: 1, FlushQueue: 100, BackgroundQueue: 100})
	defer s.Close()
	b := newBlocker()
	if _, err := s.Submit(context.Background(), Flush, Task{Key: "x", Run: b.fn}); err != nil {
		t.Fatal(err)
	}
	<-b.started
	var mu sync.Mutex
	var order []string
	var jobs []*Job
	submit := []Priority{Background, Flush, Read, Background, ReadAhead, Flush, Read}
	for i, p := range submit {
		name := fmt.Sprintf("%v%d", p, i)
		j, err := s.Submit(context.Background(), p, Task{Key: "x", Run: func(context.Context) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	close(b.release)
	for _, j := range jobs {
		if err := s.Wait(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"read2", "read6", "readahead4", "flush1", "flush5", "background0", "background3"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("ran %v, want %v", order, want)
	}
}

// TestBackgroundBounded: background jobs never take more than their share
// of the workers, and a read queued behind them runs on a free worker at
// once.
func TestBackgroundBounded(t *testing.T) {
	s := New(Options{Workers: 3, Background: 2, BackgroundQueue: 10})
	defer s.Close()
	b := newBlocker()
	for range 4 {
		go s.Do(context.Background(), Background, "bg", b.fn)
	}
	<-b.started
	<-b.started
	waitQueued(t, s, Background, 2)
	if _, run := s.Depth(); run[Background] != 2 {
		t.Fatalf("%d background jobs running, want 2", run[Background])
	}
	done := make(chan error, 1)
	go func() { done <- s.Do(context.Background(), Read, "r", func(context.Context) error { return nil }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waited behind background work with a worker free")
	}
	close(b.release)
}

// TestBackgroundWaitsForForeground: a background job does not start while
// a flush waits, even with a background slot free.
func TestBackgroundWaitsForForeground(t *testing.T) {
	s := New(Options{Workers: 1, FlushQueue: 10})
	defer s.Close()
	b := newBlocker()
	go s.Do(context.Background(), Read, "r", b.fn)
	<-b.started
	var ranBg, ranFlush atomic.Int64
	var seq atomic.Int64
	bg, _ := s.Submit(context.Background(), Background, Task{Key: "bg", Run: func(context.Context) error { ranBg.Store(seq.Add(1)); return nil }})
	fl, _ := s.Submit(context.Background(), Flush, Task{Key: "f", Run: func(context.Context) error { ranFlush.Store(seq.Add(1)); return nil }})
	close(b.release)
	s.Wait(context.Background(), bg)
	s.Wait(context.Background(), fl)
	if ranFlush.Load() != 1 || ranBg.Load() != 2 {
		t.Fatalf("flush ran %d-th, background %d-th; want flush first", ranFlush.Load(), ranBg.Load())
	}
}

// TestBackPressure: a full flush queue makes Submit wait until a worker
// takes a job; a cancelled context ends the wait with its error.
func TestBackPressure(t *testing.T) {
	s := New(Options{Workers: 1, FlushQueue: 2})
	defer s.Close()
	b := newBlocker()
	go s.Do(context.Background(), Flush, "f", b.fn)
	<-b.started
	for range 2 {
		if _, err := s.Submit(context.Background(), Flush, Task{Key: "f", Run: func(context.Context) error { return nil }}); err != nil {
			t.Fatal(err)
		}
	}
	submitted := make(chan error, 1)
	go func() {
		_, err := s.Submit(context.Background(), Flush, Task{Key: "f", Run: func(context.Context) error { return nil }})
		submitted <- err
	}()
	select {
	case err := <-submitted:
		t.Fatalf("Submit into a full queue returned at once (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, Flush, Task{Key: "f", Run: func(context.Context) error { return nil }})
		cancelled <- err
	}()
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Submit: %v, want context.Canceled", err)
	}
	// Reads are not bounded: they queue at once.
	if _, err := s.Submit(context.Background(), Read, Task{Key: "r", Run: func(context.Context) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	close(b.release)
	if err := <-submitted; err != nil {
		t.Fatal(err)
	}
}

// TestCancelQueued: a queued job whose waiter gives up is removed and never
// runs; a job whose context ended before it starts does not run either.
func TestCancelQueued(t *testing.T) {
	s := New(Options{Workers: 1})
	defer s.Close()
	b := newBlocker()
	go s.Do(context.Background(), Read, "r", b.fn)
	<-b.started
	var ran atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Do(ctx, Read, "r", func(context.Context) error { ran.Store(true); return nil }) }()
	waitQueued(t, s, Read, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after cancel: %v", err)
	}
	waitQueued(t, s, Read, 0)
	ctx2, cancel2 := context.WithCancel(context.Background())
	j, err := s.Submit(ctx2, ReadAhead, Task{Key: "r", Run: func(context.Context) error { ran.Store(true); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	cancel2()
	close(b.release)
	<-j.Done()
	if !errors.Is(j.Err(), context.Canceled) {
		t.Fatalf("job with an ended context: %v", j.Err())
	}
	if ran.Load() {
		t.Fatal("a cancelled job ran")
	}
}

// TestRunningJobSeesCancel: a running job gets its context, and Wait
// returns only once it has stopped.
func TestRunningJobSeesCancel(t *testing.T) {
	s := New(Options{Workers: 1})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var stopped atomic.Bool
	errc := make(chan error, 1)
	go func() {
		errc <- s.Do(ctx, Flush, "f", func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond)
			stopped.Store(true)
			return ctx.Err()
		})
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if !stopped.Load() {
		t.Fatal("Wait returned before the running job stopped")
	}
}

type recBatcher struct {
	max     int
	mu      sync.Mutex
	batches [][]int
}

func (b *recBatcher) MaxBatch() int { return b.max }

func (b *recBatcher) RunBatch(ctx context.Context, jobs []*Job) []error {
	var ids []int
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		ids = append(ids, j.Payload.(int))
		if j.Payload.(int) == 3 {
			errs[i] = errors.New("bad block 3")
		}
	}
	b.mu.Lock()
	b.batches = append(b.batches, ids)
	b.mu.Unlock()
	return errs
}

// TestBatching: queued jobs of a batched key go to the batcher together (at
// most MaxBatch, only that key, in order); others run alone; per-job errors
// reach their jobs.
func TestBatching(t *testing.T) {
	gpu := &recBatcher{max: 3}
	s := New(Options{Workers: 1, FlushQueue: 100, Batchers: map[string]Batcher{"lm": gpu}})
	defer s.Close()
	b := newBlocker()
	go s.Do(context.Background(), Read, "r", b.fn)
	<-b.started
	var jobs []*Job
	var plain atomic.Int64
	for i := range 8 {
		key := "lm"
		if i == 2 {
			key = "zstd"
		}
		j, err := s.Submit(context.Background(), Flush, Task{Key: key, Payload: i, Run: func(context.Context) error { plain.Add(1); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	close(b.release)
	for i, j := range jobs {
		err := s.Wait(context.Background(), j)
		if (i == 3) != (err != nil) {
			t.Errorf("job %d: %v", i, err)
		}
	}
	if got := fmt.Sprint(gpu.batches); got != "[[0 1 3] [4 5 6] [7]]" {
		t.Errorf("batches %s, want [[0 1 3] [4 5 6] [7]]", got)
	}
	if plain.Load() != 1 {
		t.Errorf("%d plain jobs ran, want 1 (the zstd one)", plain.Load())
	}
}

// TestClose: queued jobs fail with ErrClosed, so do later submits, and a
// panicking job is an error, not a crash.
func TestClose(t *testing.T) {
	s := New(Options{Workers: 1})
	if err := s.Do(context.Background(), Read, "r", func(context.Context) error { panic("boom") }); err == nil {
		t.Fatal("a panicking job returned no error")
	}
	b := newBlocker()
	go s.Do(context.Background(), Read, "r", b.fn)
	<-b.started
	j, err := s.Submit(context.Background(), Flush, Task{Key: "f", Run: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	<-j.Done()
	if !errors.Is(j.Err(), ErrClosed) {
		t.Fatalf("queued job at close: %v", j.Err())
	}
	close(b.release)
	<-closed
	if _, err := s.Submit(context.Background(), Read, Task{Key: "r", Run: func(context.Context) error { return nil }}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
}

// TestManyConcurrent: many goroutines at every priority, with the race
// detector: every job runs exactly once.
func TestManyConcurrent(t *testing.T) {
	s := New(Options{Workers: 4, Background: 2, FlushQueue: 3, BackgroundQueue: 2})
	defer s.Close()
	var count atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p := Priority((g + i) % int(NumPriorities))
				if err := s.Do(context.Background(), p, "k", func(context.Context) error { count.Add(1); return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if count.Load() != 16*200 {
		t.Fatalf("%d jobs ran, want %d", count.Load(), 16*200)
	}
}

// TestThen: a job's Then gets its result before Done is closed, for run
// jobs, failed jobs and jobs whose context ended while queued.
func TestThen(t *testing.T) {
	s := New(Options{Workers: 1})
	defer s.Close()
	boom := errors.New("boom")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
	}{{"ok", context.Background(), nil}, {"failed", context.Background(), boom}} {
		var got atomic.Pointer[error]
		j, err := s.Submit(tc.ctx, ReadAhead, Task{Key: "k", Run: func(context.Context) error { return tc.err }, Then: func(err error) { got.Store(&err) }})
		if err != nil {
			t.Fatal(err)
		}
		<-j.Done()
		if p := got.Load(); p == nil || *p != tc.err {
			t.Errorf("%s: Then got %v, want %v", tc.name, p, tc.err)
		}
	}
	if _, err := s.Submit(ctx, ReadAhead, Task{Key: "k", Run: func(context.Context) error { return nil }}); !errors.Is(err, context.Canceled) {
		t.Errorf("Submit with an ended context: %v", err)
	}
}

// BenchmarkDo measures the scheduler's own cost per job (an empty job,
// submitted and waited for from as many goroutines as workers).
func BenchmarkDo(b *testing.B) {
	s := New(Options{})
	defer s.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Do(context.Background(), Read, "k", func(context.Context) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
