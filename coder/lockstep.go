package coder

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/lmfs/lmfs/predictor"
)

// Without an accelerator, the LM codecs' batch methods code their blocks in
// groups, one group per goroutine on the CPU cores: the Go LM steps a
// group's blocks in lockstep, so that each weight it loads serves several
// blocks (predictor/lm's many-vector kernels). The payloads are those of
// the one-block methods, bit for bit.

// lockstepMax is the most blocks of a group.
const lockstepMax = 8

// lockstepGroups cuts n blocks into groups for the CPU cores: as many groups
// as cores while that keeps them at lockstepMax blocks or fewer, of sizes
// differing by one at most. It returns each group's end.
func lockstepGroups(n, cores int) []int {
	if n == 0 {
		return nil
	}
	g := max(cores, (n+lockstepMax-1)/lockstepMax)
	g = min(g, n)
	ends := make([]int, g)
	for i := range g {
		ends[i] = (i + 1) * n / g
	}
	return ends
}

// inGroups runs f on every group of n blocks, the groups in parallel.
func inGroups(n int, f func(start, end int)) {
	ends := lockstepGroups(n, runtime.GOMAXPROCS(0))
	parallelFor(len(ends), func(i int) {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		f(start, ends[i])
	})
}

// encodeGroup codes srcs with the Go LM, stepped together, into out and errs.
func (c *LMCM) encodeGroup(ctx context.Context, srcs, out [][]byte, errs []error) {
	if len(srcs) == 1 {
		out[0], errs[0] = c.encodeCPU(ctx, nil, srcs[0])
		return
	}
	type block struct {
		s  *lmcmState
		e  Encoder
		pl [8]uint16
	}
	bs := make([]*block, len(srcs))
	defer func() {
		for _, b := range bs {
			if b != nil {
				c.release(b.s)
			}
		}
	}()
	for i, src := range srcs {
		if len(src) == 0 {
			continue
		}
		params := c.cm.Params(len(src))
		s, err := c.newState(len(src), params)
		if err != nil {
			errs[i] = err
			continue
		}
		bs[i] = &block{s: s}
		bs[i].e.Reset([]byte{params})
	}
	err := c.lm.Score(ctx, srcs, func(i, pos int, d *predictor.Dist) error {
		b := bs[i]
		if b == nil {
			return nil
		}
		if err := cumulate(d, &b.s.cum); err != nil {
			return err
		}
		pathProbs(&b.s.cum, srcs[i][pos], b.pl[:])
		b.s.encodeByte(&b.e, srcs[i][pos], b.pl[:])
		return nil
	})
	for i, b := range bs {
		switch {
		case err != nil:
			errs[i] = err
		case b != nil:
			out[i] = b.e.Finish()
		}
	}
}

// decodeGroup decodes payloads with the Go LM, stepped together, into out
// and errs; a damaged block leaves the group with its error (that of
// decodeCPU), the others go on.
func (c *LMCM) decodeGroup(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error) {
	if len(payloads) == 1 {
		out[0], errs[0] = c.decodeCPU(ctx, nil, payloads[0], rawLens[0])
		return
	}
	bs := c.startBlocks(payloads, rawLens, out, errs)
	defer c.releaseBlocks(bs)
	if len(bs) == 0 {
		return
	}
	st, err := c.lm.Streams(ctx, len(bs))
	if err != nil {
		for _, b := range bs {
			errs[b.i] = err
		}
		return
	}
	defer st.Close()
	act := make([]int, 0, len(bs)) // the streams (indices in bs) that go on
	for k := range bs {
		act = append(act, k)
	}
	dists := make([]predictor.Dist, len(bs))
	syms := make([]byte, 0, len(bs))
	next := make([]int, 0, len(bs))
	for pos := 0; len(act) > 0; pos++ {
		if err := st.Predict(ctx, act, dists[:len(act)]); err != nil {
			for _, k := range act {
				errs[bs[k].i] = err
			}
			return
		}
		next, syms = next[:0], syms[:0]
		for j, k := range act {
			b := bs[k]
			if pos%ctxEvery == 0 && b.d.Overrun() {
				errs[b.i] = fmt.Errorf("%w: %s payload ends after %d of %d bytes", ErrCorrupt, c.name, pos, rawLens[b.i])
				continue
			}
			if err := cumulate(&dists[j], &b.s.cum); err != nil {
				errs[b.i] = err
				continue
			}
			x := b.s.decodeByte(&b.d)
			b.out = append(b.out, x)
			if pos+1 < rawLens[b.i] {
				next, syms = append(next, k), append(syms, x)
			}
		}
		act, next = next, act
		if len(act) > 0 {
			if err := st.Push(act, syms); err != nil {
				for _, k := range act {
					errs[bs[k].i] = err
				}
				return
			}
		}
	}
	for _, b := range bs {
		if errs[b.i] != nil {
			continue
		}
		if err := b.d.Finish(); err != nil {
			errs[b.i] = fmt.Errorf("%s: %w", c.name, err)
			continue
		}
		out[b.i] = b.out
	}
}

