package coder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/lm"
)

// LMBackend runs the neural LM of the lm and lm+cm codecs on an accelerator
// for many blocks at once (predictor/gpu's *Model is one). Its results must
// be those of the Go reference bit for bit; an error means the work was not
// done (the codecs then code on the CPU).
type LMBackend interface {
	// Device names where it runs, e.g. "cuda:0 NVIDIA H200".
	Device() string
	// PathProbs returns for every byte of every block the 8 probabilities
	// that EncodeSymbol codes the byte's bits with (symbolP along the byte,
	// most significant bit first): probs[b][8*t+k].
	PathProbs(ctx context.Context, blocks [][]byte) ([][]uint16, error)
	// DecodeLM decodes payloads of codec lm (the arithmetic coder's
	// streams). Any error, a damaged stream included, means: decode these
	// blocks another way.
	DecodeLM(ctx context.Context, streams [][]byte, rawLens []int) ([][]byte, error)
	// Streams starts n cold streams for stepwise decoding.
	Streams(ctx context.Context, n int) (predictor.ByteStreams, error)
}

// LMCMBackend is an LMBackend that also runs the rest of codec lm+cm (cm,
// the lm+cm mixer and the arithmetic coder) for many blocks at once
// (predictor/gpu's *Model is one), so that only data and payloads cross to
// the host. Its payloads must be those of the Go reference bit for bit.
type LMCMBackend interface {
	LMBackend
	// EncodeLMCM codes blocks (each at least one byte) with lm+cm of rule
	// (the codec id whose mixing stage runs), block i with cm parameter byte
	// params[i], and returns each block's arithmetic-coder stream (the
	// payload after the parameter byte), nil for a block it could not code
	// (to be coded another way), and, for block sample, the LM's path
	// probabilities (8 per byte, as PathProbs).
	EncodeLMCM(ctx context.Context, rule int, blocks [][]byte, params []byte, sample int) (streams [][]byte, sampleProbs []uint16, err error)
	// DecodeLMCM decodes lm+cm streams (payloads after their parameter
	// bytes params); bad[i] marks a stream that did not decode as a valid
	// one of its length.
	DecodeLMCM(ctx context.Context, rule int, streams [][]byte, rawLens []int, params []byte) (out [][]byte, bad []bool, err error)
}

// BatchCodec is a codec that codes many blocks at once much faster than one
// by one (the LM codecs on a GPU). Callers that hold many blocks should use
// the batch methods; single-block Encode and Decode calls made concurrently
// are gathered into batches too.
type BatchCodec interface {
	Codec
	// Device names where the codec's model runs: "cpu" or the accelerator.
	Device() string
	// EncodeBatch returns the payload of every block (as Encode).
	EncodeBatch(ctx context.Context, srcs [][]byte) ([][]byte, error)
	// DecodeBatch decodes every payload (as Decode); the error names the
	// first block that failed.
	DecodeBatch(ctx context.Context, payloads [][]byte, rawLens []int) ([][]byte, error)
}

// Accel makes the LM codecs run their model on an accelerator.
type Accel struct {
	// Backend runs the model.
	Backend LMBackend
	// MaxBatch bounds the blocks of one backend call (and, for lm+cm, the
	// cm models in memory at once: about 5 MiB each at 64 KiB blocks).
	MaxBatch int
	// Wait is how long a single-block call waits at least for others to
	// join its batch (longer after long batches: see batcher).
	Wait time.Duration
	// Log receives a line for every batch that falls back to the CPU.
	Log *slog.Logger
	// SmallOnCPU: a batch of at most this many blocks is coded with the Go
	// model on the CPU cores instead, in lockstep groups. An accelerator
	// call steps through every position of its longest block, so it takes
	// about as long for one block as for dozens (an H200 decodes one 64
	// KiB block of lm+cm in about 4 s), while a CPU core with a fast kernel
	// codes one in about 2 s: a lone read or write is quicker on the CPU.
	// 0 sends every batch to the accelerator.
	SmallOnCPU int
}

// SmallOnCPU returns the Accel.SmallOnCPU default of the LM codecs (lm,
// lm+cm) for model m: one block per core where the Go model runs on AVX-512
// VNNI, else 0 (slower kernels lose to the GPU). Measured on the H200
// machine (16 cores), the CPU cores against the GPU, encode / decode
// seconds. lm+cm, 64 KiB blocks, with id 7's warp kernels: 16 blocks 2.3 /
// 3.5 against 3.0 / 4.3, 32 blocks 4.3 / 6.3 against 3.1 / 4.4 (before the
// warp kernels the GPU took about 4.7 / 6.6 s for 32 blocks, and the rule
// was two blocks per core). lm, 16 KiB blocks: 16 blocks 0.45 / 0.66
// against 0.69 / 0.71, 32 blocks 1.15 / 1.36 against 0.87 / 0.85.
func SmallOnCPU(m *lm.Model) int {
	if m.Kernel() != "avx512vnni" {
		return 0
	}
	return runtime.GOMAXPROCS(0)
}

// accel is an Accel in use by one codec.
type accel struct {
	Accel
	name string
	enc  batcher
	dec  batcher
	// broken is set when the accelerator's results did not match the Go
	// model's: from then on the codec codes on the CPU.
	broken atomic.Bool
	// batches counts encoding batches, to vary the block checked.
	batches atomic.Uint64
}

