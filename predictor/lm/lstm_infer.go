package lm

import (
	"context"
	"fmt"

	"github.com/lmfs/lmfs/predictor"
)

// useKernel makes n run kernel k.
func (n *lstmNet) useKernel(k *kernel) {
	n.mv, n.mvMany, n.rq, n.add16, n.gateFn = k.mv, k.many(), k.rq, k.add16, k.gates
}

func (n *lstmNet) newState() *lstmState {
	return &lstmState{h: make([]int16, n.nl*n.hp), c: make([]int32, n.nl*n.h)}
}

func (s *lstmState) set(from *lstmState) {
	copy(s.h, from.h)
	copy(s.c, from.c)
}

func (n *lstmNet) getScratch() *lstmScratch {
	if s, ok := n.pool.Get().(*lstmScratch); ok {
		return s
	}
	sc := &lstmScratch{acc: make([]int32, max(4*n.h, 256)), part: make([]int32, 4*n.h), z: make([]int32, 4*n.h), rec: make([]int32, (n.nl-1)*4*n.h)}
	if n.t1 != nil {
		sc.in0 = make([]int32, 4*n.h)
	}
	return sc
}

// initBOS computes the state after step(BOS) from the zero state and the
// distribution there: every block starts with both.
func (n *lstmNet) initBOS() {
	sc := n.getScratch()
	defer n.pool.Put(sc)
	st := n.newState()
	n.step(st, bosSymbol, 0, sc)
	n.bos = *st
	n.dist(st, sc, &n.dist0)
}

func clamp32(v, lo, hi int32) int32 { return min(max(v, lo), hi) }

// step consumes input symbol x (a byte, or bosSymbol) and, for lstm2, match
// feature f, and updates st (SPEC.md, lstm1 "Step", lstm2 "Step and
// distribution"; lstm1 ignores f).
//
// The sums over the recurrent halves W_l h_l of the layers l >= 1 need only
// the state before the step, so they may run first. Every other step does
// so, in reverse layer order: a model whose weights do not all fit in a
// core's cache then starts each step with the matrices the previous step
// used last, which are still there (about 10% faster decoding of two layers
// of 512 on a core with 2 MiB of L2).
func (n *lstmNet) step(st *lstmState, x int, f uint16, sc *lstmScratch) {
	H, hp := n.h, n.hp
	sc.flip = !sc.flip && n.nl > 1
	if !sc.flip {
		for l := range n.layers {
			n.layer(l, st, x, f, sc, nil)
		}
		return
	}
	for l := n.nl - 1; l >= 1; l-- {
		// Backwards by blocks of rows: the rows the last step used last
		// first.
		blocks := n.layers[l].whBlocks
		rb := 4 * H / len(blocks)
		rec := sc.rec[(l-1)*4*H : l*4*H]
		for i := len(blocks) - 1; i >= 0; i-- {
			n.mv(rec[i*rb:(i+1)*rb], blocks[i], st.h[l*hp:l*hp+hp])
		}
	}
	for l := range n.layers {
		var rec []int32
		if l > 0 {
			rec = sc.rec[(l-1)*4*H : l*4*H]
		}
		n.layer(l, st, x, f, sc, rec)
	}
}

// layer is layer l's part of step(x, f); rec is W_l h_l for l >= 1 if
// already computed, or nil.
func (n *lstmNet) layer(l int, st *lstmState, x int, f uint16, sc *lstmScratch, rec []int32) {
	H, hp := n.h, n.hp
	ly := &n.layers[l]
	acc := sc.acc[:4*H]
	// Every acc of the layer before any h of the layer changes.
	if l == 0 {
		n.mv(acc, ly.wh, st.h[:hp])
		n.gates(l, st, acc, n.input0(x, f, sc), sc)
		return
	}
	if rec == nil {
		n.mv(acc, ly.wh, st.h[l*hp:l*hp+hp])
		rec = acc
	}
	part := sc.part[:4*H]
	n.mv(part, ly.wx, st.h[(l-1)*hp:l*hp])
	for j, v := range part {
		acc[j] = rec[j] + v
	}
	n.gates(l, st, acc, n.zero, sc)
}

// input0 returns what layer 0 adds to z besides its bias for input x and
// match feature f: T0[x] for lstm1, T0[x] + T1[f] for lstm2 (in sc.in0).
func (n *lstmNet) input0(x int, f uint16, sc *lstmScratch) []int32 {
	H4 := 4 * n.h
	t0 := n.t0[x*H4 : x*H4+H4]
	if n.t1 == nil {
		return t0
	}
	in := sc.in0[:H4]
	n.add16(in, t0, n.t1[int(f)*H4:int(f)*H4+H4])
	return in
}

