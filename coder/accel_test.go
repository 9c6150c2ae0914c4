package coder

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lmfs/lmfs/predictor"
)

// refBackend is an LMBackend that runs the Go reference model: the
// accelerated code paths of the codecs (path probabilities, batched lm+cm
// decoding, batching of single calls) run against it on any machine, and must
// code exactly as the codecs without a backend do.
type refBackend struct {
	m     predictor.ByteModel
	calls atomic.Int32
	fail  bool // every call fails, as a lost GPU would
	wrong bool // PathProbs gives one wrong probability per block
}

var errLostDevice = errors.New("device lost (test)")

func (b *refBackend) Device() string { return "reference backend (test)" }

func (b *refBackend) PathProbs(ctx context.Context, blocks [][]byte) ([][]uint16, error) {
	b.calls.Add(1)
	if b.fail {
		return nil, errLostDevice
	}
	out := make([][]uint16, len(blocks))
	for i, blk := range blocks {
		out[i] = make([]uint16, 8*len(blk))
	}
	var cum [257]uint32
	err := b.m.Score(ctx, blocks, func(bi, pos int, d *predictor.Dist) error {
		if err := cumulate(d, &cum); err != nil {
			return err
		}
		pathProbs(&cum, blocks[bi][pos], out[bi][8*pos:8*pos+8])
		return nil
	})
	if b.wrong {
		for i := range out {
			if len(out[i]) > 0 {
				out[i][0] ^= 1
			}
		}
	}
	return out, err
}

func (b *refBackend) DecodeLM(ctx context.Context, streams [][]byte, rawLens []int) ([][]byte, error) {
	b.calls.Add(1)
	if b.fail {
		return nil, errLostDevice
	}
	return DecodeBytes(ctx, b.m, streams, rawLens)
}

func (b *refBackend) Streams(ctx context.Context, n int) (predictor.ByteStreams, error) {
	b.calls.Add(1)
	if b.fail {
		return nil, errLostDevice
	}
	return b.m.Streams(ctx, n)
}

func accelInputs(t testing.TB) [][]byte {
	var out [][]byte
	for _, name := range []string{"empty", "one", "two", "text", "binary", "zeros"} {
		b := lmInputs(t)[name]
		out = append(out, b[:min(len(b), 200)])
	}
	return out
}

// TestAccelCodesAsCPU checks that with an accelerator backend the lm codecs
// write exactly the CPU's payloads and decode them, in batches and in
// concurrent single calls, and that a failing backend falls back to the CPU
// with a log line and no block lost.
func TestAccelCodesAsCPU(t *testing.T) {
	m := defaultModel(t)
	id := ModelID(m.ID())
	ctx := context.Background()
	srcs := accelInputs(t)
	lens := make([]int, len(srcs))
	for i, s := range srcs {
		lens[i] = len(s)
	}
	cpu := []BatchCodec{NewLM(m), NewLMCM(m, 1<<20)}
	for _, fail := range []bool{false, true} {
		var logBuf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logBuf, nil))
		be := &refBackend{m: m, fail: fail}
		a := Accel{Backend: be, MaxBatch: 4, Log: log}
		acc := []BatchCodec{NewLMAccel(m, id, a), NewLMCMAccel(m, id, 1<<20, a)}
		for k, c := range acc {
			name := c.Name()
			if fail {
				name += "/failing"
			}
			t.Run(name, func(t *testing.T) {
				if c.Device() != be.Device() || cpu[k].Device() != "cpu" {
					t.Fatalf("devices %q and %q", c.Device(), cpu[k].Device())
				}
				want, err := cpu[k].EncodeBatch(ctx, srcs)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.EncodeBatch(ctx, srcs)
				if err != nil {
					t.Fatal(err)
				}
				for i := range srcs {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("block %d: accelerated payload differs from the CPU's", i)
					}
				}
				dec, err := c.DecodeBatch(ctx, got, lens)
				if err != nil {
					t.Fatal(err)
				}
				for i := range srcs {
					if !bytes.Equal(dec[i], srcs[i]) {
						t.Fatalf("block %d decoded wrong", i)
					}
				}
				// Concurrent single calls are batched and code the same.
				var wg sync.WaitGroup
				errs := make([]error, len(srcs))
				for i := range srcs {
					wg.Go(func() {
						p, err := c.Encode(ctx, []byte("x"), srcs[i])
						if err == nil && !bytes.Equal(p[1:], want[i]) {
							err = errors.New("single-call payload differs from the CPU's")
						}
						if err == nil {
							var d []byte
							d, err = c.Decode(ctx, nil, p[1:], len(srcs[i]))
							if err == nil && !bytes.Equal(d, srcs[i]) {
								err = errors.New("single call decoded wrong")
							}
						}
						errs[i] = err
					})
				}
				wg.Wait()
				if err := firstErr(errs); err != nil {
					t.Fatal(err)
				}
				// A damaged payload is an error, whatever decodes it.
				bad := append([][]byte(nil), got...)
				bad[3] = bad[3][:len(bad[3])/2]
				if _, err := c.DecodeBatch(ctx, bad, lens); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "block 3 ") {
					t.Fatalf("truncated payload of block 3: %v, want ErrCorrupt naming block 3", err)
				}
			})
		}
		if be.calls.Load() == 0 {
			t.Fatal("the backend was never called")
		}
		if got := strings.Count(logBuf.String(), "accelerator failed"); fail != (got > 0) {
			t.Fatalf("failing=%v backend: %d fallback log lines:\n%s", fail, got, logBuf.String())
		}
	}
}