// small reports whether a batch of n blocks goes to the CPU cores instead of
// the accelerator (SmallOnCPU). It is asked once per batch as it arrives
// (a batch method's call, a batch of gathered single calls), never of the
// parts a batch is cut into.
func (a *accel) small(n int) bool { return a != nil && n <= a.SmallOnCPU }

// checkLen is how many leading bytes of one block per encoding batch are
// checked against the Go model before the accelerator's probabilities are
// used: a safety net, so that a faulty GPU cannot store blocks that only it
// could decode.
const checkLen = 32

// probs returns the accelerator's path probabilities for srcs after checking
// a sample of them against the CPU model pred. A mismatch marks the
// accelerator broken (logged) and returns an error.
func (a *accel) probs(ctx context.Context, pred predictor.ByteModel, srcs [][]byte) ([][]uint16, error) {
	if a.broken.Load() {
		return nil, errors.New("accelerator disabled after a result that did not match the Go model")
	}
	probs, err := a.Backend.PathProbs(ctx, srcs)
	if err != nil {
		return nil, err
	}
	if len(probs) != len(srcs) {
		return nil, fmt.Errorf("accelerator gave probabilities for %d of %d blocks", len(probs), len(srcs))
	}
	i := int(a.batches.Add(1) % uint64(len(srcs)))
	if err := a.checkProbs(ctx, pred, i, srcs[i], probs[i]); err != nil {
		return nil, err
	}
	return probs, nil
}

// checkProbs checks the accelerator's path probabilities probs of block i
// (src) over its first checkLen bytes against the CPU model pred. A mismatch
// marks the accelerator broken (logged) and returns an error wrapping
// errMismatch.
func (a *accel) checkProbs(ctx context.Context, pred predictor.ByteModel, i int, src []byte, probs []uint16) error {
	if len(probs) != 8*len(src) {
		return fmt.Errorf("accelerator gave %d bit probabilities for %d bytes", len(probs), len(src))
	}
	src = src[:min(len(src), checkLen)]
	var cum [257]uint32
	want := make([]uint16, 8)
	err := pred.Score(ctx, [][]byte{src}, func(_, pos int, d *predictor.Dist) error {
		if err := cumulate(d, &cum); err != nil {
			return err
		}
		pathProbs(&cum, src[pos], want)
		for k, w := range want {
			if probs[8*pos+k] != w {
				return fmt.Errorf("%w: block %d byte %d bit %d: accelerator %d, Go model %d", errMismatch, i, pos, k, probs[8*pos+k], w)
			}
		}
		return nil
	})
	if errors.Is(err, errMismatch) {
		a.markBroken(err)
	}
	return err
}

// markBroken disables the accelerator after a result that differs from the
// Go reference's (logged once).
func (a *accel) markBroken(err error) {
	if !a.broken.Swap(true) {
		a.Log.Error("accelerator results differ from the Go model: it is disabled, coding on the CPU", "codec", a.name, "device", a.Backend.Device(), "err", err)
	}
}

var errMismatch = errors.New("accelerator result differs from the Go model")

func newAccel(a Accel, name string) *accel {
	if a.MaxBatch < 1 {
		a.MaxBatch = 8192
	}
	if a.Wait <= 0 {
		a.Wait = 2 * time.Millisecond
	}
	if a.Log == nil {
		a.Log = slog.Default()
	}
	return &accel{Accel: a, name: name}
}

// fellBack logs that a batch is coded on the CPU after the accelerator
// failed.
func (a *accel) fellBack(what string, n int, err error) {
	a.Log.Warn("accelerator failed, coding on the CPU instead", "codec", a.name, "device", a.Backend.Device(), "work", what, "blocks", n, "err", err)
}

// pipelined calls f on consecutive chunks [start, end) of n blocks, two
// chunks at a time, so that the CPU work of one (arithmetic coding, cm and
// the mixer) overlaps the accelerator work of the other. Chunks hold at most
// MaxBatch blocks, and a batch of 64 blocks or more is cut in two at least.
func (a *accel) pipelined(n int, f func(start, end int)) {
	size := min(a.MaxBatch, max(n, 1))
	if n >= 64 {
		size = min(size, (n+1)/2)
	}
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for start := 0; start < n; start += size {
		end := min(n, start+size)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(start, end)
		})
	}
	wg.Wait()
}

// batchReq is one block's request to a batcher.
type batchReq struct {
	in     []byte // raw block (encode) or payload (decode); owned by the request
	rawLen int
	out    []byte
	err    error
	done   chan struct{}
}

// batcher gathers concurrent single-block calls into batches of at most max
// blocks. An idle batcher waits at most wait for a batch to fill; while a
// batch runs, every call that arrives joins the next one, which starts as
// soon as the running batch ends. So under load the batches grow to what
// arrived during one batch's run (a GPU batch costs about the same for a few
// blocks as for thousands), instead of splitting into many small batches
// that each pay the whole run.
//
// An idle batcher's wait grows with how long the last batch ran (a 64th of
// it, at most maxBatchWait): a GPU batch of 64 KiB blocks runs for seconds,
// and a call that misses it waits for a whole batch more, so gathering the
// calls that come in a burst (the first reads of many files) for a few tens
// of milliseconds costs little and saves a batch.
type batcher struct {
	mu      sync.Mutex
	pending []*batchReq
	timer   *time.Timer
	running bool
	last    time.Duration // how long the last batch ran
}