// stepMany steps several states at once, layer by layer, each layer's
// matrices multiplying every state's vector in one mvMany (a kernel that
// reuses each weight it loads for several vectors); fs holds the match
// features of lstm2 (ignored for lstm1). The states must be distinct.
func (n *lstmNet) stepMany(sts []*lstmState, syms []byte, fs []uint16, sc *lstmScratch) {
	H4, hp := 4*n.h, n.hp
	sc.ensureChunk(n)
	for len(sts) > 0 {
		g := min(len(sts), scoreChunk)
		dst, xs := sc.dsts[:g], sc.xs[:g]
		for l := range n.layers {
			ly := &n.layers[l]
			// Every sum over the recurrent half before any h_l changes.
			for i, st := range sts[:g] {
				dst[i], xs[i] = sc.pre[i*H4:(i+1)*H4], st.h[l*hp:(l+1)*hp]
			}
			n.mvMany(dst, ly.wh, xs)
			if l > 0 {
				// h_{l-1} after this step.
				for i, st := range sts[:g] {
					dst[i], xs[i] = sc.pre2[i*H4:(i+1)*H4], st.h[(l-1)*hp:l*hp]
				}
				n.mvMany(dst, ly.wx, xs)
			}
			for i, st := range sts[:g] {
				acc := sc.pre[i*H4 : (i+1)*H4]
				if l == 0 {
					n.gates(0, st, acc, n.input0(int(syms[i]), fs[i], sc), sc)
					continue
				}
				for j, v := range sc.pre2[i*H4 : (i+1)*H4] {
					acc[j] += v
				}
				n.gates(l, st, acc, n.zero, sc)
			}
		}
		sts, syms, fs = sts[g:], syms[g:], fs[g:]
	}
}

// distMany computes the distribution of the next byte from each top-layer h
// in hs (at most scoreChunk) into out[i] (sc.ds[i] where out is nil), the
// output layer in one mvMany.
func (n *lstmNet) distMany(hs [][]int16, sc *lstmScratch, out []*predictor.Dist) {
	sc.ensureChunk(n)
	dst := sc.dsts[:len(hs)]
	for i := range hs {
		dst[i] = sc.out[i*256 : (i+1)*256]
	}
	n.mvMany(dst, n.wo, hs)
	for i := range hs {
		d := &sc.ds[i]
		if out != nil {
			d = out[i]
		}
		n.rq(sc.logit[:], dst[i], n.zero[:256], &n.rqo, -maxLogit, maxLogit)
		freqsFromLogits(n.exp, &sc.logit, d)
	}
}

// ensureChunk allocates the buffers of chunked stepping.
func (sc *lstmScratch) ensureChunk(n *lstmNet) {
	if sc.seq == nil {
		sc.seq = make([]int16, scoreChunk*n.hp)
		sc.pre = make([]int32, scoreChunk*4*n.h)
		sc.pre2 = make([]int32, scoreChunk*4*n.h)
		sc.out = make([]int32, scoreChunk*256)
		sc.dsts = make([][]int32, scoreChunk)
		sc.xs = make([][]int16, scoreChunk)
		sc.ds = make([]predictor.Dist, scoreChunk)
		sc.fs = make([]uint16, scoreChunk)
	}
}

// gates updates h and c of layer l from the layer's sums acc; in0 is what
// the layer adds to z besides its bias (input0 for layer 0, else zeros).
func (n *lstmNet) gates(l int, st *lstmState, acc, in0 []int32, sc *lstmScratch) {
	H := n.h
	z := sc.z[:4*H]
	n.rq(z, acc[:4*H], in0[:4*H], &n.layers[l].rq, zMin, zMax)
	h := st.h[l*n.hp : l*n.hp+H]
	c := st.c[l*H : l*H+H]
	n.gateFn(h, c, z, n.sig, n.tanh)
}

// gatesFunc sets, for every unit u < len(h), the cell c[u] and output h[u]
// from the gate sums z (the input, forget, cell and output gates' len(h)
// sums one after the other) and c[u] (SPEC.md, lstm1 "Step").
type gatesFunc func(h []int16, c, z []int32, sig, tanh *[tableLen]int32)

