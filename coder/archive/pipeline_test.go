package archive

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lmfs/lmfs/coder"
)

// barrierEncoder blocks each call until n calls are inside at once, so a
// pipeline that does not run n encodes concurrently fails (after a timeout)
// instead of passing.
type barrierEncoder struct {
	inner   coder.BlockEncoder
	n       int
	mu      sync.Mutex
	inside  int
	reached chan struct{}
	once    sync.Once
}

func (b *barrierEncoder) Encode(ctx context.Context, dst, raw []byte) ([]byte, error) {
	b.mu.Lock()
	b.inside++
	if b.inside >= b.n {
		b.once.Do(func() { close(b.reached) })
	}
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.inside--; b.mu.Unlock() }()
	select {
	case <-b.reached:
	case <-time.After(10 * time.Second):
		return dst, errors.New("workers did not run concurrently")
	}
	return b.inner.Encode(ctx, dst, raw)
}

func TestCompressRunsWorkersConcurrently(t *testing.T) {
	reg := testRegistry(t)
	enc := &barrierEncoder{inner: encoders(t, reg)["zstd"], n: 4, reached: make(chan struct{})}
	raw := testData(64*1000, 4)
	var out bytes.Buffer
	if _, err := Compress(context.Background(), &out, bytes.NewReader(raw), enc, Options{BlockSize: 1000, Workers: 4}); err != nil {
		t.Fatal(err)
	}
	got, err := decodeAll(t, reg, out.Bytes())
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("round trip: %v", err)
	}
}

// aheadReader tracks how far reading runs ahead of writing.
type aheadReader struct {
	r       *bytes.Reader
	read    atomic.Int64
	written *atomic.Int64
	maxLead atomic.Int64
}

func (a *aheadReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	lead := a.read.Add(int64(n)) - a.written.Load()
	for {
		m := a.maxLead.Load()
		if lead <= m || a.maxLead.CompareAndSwap(m, lead) {
			break
		}
	}
	return n, err
}

// slowWriter is a destination slower than reading.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(100 * time.Microsecond)
	return len(p), nil
}

func TestCompressMemoryIsBounded(t *testing.T) {
	reg := testRegistry(t)
	const bs, window, workers = 1000, 3, 2
	raw := testData(500*bs, 8)
	var written atomic.Int64
	src := &aheadReader{r: bytes.NewReader(raw), written: &written}
	_, err := Compress(context.Background(), slowWriter{}, src, encoders(t, reg)["raw"], Options{
		BlockSize: bs, Workers: workers, Window: window,
		Progress: func(n int) { written.Add(int64(n)); time.Sleep(50 * time.Microsecond) },
	})
	if err != nil {
		t.Fatal(err)
	}
	// In flight: the window, one block being produced, one being consumed.
	if limit := int64((window + 2) * bs); src.maxLead.Load() > limit {
		t.Fatalf("reading ran %d bytes ahead of writing, limit %d", src.maxLead.Load(), limit)
	}
	if src.maxLead.Load() < 2*bs {
		t.Fatalf("reading never ran ahead (max lead %d): no pipelining", src.maxLead.Load())
	}
}

// TestOutputIndependentOfParallelism checks that the file is the same bytes
// whatever the number of workers and the window: blocks are written in order.
func TestOutputIndependentOfParallelism(t *testing.T) {
	reg := testRegistry(t)
	raw := testData(300*1000+7, 12)
	ch, err := coder.NewChooser(reg, coder.PolicyMax)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, o := range []Options{{Workers: 1, Window: 1}, {Workers: 2, Window: 1}, {Workers: 5, Window: 3}, {Workers: 3, Window: 64}} {
		o.BlockSize = 1000
		var out bytes.Buffer
		if _, err := Compress(context.Background(), &out, bytes.NewReader(raw), ch, o); err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = out.Bytes()
		} else if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("workers %d window %d: different output", o.Workers, o.Window)
		}
	}
}

// stuckReader gives some data, then blocks until released.
type stuckReader struct {
	data    *bytes.Reader
	release chan struct{}
}

func (s *stuckReader) Read(p []byte) (int, error) {
	if s.data.Len() > 0 {
		return s.data.Read(p)
	}
	<-s.release
	return 0, errors.New("released")
}

func TestCancelWhileReadBlocks(t *testing.T) {
	reg := testRegistry(t)
	src := &stuckReader{data: bytes.NewReader(testData(5000, 1)), release: make(chan struct{})}
	defer close(src.release)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := Compress(ctx, &out, src, encoders(t, reg)["zstd"], Options{BlockSize: 1000})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Compress did not return after cancellation while its input read was blocked")
	}
}