// TestLMDeviceFallback checks the loader's fallback: with the CUDA library
// missing or broken, NewStandard registers the CPU codecs and logs exactly
// one line saying why.
func TestLMDeviceFallback(t *testing.T) {
	dir := t.TempDir()
	notLib := filepath.Join(dir, "liblmfs_cuda.so")
	if err := os.WriteFile(notLib, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, device, lib, want, level string
	}{
		{"missing library", "auto", filepath.Join(dir, "missing.so"), "no such file", "WARN"},
		{"no library next to the binary", "auto", "", "liblmfs_cuda.so: no such file", "DEBUG"},
		{"cuda asked, no library", "cuda", "", "liblmfs_cuda.so: no such file", "WARN"},
		{"broken library", "auto", notLib, "not a loadable shared library", "WARN"},
		{"cuda asked, broken library", "cuda", notLib, "not a loadable shared library", "WARN"},
		{"cpu asked", "cpu", notLib, "predictor.device is cpu", "DEBUG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LMFS_CUDA_LIB", "")
			var logBuf bytes.Buffer
			o := DefaultOptions()
			o.Device, o.CUDALib = tc.device, tc.lib
			o.Log = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			reg, err := NewStandard(o)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "neural LM runs on the CPU") || !strings.Contains(lines[0], tc.want) || !strings.Contains(lines[0], "level="+tc.level) {
				t.Fatalf("log:\n%s\nwant one %s line saying the LM runs on the CPU because %q", logBuf.String(), tc.level, tc.want)
			}
			for _, name := range []string{"lm", "lm+cm"} {
				c, err := reg.ByName(name)
				if err != nil {
					t.Fatal(err)
				}
				if d := c.(BatchCodec).Device(); d != "cpu" {
					t.Fatalf("%s runs on %q", name, d)
				}
			}
		})
	}
}