// maxBatchWait bounds how long an idle batcher waits for a batch to fill.
const maxBatchWait = 50 * time.Millisecond

// waitLocked is how long an idle batcher waits for a batch to fill, given
// the configured minimum. b.mu is held.
func (b *batcher) waitLocked(floor time.Duration) time.Duration {
	return max(floor, min(b.last/64, maxBatchWait))
}

// do adds r to the next batch and waits for it; run codes a batch (it must
// set out or err of every request).
func (b *batcher) do(ctx context.Context, r *batchReq, max int, wait time.Duration, run func([]*batchReq)) error {
	r.done = make(chan struct{})
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if !b.running {
		if len(b.pending) >= max {
			b.startLocked(max, run)
		} else if b.timer == nil {
			b.timer = time.AfterFunc(b.waitLocked(wait), func() {
				b.mu.Lock()
				b.timer = nil
				if !b.running && len(b.pending) > 0 {
					b.startLocked(max, run)
				}
				b.mu.Unlock()
			})
		}
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLocked takes up to max pending requests and runs them as a batch; when
// it ends, the requests that arrived meanwhile run next. b.mu is held.
func (b *batcher) startLocked(max int, run func([]*batchReq)) {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	n := min(len(b.pending), max)
	take := b.pending[:n:n]
	b.pending = append([]*batchReq(nil), b.pending[n:]...)
	b.running = true
	go func() {
		start := time.Now()
		runBatch(take, run)
		b.mu.Lock()
		b.last = time.Since(start)
		b.running = false
		if len(b.pending) > 0 {
			b.startLocked(max, run)
		}
		b.mu.Unlock()
	}()
}

func runBatch(reqs []*batchReq, run func([]*batchReq)) {
	run(reqs)
	for _, r := range reqs {
		close(r.done)
	}
}

// parallelFor calls f(i) for i in [0, n) on up to GOMAXPROCS goroutines.
func parallelFor(n int, f func(i int)) {
	w := min(n, runtime.GOMAXPROCS(0))
	if w <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	for g := range w {
		wg.Go(func() {
			for i := g; i < n; i += w {
				f(i)
			}
		})
	}
	wg.Wait()
}

// encodePath codes src with the bit probabilities probs (8 per byte, as
// LMBackend.PathProbs gives them): exactly what EncodeSymbol writes for the
// tables they come from.
func encodePath(dst, src []byte, probs []uint16) ([]byte, error) {
	if len(probs) != 8*len(src) {
		return dst, fmt.Errorf("accelerator gave %d bit probabilities for %d bytes", len(probs), len(src))
	}
	if len(src) == 0 {
		return dst, nil
	}
	e := Encoder{}
	e.Reset(dst)
	for t, x := range src {
		p := probs[8*t : 8*t+8 : 8*t+8]
		for k := range 8 {
			e.EncodeBit(int(x>>(7-k))&1, int(p[k]))
		}
	}
	return e.Finish(), nil
}

// firstErr returns the first non-nil error, naming its block.
func firstErr(errs []error) error {
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("block %d of the batch: %w", i, err)
		}
	}
	return nil
}

// ---- lm ----

// NewLMAccel returns the lm codec for model m with its model run by a.
func NewLMAccel(m predictor.ByteModel, model ModelID, a Accel) *ByteCodec {
	c := NewByteCodec(IDLM, "lm", model, m)
	c.acc = newAccel(a, "lm")
	return c
}

// Device implements BatchCodec.
func (c *ByteCodec) Device() string { return c.acc.device() }

// EncodeBatch implements BatchCodec.
func (c *ByteCodec) EncodeBatch(ctx context.Context, srcs [][]byte) ([][]byte, error) {
	return encodeBatch(len(srcs), c.acc, func(start, end int, out [][]byte, errs []error) { c.encodeGroup(ctx, srcs[start:end], out, errs) },
		func(start, end int, out [][]byte, errs []error) { c.encodeAccel(ctx, srcs[start:end], out, errs) })
}

func (c *ByteCodec) encodeAccel(ctx context.Context, srcs, out [][]byte, errs []error) {
	c.acc.encode(ctx, c.pred, srcs, out, errs,
		func(src []byte) ([]byte, error) { return c.encodeCPU(ctx, nil, src) },
		func(src []byte, probs []uint16) ([]byte, error) { return encodePath(nil, src, probs) })
}

// encodeBatch codes n blocks: with the accelerator a, in its overlapping
// parts by accel(start, end, out[start:end], errs[start:end]); without one
// (a nil), or when the batch is small for it (SmallOnCPU), in groups on the
// CPU cores by cpu (see inGroups).
func encodeBatch(n int, a *accel, cpu func(start, end int, out [][]byte, errs []error), accel func(start, end int, out [][]byte, errs []error)) ([][]byte, error) {
	out := make([][]byte, n)
	errs := make([]error, n)
	if a != nil && !a.small(n) {
		a.pipelined(n, func(start, end int) { accel(start, end, out[start:end], errs[start:end]) })
	} else {
		inGroups(n, func(start, end int) { cpu(start, end, out[start:end], errs[start:end]) })
	}
	return out, firstErr(errs)
}

