// Package order2 is a simple order-2 bit predictor: the probability of each
// bit is an adaptive counter selected by the two previous bytes and the bits
// of the current byte seen so far. It is lmfs's reference predictor for
// tests of the coding path, not a competitive model. Integer arithmetic only.
package order2

import (
	"fmt"
	"sync"

	"github.com/lmfs/lmfs/predictor"
)

// Predictor makes cold order-2 models and pools their tables. It is safe for
// concurrent use.
type Predictor struct{ pool sync.Pool }

var _ predictor.BitPredictor = (*Predictor)(nil)

// Params implements predictor.BitPredictor: order2 has no parameters.
func (p *Predictor) Params(int) byte { return 0 }

// New implements predictor.BitPredictor.
func (p *Predictor) New(blockLen int, params byte) (predictor.BitModel, error) {
	if params != 0 {
		return nil, fmt.Errorf("%w: order2 parameter byte is %d, want 0", predictor.ErrBadParams, params)
	}
	m, _ := p.pool.Get().(*Model)
	if m == nil {
		m = &Model{}
	}
	n := 1 << 12
	for n < blockLen*8 && n < 1<<22 {
		n *= 2
	}
	if cap(m.t) < n {
		m.t = make([]uint16, n)
	}
	m.t = m.t[:n]
	for i := range m.t {
		m.t[i] = 1 << 15
	}
	m.mask = uint32(n - 1)
	m.c0, m.c2 = 1, 0
	m.idx = m.index()
	return m, nil
}

// Release implements predictor.BitPredictor.
func (p *Predictor) Release(bm predictor.BitModel) {
	if m, ok := bm.(*Model); ok {
		p.pool.Put(m)
	}
}

// Model is one block's order-2 state.
type Model struct {
	t    []uint16 // P(1) in 16 bits per context
	mask uint32
	c0   uint32 // partial byte with a leading 1
	c2   uint32 // last two bytes
	idx  uint32
}

func (m *Model) index() uint32 {
	h := (m.c2<<8 | m.c0) * 0x9E3779B1
	return (h ^ h>>15) & m.mask
}

// P implements predictor.BitModel.
func (m *Model) P() int {
	p := int(m.t[m.idx])
	return min(max(p, 1), 1<<predictor.ProbBits-1)
}

// Update implements predictor.BitModel.
func (m *Model) Update(bit int) {
	p := int32(m.t[m.idx])
	if bit != 0 {
		p += (65536 - p) >> 4
	} else {
		p -= p >> 4
	}
	m.t[m.idx] = uint16(min(p, 65535))
	m.c0 = m.c0<<1 | uint32(bit&1)
	if m.c0 >= 256 {
		m.c2 = (m.c2<<8 | m.c0&0xFF) & 0xFFFF
		m.c0 = 1
	}
	m.idx = m.index()
}