// encodeGroup codes srcs with the Go model, scored together.
func (c *ByteCodec) encodeGroup(ctx context.Context, srcs, out [][]byte, errs []error) {
	if len(srcs) == 1 {
		out[0], errs[0] = c.encodeCPU(ctx, nil, srcs[0])
		return
	}
	res, err := EncodeBytes(ctx, c.pred, srcs)
	for i := range srcs {
		if err != nil {
			errs[i] = err
			continue
		}
		out[i] = res[i]
	}
}

// decodeGroup decodes payloads with the Go model, stepped together; when a
// block fails, each block is decoded alone, which names the damage.
func (c *ByteCodec) decodeGroup(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error) {
	if len(payloads) > 1 {
		idx, pays, lens := c.wellShaped(payloads, rawLens, out, errs)
		res, err := DecodeBytes(ctx, c.pred, pays, lens)
		if err == nil {
			for k, i := range idx {
				out[i] = res[k]
			}
			return
		}
		if ctx.Err() != nil {
			for _, i := range idx {
				errs[i] = ctx.Err()
			}
			return
		}
	}
	for i := range payloads {
		out[i], errs[i] = c.decodeCPU(ctx, nil, payloads[i], rawLens[i])
	}
}

// GroupCodec is a codec whose model codes several blocks faster together
// than one by one on one core (the LM codecs without an accelerator: their
// Go LM steps the blocks in lockstep). Its group methods run on the calling
// goroutine; their payloads and errors are those of Encode and Decode.
type GroupCodec interface {
	Codec
	// Device names where the codec's model runs ("cpu": the group methods
	// pay only there).
	Device() string
	// EncodeGroup returns each block's payload, or its error.
	EncodeGroup(ctx context.Context, srcs [][]byte) ([][]byte, []error)
	// DecodeGroup returns each payload's decoded bytes, or its error.
	DecodeGroup(ctx context.Context, payloads [][]byte, rawLens []int) ([][]byte, []error)
}

var (
	_ GroupCodec = (*LMCM)(nil)
	_ GroupCodec = (*ByteCodec)(nil)
)

// EncodeGroup implements GroupCodec.
func (c *LMCM) EncodeGroup(ctx context.Context, srcs [][]byte) ([][]byte, []error) {
	return batchRun(len(srcs), func(out [][]byte, errs []error) { c.encodeGroup(ctx, srcs, out, errs) })
}

// DecodeGroup implements GroupCodec.
func (c *LMCM) DecodeGroup(ctx context.Context, payloads [][]byte, rawLens []int) ([][]byte, []error) {
	return batchRun(len(payloads), func(out [][]byte, errs []error) { c.decodeGroup(ctx, payloads, rawLens, out, errs) })
}

// EncodeGroup implements GroupCodec.
func (c *ByteCodec) EncodeGroup(ctx context.Context, srcs [][]byte) ([][]byte, []error) {
	return batchRun(len(srcs), func(out [][]byte, errs []error) { c.encodeGroup(ctx, srcs, out, errs) })
}

