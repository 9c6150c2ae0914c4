package lm

import (
	"context"
	"fmt"
	"math/bits"

	"github.com/lmfs/lmfs/predictor"
)

// The hash of SPEC.md, "Hashed contexts".
const (
	hashP = 2147483647
	hashC = 0x9E3779B1
)

// scratch holds one prediction's intermediate vectors.
type scratch struct {
	acc1, a1, acc2, a2 []int32
	nz                 []int
	acc3, logit        [256]int32
	lanes2             []uint64
	lanes3             [128]uint64
	rows               []int
	ev, od             []uint64
}

func (m *Model) getScratch() *scratch {
	if s, ok := m.pool.Get().(*scratch); ok {
		return s
	}
	return &scratch{
		acc1: make([]int32, m.cfg.Hidden1), a1: make([]int32, m.cfg.Hidden1),
		acc2: make([]int32, m.cfg.Hidden2), a2: make([]int32, m.cfg.Hidden2),
		nz:     make([]int, 0, max(m.cfg.Hidden1, m.cfg.Hidden2)),
		lanes2: make([]uint64, (m.cfg.Hidden2+1)/2),
		rows:   make([]int, 0, m.cfg.Window+len(m.cfg.Orders)),
		ev:     make([]uint64, m.cfg.Hidden1/8),
		od:     make([]uint64, m.cfg.Hidden1/8),
	}
}

// requant is SPEC.md's R(acc, M, S) = (acc*M + 2^(S-1)) >> S (arithmetic shift).
func requant(acc, mul, shift int32) int64 {
	return (int64(acc)*int64(mul) + int64(1)<<(shift-1)) >> shift
}

func addRow(acc []int32, row []int8) {
	row = row[:len(acc)]
	for j, v := range row {
		acc[j] += int32(v)
	}
}

// axpy adds x*col to acc.
func axpy(acc []int32, col []int8, x int32) {
	col = col[:len(acc)]
	n := len(acc) &^ 3
	for j := 0; j < n; j += 4 {
		c := col[j : j+4 : j+4]
		a := acc[j : j+4 : j+4]
		a[0] += int32(c[0]) * x
		a[1] += int32(c[1]) * x
		a[2] += int32(c[2]) * x
		a[3] += int32(c[3]) * x
	}
	for j := n; j < len(acc); j++ {
		acc[j] += int32(col[j]) * x
	}
}

// bucket returns the hashed-context bucket of order k for window w.
func bucket(w []uint16, k, hbits int) int {
	var key uint64
	for i := range k {
		key += uint64(w[i]+1) << (9 * i)
	}
	x := key % hashP
	y := (x * hashC) & 0xFFFFFFFF
	return int(y >> (32 - hbits))
}

// predict computes the frequency table of the next byte for window w (w[i]
// is the byte i+1 positions back, or pad), following SPEC.md step by step.
func (m *Model) predict(w []uint16, sc *scratch, d *predictor.Dist) {
	c := &m.cfg
	H1 := c.Hidden1
	// Layer 1: the sum of one table row per window position and hashed order.
	acc := sc.acc1
	rows := sc.rows[:0]
	for i := range c.Window {
		rows = append(rows, i*nrow+int(w[i]))
	}
	base := c.Window * nrow
	for ki, k := range c.Orders {
		rows = append(rows, base+ki<<c.HashBits+bucket(w, k, c.HashBits))
	}
	sc.rows = rows
	if H1%8 == 0 {
		sumRows(acc, m.b1, m.tableU, rows, sc.ev, sc.od)
	} else {
		copy(acc, m.b1)
		for _, r := range rows {
			addRow(acc, m.table[r*H1:r*H1+H1])
		}
	}
	nz := sc.nz[:0]
	for j, v := range acc {
		q := requant(v, m.m1[j], m.s1[j])
		if q <= 0 {
			continue
		}
		sc.a1[j] = int32(min(q, 127))
		nz = append(nz, j)
	}
	// Layer 2: W2 a1 + b2 over the non-zero activations only (zeros add nothing).
	acc2 := sc.acc2
	denseSWAR(acc2, m.b2, m.w2p, nz, sc.a1, sc.lanes2)
	nz = nz[:0]
	for j, v := range acc2 {
		q := requant(v, m.m2[j], m.s2[j])
		if q <= 0 {
			continue
		}
		sc.a2[j] = int32(min(q, 127))
		nz = append(nz, j)
	}
	// Layer 3: logits.
	acc3 := sc.acc3[:]
	denseSWAR(acc3, m.b3, m.w3p, nz, sc.a2, sc.lanes3[:])
	sc.nz = nz
	for v := range 256 {
		l := requant(acc3[v], m.m3[v], m.s3[v])
		sc.logit[v] = int32(max(min(l, maxLogit), -maxLogit))
	}
	freqsFromLogits(m.exp, &sc.logit, d)
}