// encode codes srcs into out and errs with the bit probabilities pred gives on
// the accelerator (withProbs), or, when the accelerator fails, on the CPU
// (cpu), logged.
func (a *accel) encode(ctx context.Context, pred predictor.ByteModel, srcs, out [][]byte, errs []error,
	cpu func(src []byte) ([]byte, error), withProbs func(src []byte, probs []uint16) ([]byte, error)) {
	probs, err := a.probs(ctx, pred, srcs)
	if err != nil {
		if ctx.Err() != nil {
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return
		}
		a.fellBack("encode", len(srcs), err)
		parallelFor(len(srcs), func(i int) { out[i], errs[i] = cpu(srcs[i]) })
		return
	}
	parallelFor(len(srcs), func(i int) { out[i], errs[i] = withProbs(srcs[i], probs[i]) })
}

// DecodeBatch implements BatchCodec.
func (c *ByteCodec) DecodeBatch(ctx context.Context, payloads [][]byte, rawLens []int) ([][]byte, error) {
	if len(payloads) != len(rawLens) {
		return nil, fmt.Errorf("%d payloads but %d lengths", len(payloads), len(rawLens))
	}
	return decodeBatch(ctx, c.acc, payloads, rawLens, c.decodeAccel, c.decodeGroup)
}

// runCodec is what encodeRun and decodeRun need of a codec (ByteCodec and
// LMCM): its lockstep group methods for the CPU and its accelerator paths.
type runCodec interface {
	encodeGroup(ctx context.Context, srcs, out [][]byte, errs []error)
	encodeAccel(ctx context.Context, srcs, out [][]byte, errs []error)
	decodeGroup(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error)
	decodeAccel(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error)
}

// encodeRun codes a batch of gathered single calls of codec c: on the CPU
// cores in lockstep groups when it is small (SmallOnCPU), else on acc.
func encodeRun(ctx context.Context, acc *accel, c runCodec, srcs, out [][]byte, errs []error) {
	if acc.small(len(srcs)) {
		inGroups(len(srcs), func(start, end int) { c.encodeGroup(ctx, srcs[start:end], out[start:end], errs[start:end]) })
		return
	}
	c.encodeAccel(ctx, srcs, out, errs)
}

// decodeRun decodes a batch of gathered single calls, as encodeRun codes.
func decodeRun(ctx context.Context, acc *accel, c runCodec, pays [][]byte, lens []int, out [][]byte, errs []error) {
	if acc.small(len(pays)) {
		inGroups(len(pays), func(start, end int) {
			c.decodeGroup(ctx, pays[start:end], lens[start:end], out[start:end], errs[start:end])
		})
		return
	}
	c.decodeAccel(ctx, pays, lens, out, errs)
}

// wellShaped returns the payloads of a good shape for their lengths (with
// their indices), and sets the results of the others: empty for an empty
// block, else the shape's error.
func (c *ByteCodec) wellShaped(payloads [][]byte, rawLens []int, out [][]byte, errs []error) (idx []int, pays [][]byte, lens []int) {
	for i, p := range payloads {
		if empty, err := checkPayloadShape(c.name, p, rawLens[i]); empty || err != nil {
			if errs[i] = err; err == nil {
				out[i] = []byte{}
			}
			continue
		}
		idx, pays, lens = append(idx, i), append(pays, p), append(lens, rawLens[i])
	}
	return idx, pays, lens
}

func (c *ByteCodec) decodeAccel(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error) {
	// Blocks of a bad shape never reach the accelerator.
	idx, pays, lens := c.wellShaped(payloads, rawLens, out, errs)
	if len(idx) == 0 {
		return
	}
	if c.acc.broken.Load() {
		parallelFor(len(idx), func(k int) {
			i := idx[k]
			out[i], errs[i] = c.decodeCPU(ctx, nil, payloads[i], rawLens[i])
		})
		return
	}
	res, err := c.acc.Backend.DecodeLM(ctx, pays, lens)
	if err != nil {
		if ctx.Err() != nil {
			for _, i := range idx {
				errs[i] = ctx.Err()
			}
			return
		}
		// A damaged block fails the whole call: decoding each block on the
		// CPU names it precisely.
		c.acc.Log.Debug("accelerated decode failed, decoding on the CPU", "codec", c.name, "blocks", len(idx), "err", err)
		parallelFor(len(idx), func(k int) {
			i := idx[k]
			out[i], errs[i] = c.decodeCPU(ctx, nil, payloads[i], rawLens[i])
		})
		return
	}
	for k, i := range idx {
		out[i] = res[k]
	}
}

// ---- lm+cm ----

// NewLMCMAccel returns the lm+cm codec (id 7) for model m (with model id
// model) and cm models bounded by cmMemory bytes, with the LM run by a.
func NewLMCMAccel(m predictor.ByteModel, model ModelID, cmMemory int64, a Accel) *LMCM {
	c := newLMCM(IDLMCM, m, model, cmMemory)
	c.acc = newAccel(a, c.name)
	return c
}