// TestAccelWrongResults checks the safety net: an accelerator whose
// probabilities differ from the Go model's is caught before any block is
// coded with them, disabled with an error line, and the blocks are coded on
// the CPU.
func TestAccelWrongResults(t *testing.T) {
	m := defaultModel(t)
	ctx := context.Background()
	srcs := accelInputs(t)
	var logBuf bytes.Buffer
	be := &refBackend{m: m, wrong: true}
	a := Accel{Backend: be, Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	for _, c := range []BatchCodec{NewLMAccel(m, ModelID(m.ID()), a), NewLMCMAccel(m, ModelID(m.ID()), 1<<20, a)} {
		cpu := map[string]BatchCodec{"lm": NewLM(m), "lm+cm": NewLMCM(m, 1<<20)}[c.Name()]
		want, err := cpu.EncodeBatch(ctx, srcs)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			got, err := c.EncodeBatch(ctx, srcs)
			if err != nil {
				t.Fatal(err)
			}
			for i := range srcs {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%s round %d block %d: payload differs from the CPU's", c.Name(), round, i)
				}
			}
		}
	}
	if n := strings.Count(logBuf.String(), "differ from the Go model"); n != 2 {
		t.Fatalf("%d error lines, want one per codec:\n%s", n, logBuf.String())
	}
	if n := be.calls.Load(); n != 2 {
		t.Fatalf("the backend was called %d times, want once per codec before it was disabled", n)
	}
}

// batchLog records the size of every batch that a batcher runs.
type batchLog struct {
	mu    sync.Mutex
	sizes []int
}

// run records the batch reqs (a batcher's run function, or its start).
func (l *batchLog) run(reqs []*batchReq) {
	l.mu.Lock()
	l.sizes = append(l.sizes, len(reqs))
	l.mu.Unlock()
}

// TestBatcherGrowsUnderLoad: calls that arrive while a batch runs join the
// next batch (which starts when the running one ends) instead of forming many
// small batches, and every call gets its own result.
func TestBatcherGrowsUnderLoad(t *testing.T) {
	var b batcher
	var bl batchLog
	run := func(reqs []*batchReq) {
		bl.run(reqs)
		time.Sleep(40 * time.Millisecond) // a slow device call
		for _, q := range reqs {
			q.out = append([]byte("out:"), q.in...)
		}
	}
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Millisecond) // arrivals spread over 60 ms
			r := &batchReq{in: []byte{byte(i)}}
			if err := b.do(context.Background(), r, 1000, 2*time.Millisecond, run); err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(r.out, []byte{'o', 'u', 't', ':', byte(i)}) {
				t.Errorf("call %d got %q", i, r.out)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, s := range bl.sizes {
		total += s
	}
	// With a fixed 2 ms window the 60 ms of arrivals would form about 30
	// batches; here a first small one, then what arrived during each 40 ms run.
	if total != n || len(bl.sizes) > 5 {
		t.Errorf("batches %v: want %d calls in at most 5 batches", bl.sizes, n)
	}
	// A full batch starts at once, and the rest follows.
	bl.sizes = nil
	var wg2 sync.WaitGroup
	for i := range 10 {
		wg2.Go(func() {
			r := &batchReq{in: []byte{byte(i)}}
			if err := b.do(context.Background(), r, 4, time.Hour, run); err != nil {
				t.Error(err)
			}
		})
	}
	wg2.Wait()
	for _, s := range bl.sizes {
		if s > 4 {
			t.Errorf("batch of %d exceeds max 4 (%v)", s, bl.sizes)
		}
	}
}

// TestBatcherWaitFollowsBatchTime: an idle batcher waits for a batch to fill
// a 64th of the last batch's run time, at least the configured wait and at
// most maxBatchWait, so that a burst of calls after a long batch is one batch.
func TestBatcherWaitFollowsBatchTime(t *testing.T) {
	for _, tc := range []struct {
		last, floor, want time.Duration
	}{
		{0, 2 * time.Millisecond, 2 * time.Millisecond},
		{64 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond},
		{time.Second, 2 * time.Millisecond, time.Second / 64},
		{time.Minute, 2 * time.Millisecond, maxBatchWait},
		{time.Minute, time.Second, time.Second},
	} {
		b := batcher{last: tc.last}
		if got := b.waitLocked(tc.floor); got != tc.want {
			t.Errorf("last batch %v, wait %v: waits %v, want %v", tc.last, tc.floor, got, tc.want)
		}
	}
	// After a batch of seconds, calls 5 ms apart land in one batch (with
	// the 2 ms wait alone they would not).
	b := batcher{last: time.Minute}
	var bl batchLog
	run := bl.run
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			if err := b.do(context.Background(), &batchReq{in: []byte{byte(i)}}, 100, 2*time.Millisecond, run); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(bl.sizes) != 1 || bl.sizes[0] != 3 {
		t.Errorf("batches %v, want one of 3", bl.sizes)
	}
}