func gatesGo(h []int16, c, z []int32, sig, tanh *[tableLen]int32) {
	H := len(h)
	c, z = c[:H], z[:4*H]
	zi, zf, zg, zo := z[:H], z[H:2*H], z[2*H:3*H], z[3*H:4*H]
	for u := range h {
		ig := sig[(zi[u]+2048)&(tableLen-1)]
		fg := sig[(zf[u]+2048)&(tableLen-1)]
		gg := tanh[(zg[u]+2048)&(tableLen-1)]
		og := sig[(zo[u]+2048)&(tableLen-1)]
		cv := clamp32((fg*c[u]+ig*gg+2048)>>12, -cellMax, cellMax)
		tc := tanh[(clamp32(cv>>4, zMin, zMax)+2048)&(tableLen-1)]
		c[u] = cv
		h[u] = int16(clamp32((og*tc+1<<16)>>17, -127, 127))
	}
}

// rqVec holds the requantisation R(acc, M, S) + B of a matrix's rows.
type rqVec struct {
	m, s, b []int32
	half    []int64 // 2^(S-1)
}

func newRQ(b, m, s []int32) rqVec {
	r := rqVec{m: m, s: s, b: b, half: make([]int64, len(b))}
	for i := range r.half {
		r.half[i] = int64(1) << (s[i] - 1)
	}
	return r
}

// requantFunc sets dst[j] = clamp(R(acc[j], M[j], S[j]) + B[j] + add[j],
// lo, hi) (64-bit before the clamp) for j < len(dst), a multiple of 8.
type requantFunc func(dst, acc, add []int32, p *rqVec, lo, hi int64)

func requantGo(dst, acc, add []int32, p *rqVec, lo, hi int64) {
	n := len(dst)
	acc, add = acc[:n], add[:n]
	m, s, b, half := p.m[:n], p.s[:n], p.b[:n], p.half[:n]
	for j, a := range acc {
		v := (int64(a)*int64(m[j])+half[j])>>(uint(s[j])&63) + int64(b[j]) + int64(add[j])
		dst[j] = int32(min(max(v, lo), hi))
	}
}

// dist computes the distribution of the next byte from st (SPEC.md, lstm1
// "Distribution").
func (n *lstmNet) dist(st *lstmState, sc *lstmScratch, d *predictor.Dist) {
	top := (n.nl - 1) * n.hp
	n.distFrom(st.h[top:top+n.hp], sc, d)
}

// distFrom computes the distribution from the top layer's h.
func (n *lstmNet) distFrom(h []int16, sc *lstmScratch, d *predictor.Dist) {
	acc := sc.acc[:256]
	n.mv(acc, n.wo, h)
	n.rq(sc.logit[:], acc, n.zero[:256], &n.rqo, -maxLogit, maxLogit)
	freqsFromLogits(n.exp, &sc.logit, d)
}

// scoreChunk is how many steps Score takes layer by layer: the steps of a
// chunk run through layer 0, then through layer 1, and so on, and then the
// output layer makes their distributions. Each phase uses one matrix, which
// stays in cache over the chunk (a whole step's weights may not fit), and
// the input half of a layer l >= 1, which does not depend on the layer's own
// state, runs over the chunk's positions back to back.
const scoreChunk = 32