// freqsFromLogits turns the logits (each in [-2^24, 2^24]) into the
// frequency table (SPEC.md, "Frequencies"; both architectures).
func freqsFromLogits(exp []uint32, logit *[256]int32, d *predictor.Dist) {
	mx, first := int32(-maxLogit-1), 0
	for v, l := range logit {
		if l > mx {
			mx, first = l, v
		}
	}
	last := int32(len(exp) - 1)
	var e [256]uint64
	var sum uint64
	for v := range 256 {
		x := uint64(exp[min(mx-logit[v], last)])
		e[v] = x
		sum += x
	}
	const total = predictor.FreqTotal
	var fs uint32
	dv := newDivider(sum)
	for v := range 256 {
		f := 1 + uint32(dv.div(e[v]*(total-256)))
		d[v] = f
		fs += f
	}
	d[first] += total - fs
}

// divider divides by a fixed s >= 1 with a multiplication by a reciprocal
// and one correction: exactly floor(n / s), for every n, faster than a
// 64-bit division.
type divider struct {
	s, inv uint64 // inv = floor(2^64 / s), 0 for s = 1
}

func newDivider(s uint64) divider {
	if s <= 1 {
		return divider{s: 1}
	}
	inv, _ := bits.Div64(1, 0, s)
	return divider{s: s, inv: inv}
}

// div returns floor(n / s). With inv >= 2^64/s - 1, q = floor(n*inv / 2^64)
// lies in (n/s - 1 - n/2^64, n/s], so it is floor(n/s) or one less.
func (d divider) div(n uint64) uint64 {
	if d.inv == 0 {
		return n
	}
	q, _ := bits.Mul64(n, d.inv)
	if n-q*d.s >= d.s {
		q++
	}
	return q
}

// state is the decoding state of one block: its window.
type state struct {
	w []uint16
}

func (m *Model) newState() *state {
	s := &state{w: make([]uint16, m.cfg.Window)}
	for i := range s.w {
		s.w[i] = pad
	}
	return s
}

func (s *state) push(b byte) {
	copy(s.w[1:], s.w[:len(s.w)-1])
	s.w[0] = uint16(b)
}

// Score implements predictor.ByteModel: it calls emit with the table of every
// position of every block, block by block.
func (m *Model) Score(ctx context.Context, blocks [][]byte, emit func(b, pos int, d *predictor.Dist) error) error {
	if m.lstm != nil {
		return m.lstm.score(ctx, blocks, emit)
	}
	sc := m.getScratch()
	defer m.pool.Put(sc)
	var d predictor.Dist
	for bi, blk := range blocks {
		st := m.newState()
		for pos, c := range blk {
			if pos&1023 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			m.predict(st.w, sc, &d)
			if err := emit(bi, pos, &d); err != nil {
				return err
			}
			st.push(c)
		}
	}
	return nil
}

// Streams implements predictor.ByteModel.
func (m *Model) Streams(ctx context.Context, n int) (predictor.ByteStreams, error) {
	if m.lstm != nil {
		return m.lstm.streams(n)
	}
	if n < 0 {
		return nil, fmt.Errorf("lm: %d streams asked for", n)
	}
	s := &streams{m: m, st: make([]*state, n), sc: m.getScratch()}
	for i := range s.st {
		s.st[i] = m.newState()
	}
	return s, nil
}

type streams struct {
	m  *Model
	st []*state
	sc *scratch
}

// check checks a call (op: Predict or Push) that gives count tables or
// bytes (what) for the streams ids.
func (s *streams) check(op, what string, ids []int, count int) error {
	return checkCall(s.st == nil, len(s.st), op, what, ids, count)
}

// checkCall returns the error of a call (op) naming ids on n streams (of
// either architecture), closed or not, with count tables or bytes (what),
// one per id.
func checkCall(closed bool, n int, op, what string, ids []int, count int) error {
	if count != len(ids) {
		return fmt.Errorf("lm: %s with %d ids and %d %s", op, len(ids), count, what)
	}
	if closed {
		return fmt.Errorf("lm: streams used after Close")
	}
	for _, id := range ids {
		if id < 0 || id >= n {
			return fmt.Errorf("lm: stream %d does not exist (have %d)", id, n)
		}
	}
	return nil
}

func (s *streams) Predict(ctx context.Context, ids []int, dst []predictor.Dist) error {
	if err := s.check("Predict", "tables", ids, len(dst)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, id := range ids {
		s.m.predict(s.st[id].w, s.sc, &dst[i])
	}
	return nil
}

func (s *streams) Push(ids []int, syms []byte) error {
	if err := s.check("Push", "bytes", ids, len(syms)); err != nil {
		return err
	}
	for i, id := range ids {
		s.st[id].push(syms[i])
	}
	return nil
}

func (s *streams) Close() error {
	if s.sc != nil {
		s.m.pool.Put(s.sc)
	}
	s.st, s.sc = nil, nil
	return nil
}

var _ predictor.ByteModel = (*Model)(nil)