// NewLMCM2Accel returns the superseded lm+cm.2 codec (id 6) for model m
// (with model id model) and cm models bounded by cmMemory bytes, with the LM
// run by a.
func NewLMCM2Accel(m predictor.ByteModel, model ModelID, cmMemory int64, a Accel) *LMCM {
	c := newLMCM(IDLMCM2, m, model, cmMemory)
	c.acc = newAccel(a, c.name)
	return c
}

// NewLMCM1Accel returns the superseded lm+cm.1 codec (id 5) for model m
// (with model id model) and cm models bounded by cmMemory bytes, with the LM
// run by a.
func NewLMCM1Accel(m predictor.ByteModel, model ModelID, cmMemory int64, a Accel) *LMCM {
	c := newLMCM(IDLMCM1, m, model, cmMemory)
	c.acc = newAccel(a, c.name)
	return c
}

// Device implements BatchCodec.
func (c *LMCM) Device() string { return c.acc.device() }

// EncodeBatch implements BatchCodec.
func (c *LMCM) EncodeBatch(ctx context.Context, srcs [][]byte) ([][]byte, error) {
	if c.full() != nil && !c.acc.small(len(srcs)) {
		return c.acc.sequential(len(srcs), func(start, end int, out [][]byte, errs []error) { c.encodeFull(ctx, srcs[start:end], out, errs) })
	}
	return encodeBatch(len(srcs), c.acc, func(start, end int, out [][]byte, errs []error) { c.encodeGroup(ctx, srcs[start:end], out, errs) },
		func(start, end int, out [][]byte, errs []error) { c.encodeAccel(ctx, srcs[start:end], out, errs) })
}

// full returns the accelerator's backend when it runs the whole codec
// (LMCMBackend) of this codec's id, else nil: then the accelerator runs the
// LM and cm and the mixer run on the CPU.
func (c *LMCM) full() LMCMBackend {
	if c.acc == nil {
		return nil
	}
	b, _ := c.acc.Backend.(LMCMBackend)
	if r, ok := b.(interface{ HasLMCMRule(rule int) bool }); ok && !r.HasLMCMRule(int(c.id)) {
		return nil
	}
	return b
}

// sequential runs f on consecutive chunks of at most MaxBatch of n blocks,
// one after the other: for backends that do all the work of a chunk, so that
// a chunk is as large as allowed.
func (a *accel) sequential(n int, f func(start, end int, out [][]byte, errs []error)) ([][]byte, error) {
	out := make([][]byte, n)
	errs := make([]error, n)
	for start := 0; start < n; start += a.MaxBatch {
		end := min(n, start+a.MaxBatch)
		f(start, end, out[start:end], errs[start:end])
	}
	return out, firstErr(errs)
}

func (c *LMCM) encodeAccel(ctx context.Context, srcs, out [][]byte, errs []error) {
	if c.full() != nil {
		c.encodeFull(ctx, srcs, out, errs)
		return
	}
	c.acc.encode(ctx, c.lm, srcs, out, errs,
		func(src []byte) ([]byte, error) { return c.encodeCPU(ctx, nil, src) },
		func(src []byte, probs []uint16) ([]byte, error) { return c.encodeProbs(nil, src, probs) })
}

// encodeFull codes srcs entirely on the accelerator (LMCMBackend). One block
// per call is checked: its LM probabilities over checkLen bytes against the
// Go model, and its payload against the Go coder's from those
// probabilities (cm, mixer and coder in full). A mismatch disables the
// accelerator; any failure codes the batch on the CPU, logged. Blocks the
// accelerator could not code are coded with its LM probabilities and cm on
// the CPU.
func (c *LMCM) encodeFull(ctx context.Context, srcs, out [][]byte, errs []error) {
	cpu := func(idx []int) {
		parallelFor(len(idx), func(k int) { out[idx[k]], errs[idx[k]] = c.encodeCPU(ctx, nil, srcs[idx[k]]) })
	}
	var idx []int
	var blocks [][]byte
	var params []byte
	for i, src := range srcs {
		if len(src) == 0 {
			continue // the payload of an empty block is empty
		}
		idx, blocks, params = append(idx, i), append(blocks, src), append(params, c.cm.Params(len(src)))
	}
	if len(idx) == 0 {
		return
	}
	if c.acc.broken.Load() {
		cpu(idx)
		return
	}
	k := int(c.acc.batches.Add(1) % uint64(len(idx)))
	streams, sp, err := c.full().EncodeLMCM(ctx, int(c.id), blocks, params, k)
	if err == nil && len(streams) != len(blocks) {
		err = fmt.Errorf("accelerator gave %d lm+cm streams for %d blocks", len(streams), len(blocks))
	}
	if err == nil {
		err = c.acc.checkProbs(ctx, c.lm, idx[k], blocks[k], sp)
	}
	if err == nil && streams[k] != nil {
		var want []byte
		if want, err = c.encodeProbs(nil, blocks[k], sp); err == nil && !bytes.Equal(want[1:], streams[k]) {
			err = fmt.Errorf("%w: block %d: lm+cm payload of %d bytes, the Go coder's from the same LM probabilities %d", errMismatch, idx[k], len(streams[k])+1, len(want))
			c.acc.markBroken(err)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			for _, i := range idx {
				errs[i] = ctx.Err()
			}
			return
		}
		c.acc.fellBack("encode", len(idx), err)
		cpu(idx)
		return
	}
	var rest []int
	for j, i := range idx {
		if streams[j] == nil {
			rest = append(rest, i)
			continue
		}
		p := make([]byte, 1+len(streams[j]))
		p[0] = params[j]
		copy(p[1:], streams[j])
		out[i] = p
	}
	if len(rest) > 0 {
		sub := make([][]byte, len(rest))
		for j, i := range rest {
			sub[j] = srcs[i]
		}
		subOut := make([][]byte, len(rest))
		subErr := make([]error, len(rest))
		c.acc.encode(ctx, c.lm, sub, subOut, subErr,
			func(src []byte) ([]byte, error) { return c.encodeCPU(ctx, nil, src) },
			func(src []byte, probs []uint16) ([]byte, error) { return c.encodeProbs(nil, src, probs) })
		for j, i := range rest {
			out[i], errs[i] = subOut[j], subErr[j]
		}
	}
}