// TestSmallBatchesOnCPU checks Accel.SmallOnCPU: a batch of at most that
// many blocks is coded and decoded on the CPU without calling the backend,
// to the same payloads and bytes, a larger one goes to the backend, and the
// device name says so.
func TestSmallBatchesOnCPU(t *testing.T) {
	m := defaultModel(t)
	var err error
	id := ModelID(m.ID())
	ctx := context.Background()
	srcs := accelInputs(t)
	cpu := []BatchCodec{NewLM(m), NewLMCM(m, 1<<20)}
	want := make([][][]byte, len(cpu))
	for k, c := range cpu {
		if want[k], err = c.EncodeBatch(ctx, srcs); err != nil {
			t.Fatal(err)
		}
	}
	calls := func(be *fullBackend) int { return int(be.calls.Load()) + be.encodes + be.decodes }
	for _, tc := range []struct {
		name    string
		blocks  int // the first blocks of srcs
		backend bool
	}{
		{"small", 3, false},
		{"large", len(srcs), true},
	} {
		for k := range cpu {
			be := &fullBackend{refBackend: refBackend{m: m}, memory: 1 << 20}
			a := Accel{Backend: be, MaxBatch: 8, SmallOnCPU: 3}
			c := []BatchCodec{NewLMAccel(m, id, a), NewLMCMAccel(m, id, 1<<20, a)}[k]
			t.Run(c.Name()+"/"+tc.name, func(t *testing.T) {
				if !strings.Contains(c.Device(), be.Device()) || !strings.Contains(c.Device(), "up to 3 blocks on the CPU") {
					t.Fatalf("device %q", c.Device())
				}
				in := srcs[:tc.blocks]
				lens := make([]int, len(in))
				for i, s := range in {
					lens[i] = len(s)
				}
				got, err := c.EncodeBatch(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				for i := range in {
					if !bytes.Equal(got[i], want[k][i]) {
						t.Fatalf("block %d: payload differs from the CPU codec's", i)
					}
				}
				afterEnc := calls(be)
				dec, err := c.DecodeBatch(ctx, got, lens)
				if err != nil {
					t.Fatal(err)
				}
				for i := range in {
					if !bytes.Equal(dec[i], in[i]) {
						t.Fatalf("block %d decoded wrong", i)
					}
				}
				if tc.backend != (afterEnc > 0) || tc.backend != (calls(be) > afterEnc) {
					t.Fatalf("%d blocks with SmallOnCPU 3: backend calls %d encoding, %d decoding; want them %v", len(in), afterEnc, calls(be)-afterEnc, tc.backend)
				}
				if tc.backend {
					return
				}
				// Concurrent single calls gather into batches of at most 3
				// blocks here: the CPU codes them, to the same bytes.
				var wg sync.WaitGroup
				errs := make([]error, len(in))
				for i := range in {
					wg.Go(func() {
						p, err := c.Encode(ctx, nil, in[i])
						if err == nil && !bytes.Equal(p, want[k][i]) {
							err = errors.New("single-call payload differs from the CPU codec's")
						}
						if err == nil {
							var d []byte
							if d, err = c.Decode(ctx, nil, p, len(in[i])); err == nil && !bytes.Equal(d, in[i]) {
								err = errors.New("single call decoded wrong")
							}
						}
						errs[i] = err
					})
				}
				wg.Wait()
				if err := firstErr(errs); err != nil {
					t.Fatal(err)
				}
				if n := calls(be); n != 0 {
					t.Fatalf("%d backend calls for single calls of at most 3 blocks", n)
				}
			})
		}
	}
}