func (n *lstmNet) score(ctx context.Context, blocks [][]byte, emit func(b, pos int, d *predictor.Dist) error) error {
	sc := n.getScratch()
	defer n.pool.Put(sc)
	sc.ensureChunk(n)
	if sc.st == nil {
		sc.st = n.newState()
	}
	st := sc.st
	var d predictor.Dist
	if n.t1 != nil && sc.match == nil {
		sc.match = NewMatcher()
	}
	// Blocks in groups of up to lockstepMax stepped together (every matrix
	// multiplies several blocks' vectors at once); the last few, fewer
	// than lockstepMin, one by one in chunks of positions.
	first := 0
	for len(blocks)-first >= lockstepMin {
		g := min(lockstepMax, len(blocks)-first)
		if err := n.scoreLockstep(ctx, blocks, first, first+g, sc, emit); err != nil {
			return err
		}
		first += g
	}
	for bi := first; bi < len(blocks); bi++ {
		blk := blocks[bi]
		if len(blk) == 0 {
			continue
		}
		st.set(&n.bos)
		if sc.match != nil {
			sc.match.Reset()
		}
		d = n.dist0
		if err := emit(bi, 0, &d); err != nil {
			return err
		}
		// The table of position t comes after the steps over blk[:t].
		for s0 := 0; s0 < len(blk)-1; s0 += scoreChunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			syms := blk[s0:min(s0+scoreChunk, len(blk)-1)]
			fs := sc.fs[:len(syms)]
			if sc.match != nil {
				for t, x := range syms {
					fs[t] = sc.match.Push(x)
				}
			}
			n.stepChunk(st, syms, fs, sc)
			hs := sc.xs[:len(syms)]
			for t := range syms {
				hs[t] = sc.seq[t*n.hp : (t+1)*n.hp]
			}
			n.distMany(hs, sc, nil)
			for t := range hs {
				if err := emit(bi, s0+t+1, &sc.ds[t]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Score's groups of blocks in lockstep: from lockstepMin blocks (the
// four-vector kernel's width) to lockstepMax.
const (
	lockstepMin = 4
	lockstepMax = 8
)

// scoreLockstep scores blocks[lo:hi] together: per position, one stepMany
// over the blocks that go on and one distMany, emitting each block's tables
// in order.
func (n *lstmNet) scoreLockstep(ctx context.Context, blocks [][]byte, lo, hi int, sc *lstmScratch, emit func(b, pos int, d *predictor.Dist) error) error {
	g := hi - lo
	sts := make([]*lstmState, g)
	var ms []*Matcher
	if n.t1 != nil {
		ms = make([]*Matcher, g)
	}
	defer func() {
		for _, m := range ms {
			if m != nil {
				n.putMatcher(m)
			}
		}
	}()
	for k := range g {
		if len(blocks[lo+k]) == 0 {
			continue
		}
		sts[k] = n.newState()
		sts[k].set(&n.bos)
		if ms != nil {
			ms[k] = n.getMatcher()
		}
		d := n.dist0
		if err := emit(lo+k, 0, &d); err != nil {
			return err
		}
	}
	act := make([]*lstmState, 0, g)
	syms := make([]byte, 0, g)
	fs := make([]uint16, 0, g)
	which := make([]int, 0, g)
	top := (n.nl - 1) * n.hp
	for t := 0; ; t++ {
		act, syms, fs, which = act[:0], syms[:0], fs[:0], which[:0]
		for k := range g {
			blk := blocks[lo+k]
			if t >= len(blk)-1 {
				continue
			}
			var f uint16
			if ms != nil {
				f = ms[k].Push(blk[t])
			}
			act, syms, fs, which = append(act, sts[k]), append(syms, blk[t]), append(fs, f), append(which, lo+k)
		}
		if len(act) == 0 {
			return nil
		}
		if t%scoreChunk == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		n.stepMany(act, syms, fs, sc)
		hs := sc.xs[:len(act)]
		for i, st := range act {
			hs[i] = st.h[top : top+n.hp]
		}
		n.distMany(hs, sc, nil)
		for i, b := range which {
			if err := emit(b, t+1, &sc.ds[i]); err != nil {
				return err
			}
		}
	}
}

// stepChunk takes the steps over syms (at most scoreChunk) with match
// features fs (lstm2) layer by layer and leaves in sc.seq the top layer's h
// after each.
func (n *lstmNet) stepChunk(st *lstmState, syms []byte, fs []uint16, sc *lstmScratch) {
	H, hp := n.h, n.hp
	acc := sc.acc[:4*H]
	for l := range n.layers {
		ly := &n.layers[l]
		if l > 0 {
			// sc.seq holds h_{l-1} after each step.
			dst, xs := sc.dsts[:len(syms)], sc.xs[:len(syms)]
			for t := range syms {
				dst[t], xs[t] = sc.pre[t*4*H:(t+1)*4*H], sc.seq[t*hp:(t+1)*hp]
			}
			n.mvMany(dst, ly.wx, xs)
		}
		h := st.h[l*hp : (l+1)*hp]
		for t, x := range syms {
			n.mv(acc, ly.wh, h)
			if l == 0 {
				n.gates(0, st, acc, n.input0(int(x), fs[t], sc), sc)
			} else {
				for j, v := range sc.pre[t*4*H : (t+1)*4*H] {
					acc[j] += v
				}
				n.gates(l, st, acc, n.zero, sc)
			}
			copy(sc.seq[t*hp:(t+1)*hp], h)
		}
	}
}

func (n *lstmNet) streams(n1 int) (predictor.ByteStreams, error) {
	if n1 < 0 {
		return nil, fmt.Errorf("lm: %d streams asked for", n1)
	}
	s := &lstmStreams{n: n, st: make([]*lstmState, n1), fresh: make([]uint8, n1), sc: n.getScratch(), fs: make([]uint16, 0, n1)}
	for i := range s.st {
		s.st[i] = n.newState()
		s.st[i].set(&n.bos)
		s.fresh[i] = freshYes
	}
	if n.t1 != nil {
		s.match = make([]*Matcher, n1)
		for i := range s.match {
			s.match[i] = n.getMatcher()
		}
	}
	return s, nil
}

// getMatcher returns a Matcher at a block start, from the pool if it has
// one: a new one costs 260 KiB of fresh memory.
func (n *lstmNet) getMatcher() *Matcher {
	if m, ok := n.mpool.Get().(*Matcher); ok {
		return m
	}
	return NewMatcher()
}

// putMatcher resets m and gives it to the pool (without the bytes of a
// block longer than 1 MiB, which need not stay in memory).
func (n *lstmNet) putMatcher(m *Matcher) {
	m.Reset()
	if cap(m.buf) > 1<<20 {
		m.buf = make([]byte, 0, 4096)
	}
	n.mpool.Put(m)
}

// lstmStreams is the decoding state of a batch of lstm1 or lstm2 blocks.
type lstmStreams struct {
	n     *lstmNet
	st    []*lstmState
	fresh []uint8 // freshYes: no byte pushed yet, the distribution is dist0
	sc    *lstmScratch
	batch []*lstmState
	match []*Matcher // each stream's match model (lstm2; nil for lstm1)
	fs    []uint16   // a Push's match features
}

// Values of lstmStreams.fresh.
const (
	freshNo     = iota
	freshYes    // no byte pushed yet
	freshPushed // being pushed (Push's duplicate check)
)

// check checks a call (op: Predict or Push) that gives count tables or
// bytes (what) for the streams ids.
func (s *lstmStreams) check(op, what string, ids []int, count int) error {
	return checkCall(s.st == nil, len(s.st), op, what, ids, count)
}

func (s *lstmStreams) Predict(ctx context.Context, ids []int, dst []predictor.Dist) error {
	if err := s.check("Predict", "tables", ids, len(dst)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The streams' output layers in chunks, one mvMany each.
	n, sc := s.n, s.sc
	sc.ensureChunk(n)
	top := (n.nl - 1) * n.hp
	var outs [scoreChunk]*predictor.Dist
	hs := sc.xs[:0]
	flush := func() {
		n.distMany(hs, sc, outs[:len(hs)])
		hs = sc.xs[:0]
	}
	for i, id := range ids {
		if s.fresh[id] == freshYes {
			dst[i] = n.dist0
			continue
		}
		outs[len(hs)] = &dst[i]
		hs = append(hs, s.st[id].h[top:top+n.hp])
		if len(hs) == scoreChunk {
			flush()
		}
	}
	if len(hs) > 0 {
		flush()
	}
	return nil
}

func (s *lstmStreams) Push(ids []int, syms []byte) error {
	if err := s.check("Push", "bytes", ids, len(syms)); err != nil {
		return err
	}
	// Distinct streams step together, layer by layer (stepMany); a stream
	// named twice takes its steps one after the other.
	batch := s.batch[:0]
	for _, id := range ids {
		if s.fresh[id] == freshPushed {
			batch = nil
			break
		}
		s.fresh[id] = freshPushed
		batch = append(batch, s.st[id])
	}
	for _, id := range ids {
		s.fresh[id] = freshNo
	}
	if batch != nil {
		s.batch = batch[:0]
	}
	// Every stream's match model takes its byte before the step that
	// consumes it (a stream named twice takes both, in order).
	fs := s.fs[:0]
	for i, id := range ids {
		var f uint16
		if s.match != nil {
			f = s.match[id].Push(syms[i])
		}
		fs = append(fs, f)
	}
	s.fs = fs[:0]
	if len(ids) > 1 && batch != nil {
		s.n.stepMany(batch, syms, fs, s.sc)
		return nil
	}
	for i, id := range ids {
		s.n.step(s.st[id], int(syms[i]), fs[i], s.sc)
	}
	return nil
}

func (s *lstmStreams) Close() error {
	if s.sc != nil {
		s.n.pool.Put(s.sc)
	}
	for _, m := range s.match {
		s.n.putMatcher(m)
	}
	s.st, s.sc, s.match = nil, nil, nil
	return nil
}