// encodeProbs codes src with the LM's bit probabilities given (8 per byte).
func (c *LMCM) encodeProbs(dst, src []byte, probs []uint16) ([]byte, error) {
	if len(probs) != 8*len(src) {
		return dst, fmt.Errorf("accelerator gave %d bit probabilities for %d bytes", len(probs), len(src))
	}
	if len(src) == 0 {
		return dst, nil
	}
	return c.encodeWith(dst, src, func(_ *lmcmState, code func(pos int, pl []uint16)) error {
		for t := range src {
			code(t, probs[8*t:8*t+8:8*t+8])
		}
		return nil
	})
}

// DecodeBatch implements BatchCodec.
func (c *LMCM) DecodeBatch(ctx context.Context, payloads [][]byte, rawLens []int) ([][]byte, error) {
	if len(payloads) != len(rawLens) {
		return nil, fmt.Errorf("%d payloads but %d lengths", len(payloads), len(rawLens))
	}
	if c.full() != nil && !c.acc.small(len(payloads)) {
		return c.acc.sequential(len(payloads), func(start, end int, out [][]byte, errs []error) {
			c.decodeFull(ctx, payloads[start:end], rawLens[start:end], out, errs)
		})
	}
	return decodeBatch(ctx, c.acc, payloads, rawLens, c.decodeAccel, c.decodeGroup)
}

