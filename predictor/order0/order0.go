// Package order0 is lmfs's reference byte predictor: adaptive order-0 byte
// frequencies, in integer arithmetic. It implements predictor.ByteModel the
// way a neural LM backend does (batched scoring for encoding, stepwise batched
// streams for decoding) and exists to test the 256-ary coding path and to
// serve as a template; it is not registered as a codec.
package order0

import (
	"context"
	"fmt"

	"github.com/lmfs/lmfs/predictor"
)

// Model is the order-0 byte model. The zero value is ready to use and safe
// for concurrent use.
type Model struct{}

var _ predictor.ByteModel = Model{}

const (
	inc   = 32
	limit = 1 << 15
)

// state is one block's adaptive counts.
type state struct {
	cnt   [256]uint32
	total uint32
}

func (s *state) reset() {
	for i := range s.cnt {
		s.cnt[i] = 1
	}
	s.total = 256
}

func (s *state) push(b byte) {
	s.cnt[b] += inc
	s.total += inc
	if s.total > limit {
		s.total = 0
		for i, c := range s.cnt {
			c = (c + 1) / 2
			s.cnt[i] = c
			s.total += c
		}
	}
}

// dist scales the counts to a Dist: each byte gets 1 plus its share of the
// rest, and the rounding remainder goes to the first most frequent byte.
func (s *state) dist(d *predictor.Dist) {
	const spare = predictor.FreqTotal - 256
	var sum uint32
	best := 0
	for i, c := range s.cnt {
		f := 1 + uint32(uint64(c)*spare/uint64(s.total))
		d[i] = f
		sum += f
		if c > s.cnt[best] {
			best = i
		}
	}
	d[best] += predictor.FreqTotal - sum
}

// Score implements predictor.ByteModel.
func (Model) Score(ctx context.Context, blocks [][]byte, emit func(b, pos int, d *predictor.Dist) error) error {
	var s state
	var d predictor.Dist
	for b, blk := range blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.reset()
		for pos, c := range blk {
			s.dist(&d)
			if err := emit(b, pos, &d); err != nil {
				return err
			}
			s.push(c)
		}
	}
	return nil
}

// Streams implements predictor.ByteModel.
func (Model) Streams(_ context.Context, n int) (predictor.ByteStreams, error) {
	if n < 0 {
		return nil, fmt.Errorf("order0: %d streams", n)
	}
	st := &streams{s: make([]state, n)}
	for i := range st.s {
		st.s[i].reset()
	}
	return st, nil
}

type streams struct{ s []state }

func (st *streams) Predict(ctx context.Context, ids []int, dst []predictor.Dist) error {
	if len(ids) != len(dst) {
		return fmt.Errorf("order0: %d ids but %d distributions", len(ids), len(dst))
	}
	for i, id := range ids {
		if id < 0 || id >= len(st.s) {
			return fmt.Errorf("order0: no stream %d", id)
		}
		st.s[id].dist(&dst[i])
	}
	return ctx.Err()
}

func (st *streams) Push(ids []int, syms []byte) error {
	if len(ids) != len(syms) {
		return fmt.Errorf("order0: %d ids but %d bytes", len(ids), len(syms))
	}
	for i, id := range ids {
		if id < 0 || id >= len(st.s) {
			return fmt.Errorf("order0: no stream %d", id)
		}
		st.s[id].push(syms[i])
	}
	return nil
}

func (st *streams) Close() error { st.s = nil; return nil }