// DecodeGroup implements GroupCodec.
func (c *ByteCodec) DecodeGroup(ctx context.Context, payloads [][]byte, rawLens []int) ([][]byte, []error) {
	return batchRun(len(payloads), func(out [][]byte, errs []error) { c.decodeGroup(ctx, payloads, rawLens, out, errs) })
}

// LockstepWidth is how many concurrent single-block Decode calls of an LM
// codec on the CPU a core decodes together (a gatherer's group: the
// four-vector kernel's width; a wider group would leave cores idle while
// fewer calls wait). A caller that decodes such blocks one per call should
// keep about this many calls per core in flight.
const LockstepWidth = 4

// gatherer runs concurrent single-block decode calls of a CPU group codec in
// groups: a call queues its block and waits; up to GOMAXPROCS runners each
// take up to LockstepWidth queued blocks at a time and decode them together.
// With no other call waiting, a block is decoded alone, as by decodeCPU.
type gatherer struct {
	mu      sync.Mutex
	queue   []*gatherReq
	runners int
	run     func(ctx context.Context, payloads [][]byte, rawLens []int, out [][]byte, errs []error)
}

// LockstepOnCPU reports whether reg's LM codecs decode their blocks in
// lockstep groups on the CPU (they exist and run their model there), so
// that callers should keep LockstepWidth blocks per core in flight.
func LockstepOnCPU(reg *Registry) bool {
	c, err := reg.ByName("lm+cm")
	if err != nil {
		return false
	}
	gc, ok := c.(GroupCodec)
	return ok && gc.Device() == "cpu"
}

// gatherWait is how long a runner with fewer than LockstepWidth calls
// queued waits for more before it starts a group.
const gatherWait = 2 * time.Millisecond

type gatherReq struct {
	ctx     context.Context
	payload []byte
	rawLen  int
	out     []byte
	err     error
	done    chan struct{}
}

// decode decodes one payload as part of a group of concurrent calls.
func (g *gatherer) decode(ctx context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	r := &gatherReq{ctx: ctx, payload: payload, rawLen: rawLen, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.runners < runtime.GOMAXPROCS(0) {
		g.runners++
		go g.runner()
	}
	g.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		// Left in the queue, the call is skipped; in a running group,
		// its result is dropped.
		return dst, ctx.Err()
	}
	if r.err != nil {
		return dst, r.err
	}
	return append(dst, r.out...), nil
}

// runner decodes queued groups until the queue is empty.
func (g *gatherer) runner() {
	for {
		g.mu.Lock()
		if q := len(g.queue); q > 0 && q < LockstepWidth {
			// Calls made together arrive microseconds apart: a moment's
			// wait (a block takes far longer to decode) fills the group.
			g.mu.Unlock()
			time.Sleep(gatherWait)
			g.mu.Lock()
		}
		n := min(len(g.queue), LockstepWidth)
		if n == 0 {
			g.runners--
			g.mu.Unlock()
			return
		}
		batch := g.queue[:n:n]
		g.queue = g.queue[n:]
		g.mu.Unlock()
		// A call whose context ends is answered with its error; the group
		// decodes the others under the first live call's context.
		ctx := context.Background()
		var live []*gatherReq
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.err = err
				close(r.done)
				continue
			}
			if len(live) == 0 {
				ctx = r.ctx
			}
			live = append(live, r)
		}
		if len(live) == 0 {
			continue
		}
		pays := make([][]byte, len(live))
		lens := make([]int, len(live))
		for i, r := range live {
			pays[i], lens[i] = r.payload, r.rawLen
		}
		out := make([][]byte, len(live))
		errs := make([]error, len(live))
		g.run(ctx, pays, lens, out, errs)
		for i, r := range live {
			if errs[i] != nil && ctx.Err() != nil && r.ctx.Err() == nil {
				// Another call's context ended the group: this one
				// decodes alone.
				out[i], errs[i] = g.runOne(r)
			}
			r.out, r.err = out[i], errs[i]
			close(r.done)
		}
	}
}

func (g *gatherer) runOne(r *gatherReq) ([]byte, error) {
	out, errs := make([][]byte, 1), make([]error, 1)
	g.run(r.ctx, [][]byte{r.payload}, []int{r.rawLen}, out, errs)
	return out[0], errs[0]
}