// decodeFull decodes lm+cm payloads entirely on the accelerator
// (LMCMBackend). A block it reports damaged, or every block when it fails,
// is decoded on the CPU (which names the damage precisely).
func (c *LMCM) decodeFull(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error) {
	cpu := func(idx []int) {
		parallelFor(len(idx), func(k int) { out[idx[k]], errs[idx[k]] = c.decodeCPU(ctx, nil, payloads[idx[k]], rawLens[idx[k]]) })
	}
	var idx []int
	var streams [][]byte
	var lens []int
	var params []byte
	for i, p := range payloads {
		if empty, err := checkPayloadShape(c.name, p, rawLens[i]); empty || err != nil {
			if errs[i] = err; err == nil {
				out[i] = []byte{}
			}
			continue
		}
		if err := c.cm.Check(p[0]); err != nil {
			if errors.Is(err, predictor.ErrBadParams) {
				err = fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			errs[i] = err
			continue
		}
		idx, streams, lens, params = append(idx, i), append(streams, p[1:]), append(lens, rawLens[i]), append(params, p[0])
	}
	if len(idx) == 0 {
		return
	}
	if c.acc.broken.Load() {
		cpu(idx)
		return
	}
	res, bad, err := c.full().DecodeLMCM(ctx, int(c.id), streams, lens, params)
	if err == nil && (len(res) != len(idx) || len(bad) != len(idx)) {
		err = fmt.Errorf("accelerator gave %d lm+cm blocks for %d", len(res), len(idx))
	}
	if err != nil {
		if ctx.Err() != nil {
			for _, i := range idx {
				errs[i] = ctx.Err()
			}
			return
		}
		c.acc.fellBack("decode", len(idx), err)
		cpu(idx)
		return
	}
	var again []int
	for j, i := range idx {
		if bad[j] || len(res[j]) != rawLens[i] {
			again = append(again, i)
			continue
		}
		out[i] = res[j]
	}
	if len(again) > 0 {
		c.acc.Log.Debug("accelerator found damaged lm+cm blocks, decoding them on the CPU", "blocks", len(again))
		cpu(again)
	}
}

// pushPredicter is implemented by byte streams that can push a byte to
// streams and predict their next one in one round trip (predictor/gpu's).
type pushPredicter interface {
	PushPredict(ctx context.Context, ids []int, syms []byte, dst []predictor.Dist) error
}

// lmcmBlock is one block being decoded by decodeAccel.
type lmcmBlock struct {
	i   int // index in the batch
	s   *lmcmState
	d   Decoder
	out []byte
	err error
}

// startBlocks starts decoding payloads: each block's cm state and decoder,
// or its result (empty) or error for a payload of a bad shape.
func (c *LMCM) startBlocks(payloads [][]byte, rawLens []int, out [][]byte, errs []error) []*lmcmBlock {
	var blocks []*lmcmBlock
	for i, p := range payloads {
		if empty, err := checkPayloadShape(c.name, p, rawLens[i]); empty || err != nil {
			if errs[i] = err; err == nil {
				out[i] = []byte{}
			}
			continue
		}
		s, err := c.newState(rawLens[i], p[0])
		if err != nil {
			errs[i] = err
			continue
		}
		b := &lmcmBlock{i: i, s: s, out: make([]byte, 0, rawLens[i])}
		b.d.Reset(p[1:])
		blocks = append(blocks, b)
	}
	return blocks
}

// releaseBlocks gives the blocks' cm states back.
func (c *LMCM) releaseBlocks(blocks []*lmcmBlock) {
	for _, b := range blocks {
		c.release(b.s)
	}
}

// decodeAccel decodes lm+cm blocks with the LM on the accelerator (one round
// trip per byte position for all blocks) and cm and the mixer on the CPU
// cores, one goroutine per block share.
func (c *LMCM) decodeAccel(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error) {
	if c.full() != nil {
		c.decodeFull(ctx, payloads, rawLens, out, errs)
		return
	}
	blocks := c.startBlocks(payloads, rawLens, out, errs)
	defer c.releaseBlocks(blocks)
	if len(blocks) == 0 {
		return
	}
	err := func() error {
		if c.acc.broken.Load() {
			return errors.New("accelerator disabled")
		}
		st, err := c.acc.Backend.Streams(ctx, len(blocks))
		if err != nil {
			return err
		}
		defer st.Close()
		pp, fused := st.(pushPredicter)
		ids := make([]int, 0, len(blocks))
		next := make([]int, 0, len(blocks))
		dists := make([]predictor.Dist, len(blocks))
		syms := make([]byte, len(blocks))
		nsyms := make([]byte, 0, len(blocks))
		for k := range blocks {
			ids = append(ids, k)
		}
		if err := st.Predict(ctx, ids, dists[:len(ids)]); err != nil {
			return err
		}
		for pos := 0; len(ids) > 0; pos++ {
			parallelFor(len(ids), func(j int) {
				b := blocks[ids[j]]
				if err := cumulate(&dists[j], &b.s.cum); err != nil {
					b.err = fmt.Errorf("accelerator gave an invalid distribution: %w", err)
					return
				}
				x := b.s.decodeByte(&b.d)
				if b.d.Overrun() {
					b.err = fmt.Errorf("%w: %s payload ends after %d of %d bytes", ErrCorrupt, c.name, pos, rawLens[b.i])
				}
				syms[j] = x
				b.out = append(b.out, x)
			})
			// The blocks that go on get their byte pushed and their next
			// table predicted.
			next, nsyms = next[:0], nsyms[:0]
			for j, k := range ids {
				if b := blocks[k]; b.err == nil && pos+1 < rawLens[b.i] {
					next, nsyms = append(next, k), append(nsyms, syms[j])
				}
			}
			ids, next = next, ids
			if len(ids) == 0 {
				break
			}
			if fused {
				if err := pp.PushPredict(ctx, ids, nsyms, dists[:len(ids)]); err != nil {
					return err
				}
				continue
			}
			if err := st.Push(ids, nsyms); err != nil {
				return err
			}
			if err := st.Predict(ctx, ids, dists[:len(ids)]); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		if ctx.Err() != nil {
			for _, b := range blocks {
				errs[b.i] = ctx.Err()
			}
			return
		}
		c.acc.fellBack("decode", len(blocks), err)
		parallelFor(len(blocks), func(k int) {
			i := blocks[k].i
			out[i], errs[i] = c.decodeCPU(ctx, nil, payloads[i], rawLens[i])
		})
		return
	}
	for _, b := range blocks {
		if b.err == nil {
			if err := b.d.Finish(); err != nil {
				b.err = fmt.Errorf("%s: %w", c.name, err)
			}
		}
		if b.err != nil {
			errs[b.i] = b.err
			continue
		}
		out[b.i] = b.out
	}
}

// ---- single-block calls through the batchers ----

// encodeBatched codes one block as part of a batch of concurrent calls.
func (a *accel) encodeBatched(ctx context.Context, dst, src []byte, run func(ctx context.Context, srcs [][]byte) ([][]byte, []error)) ([]byte, error) {
	r := &batchReq{in: append([]byte(nil), src...)}
	err := a.enc.do(ctx, r, a.MaxBatch, a.Wait, func(reqs []*batchReq) {
		srcs := make([][]byte, len(reqs))
		for i, q := range reqs {
			srcs[i] = q.in
		}
		outs, errs := run(context.Background(), srcs)
		for i, q := range reqs {
			q.out, q.err = outs[i], errs[i]
		}
	})
	if err != nil {
		return dst, err
	}
	return append(dst, r.out...), nil
}

// decodeBatched decodes one block as part of a batch of concurrent calls.
func (a *accel) decodeBatched(ctx context.Context, dst, payload []byte, rawLen int, run func(ctx context.Context, pays [][]byte, lens []int) ([][]byte, []error)) ([]byte, error) {
	r := &batchReq{in: append([]byte(nil), payload...), rawLen: rawLen}
	err := a.dec.do(ctx, r, a.MaxBatch, a.Wait, func(reqs []*batchReq) {
		pays := make([][]byte, len(reqs))
		lens := make([]int, len(reqs))
		for i, q := range reqs {
			pays[i], lens[i] = q.in, q.rawLen
		}
		outs, errs := run(context.Background(), pays, lens)
		for i, q := range reqs {
			q.out, q.err = outs[i], errs[i]
		}
	})
	if err != nil {
		return dst, err
	}
	return append(dst, r.out...), nil
}

// decodeBatch decodes payloads on acc in pipelined groups (onAcc) or,
// without one or when the batch is small for it (SmallOnCPU), in groups on
// the CPU cores (cpu; see inGroups).
func decodeBatch(ctx context.Context, acc *accel, payloads [][]byte, rawLens []int,
	onAcc func(ctx context.Context, pays [][]byte, lens []int, out [][]byte, errs []error),
	cpu func(ctx context.Context, pays [][]byte, lens []int, out [][]byte, errs []error)) ([][]byte, error) {
	out := make([][]byte, len(payloads))
	errs := make([]error, len(payloads))
	run := func(f func(ctx context.Context, pays [][]byte, lens []int, out [][]byte, errs []error)) func(start, end int) {
		return func(start, end int) {
			f(ctx, payloads[start:end], rawLens[start:end], out[start:end], errs[start:end])
		}
	}
	if acc != nil && !acc.small(len(payloads)) {
		acc.pipelined(len(payloads), run(onAcc))
	} else {
		inGroups(len(payloads), run(cpu))
	}
	return out, firstErr(errs)
}

// batchRun runs a batch method and returns per-block results.
func batchRun(n int, f func(out [][]byte, errs []error)) ([][]byte, []error) {
	out := make([][]byte, n)
	errs := make([]error, n)
	f(out, errs)
	return out, errs
}

// ---- block records in batches ----

// EncodeBatchWith codes every raw block with codec c and returns complete
// block records, through c's batch method when it has one.
func (r *Registry) EncodeBatchWith(ctx context.Context, c Codec, raws [][]byte) ([][]byte, error) {
	bc, ok := c.(BatchCodec)
	if !ok {
		recs := make([][]byte, len(raws))
		errs := make([]error, len(raws))
		parallelFor(len(raws), func(i int) { recs[i], errs[i] = r.EncodeWith(ctx, nil, c, raws[i]) })
		return recs, firstErr(errs)
	}
	for i, raw := range raws {
		if len(raw) > MaxBlockSize {
			return nil, fmt.Errorf("block %d of %d bytes exceeds the maximum block size %d", i, len(raw), MaxBlockSize)
		}
	}
	pays, err := bc.EncodeBatch(ctx, raws)
	if err != nil {
		return nil, fmt.Errorf("%s encode: %w", c.Name(), err)
	}
	recs := make([][]byte, len(raws))
	for i, raw := range raws {
		h := Header{Codec: c.ID(), RawLen: len(raw), CRC: Checksum(raw)}
		h.Model, h.HasModel = c.Model()
		recs[i] = append(AppendHeader(make([]byte, 0, len(pays[i])+64), h), pays[i]...)
	}
	return recs, nil
}

// DecodeBatch decodes block records as Decode does (length and CRC32C
// checked), the records of each batch codec in one batch. The error names
// the first record that failed.
func (r *Registry) DecodeBatch(ctx context.Context, recs [][]byte) ([][]byte, error) {
	out := make([][]byte, len(recs))
	errs := make([]error, len(recs))
	heads := make([]Header, len(recs))
	groups := map[BatchCodec][]int{}
	var single []int
	for i, rec := range recs {
		h, err := ParseHeader(rec, r.UsesModel)
		if err != nil {
			errs[i] = err
			continue
		}
		heads[i] = h
		c, err := r.lookup(h)
		if err != nil {
			errs[i] = err
			continue
		}
		if bc, ok := c.(BatchCodec); ok {
			groups[bc] = append(groups[bc], i)
		} else {
			single = append(single, i)
		}
	}
	parallelFor(len(single), func(k int) {
		i := single[k]
		out[i], _, errs[i] = r.Decode(ctx, nil, recs[i])
	})
	for bc, idx := range groups {
		pays := make([][]byte, len(idx))
		lens := make([]int, len(idx))
		for k, i := range idx {
			pays[k], lens[k] = recs[i][heads[i].Size:], heads[i].RawLen
		}
		res, _ := bc.DecodeBatch(ctx, pays, lens)
		for k, i := range idx {
			if res == nil || res[k] == nil {
				// the batch failed as a whole or on this block: decode it
				// alone for its own error
				out[i], _, errs[i] = r.Decode(ctx, nil, recs[i])
				continue
			}
			got := res[k]
			switch {
			case len(got) != heads[i].RawLen:
				errs[i] = fmt.Errorf("%w: %s decoded %d bytes, header says %d", ErrCorrupt, bc.Name(), len(got), heads[i].RawLen)
			case Checksum(got) != heads[i].CRC:
				errs[i] = fmt.Errorf("%w: CRC32C mismatch (stored %08x, decoded %08x)", ErrCorrupt, heads[i].CRC, Checksum(got))
			default:
				out[i] = got
			}
		}
	}
	return out, firstErr(errs)
}

// device names where a runs the model: "cpu" for no accelerator (a nil).
func (a *accel) device() string {
	if a == nil {
		return "cpu"
	}
	if a.SmallOnCPU > 0 {
		return fmt.Sprintf("%s; batches of up to %d blocks on the CPU", a.Backend.Device(), a.SmallOnCPU)
	}
	return a.Backend.Device()
}
