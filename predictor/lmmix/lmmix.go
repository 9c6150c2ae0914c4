// Package lmmix mixes the neural LM's bit predictions with the
// context-mixing model's (predictor/cm) for codec lm+cm (id 6): the LM's
// stretched probability, and three small adaptive maps keyed by it, become
// inputs of three mixers next to cm's own nine mixer inputs and cm's final
// probability; a second layer mixes the three, two APMs refine the result.
// Every step is integer (SPEC.md gives the arithmetic); any change to it
// changes coded bits and needs a new codec id.
package lmmix

import (
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/mix"
)

// Sizes of the mixer (see SPEC.md).
const (
	nIn      = 15            // inputs of each first-layer mixer
	wStride  = 16            // weights per row in memory (the 16th is always 0)
	nMix     = 3             // first-layer mixers: selected by c2, c0 and c1
	sets2    = 3 * 4 * 6 * 8 // second layer: LM misses x LM advantage x LM confidence x bit position
	nBins    = 33            // APM interpolation points
	lmQ      = 16            // LM probability buckets of the state maps and APM 2
	rate0    = 24            // first-layer learning rate for the first rateBits bits
	rate1    = 12            // and after
	rate2    = 4             // second-layer learning rate
	rateBits = 1 << 15
	skipErr  = 24 // first-layer errors up to this (of 4096) are not trained on
	apmRate  = 7
	smRate   = 6
	advShift = 5
	advT     = 4096
)

// Input slots.
const (
	inLM  = 0  // stretch of the LM's probability
	inCM  = 1  // cm's nine mixer inputs, 1..9 (9 is cm's bias, 256)
	inCMP = 10 // stretch of cm's final probability
	inLMA = 11 // the LM's probability through an APM keyed by the partial byte
	inSM  = 12 // 12, 13: state maps keyed by LM bucket and cm's order-2 / order-3 bit history
	inSMM = 14 // state map keyed by LM bucket and match state
)

// Mixer is the per-block state of the lm+cm (id 6) mixer. The zero value is
// not usable: call New. A Mixer is not safe for concurrent use.
type Mixer struct {
	// w is first so that its rows, padded to 16 weights (64 bytes), lie
	// on cache lines (a Mixer is a large allocation, page-aligned).
	w [nMix * 256 * wStride]int32 // 16.16 weights; w[row+15] stays 0
	x [wStride]int32              // x[15] stays 0
	core
}

// core is what the mixers of id 6 (Mixer) and id 7 (Mixer7) share: id 6's
// fifteen inputs, the outputs of the three first-layer mixers, the second
// layer, the LM's APM, the state maps and the two final APMs. The mixers
// differ only in the width of their first layer and the inputs after the
// fifteenth.
type core struct {
	v   cm.View
	sel [nMix]int   // first-layer weight sets in use
	dot [nMix]int32 // stretched outputs, clamped to [-2047, 2047]
	pm  [nMix]int32 // squash of dot, 12 bits

	w2   [sets2 * nMix]int32
	sel2 int
	d2   int32
	p2   int32

	apmL [256 * nBins]uint16 // the LM's probability by partial byte
	iL   int
	sm   [2][lmQ * 256]uint16 // by LM bucket and bit-history state
	is   [2]int
	smM  [lmQ * 32]uint16 // by LM bucket and match state
	iM   int
	a1   [256 * nBins]uint16     // final APM by partial byte
	a2   [lmQ * 8 * nBins]uint16 // final APM by LM bucket and bit position
	i1   int
	i2   int

	pL, pC int32 // last 12-bit probabilities of the LM and cm
	eL, eC int32 // their recent absolute errors (scaled by 16)
	n      int   // bits coded
	miss   int   // bits of this byte so far that the LM gave a probability below 1/2
}

// New returns a mixer in its initial state.
func New() *Mixer {
	m := &Mixer{}
	m.Reset()
	return m
}

// Copies of predictor/mix's squash and stretch tables, indexed directly
// (d+2048 and p12), so the hot path needs no pointer load or clamp.
var (
	squashTab = func() (t [4096]int16) {
		for d := range t {
			t[d] = int16(mix.Squash(int32(d - 2048)))
		}
		return
	}()
	stretchTab = func() (t [4096]int16) {
		for p := range t {
			t[p] = int16(mix.Stretch(int32(p)))
		}
		return
	}()
)

func squash(d int32) int32    { return int32(squashTab[(d+2048)&4095]) } // d in [-2047, 2047]
func stretch(p12 int32) int32 { return int32(stretchTab[p12&4095]) }     // p12 in [0, 4095]

// apmInit is an APM row that starts as the identity.
var apmInit = func() (r [nBins]uint16) {
	for j := range r {
		r[j] = uint16(mix.Squash(int32((j-16)*128)) * 16)
	}
	return
}()

// Reset puts the mixer back to its initial state, for a new block.
func (m *Mixer) Reset() {
	clear(m.w[:])
	for s := 0; s < len(m.w); s += wStride {
		m.w[s+inLM] = 1 << 15
		m.w[s+inCMP] = 1 << 15
	}
	m.core.reset()
}

// reset puts the shared state back to its initial state, for a new block.
func (m *core) reset() {
	for i := range m.w2 {
		m.w2[i] = 65536 / nMix
	}
	for _, a := range [][]uint16{m.apmL[:], m.a1[:], m.a2[:]} {
		for c := 0; c < len(a); c += nBins {
			copy(a[c:], apmInit[:])
		}
	}
	for i := range m.sm {
		for j := range m.sm[i] {
			m.sm[i][j] = 1 << 15
		}
	}
	for i := range m.smM {
		m.smM[i] = 1 << 15
	}
	m.eL, m.eC, m.n, m.miss = 0, 0, 0, 0
}

// conf buckets the LM's confidence |stretch(p)|: 0..5.
func conf(st int32) int {
	if st < 0 {
		st = -st
	}
	switch {
	case st < 128:
		return 0
	case st < 384:
		return 1
	case st < 768:
		return 2
	case st < 1280:
		return 3
	case st < 1792:
		return 4
	}
	return 5
}

func clampSt(d int64) int32 { return int32(max(min(d, 2047), -2047)) }

// interp returns the APM row t's value at stretch s+2048 (1..4095) and the
// index of the point Update trains.
func interp(t []uint16, row int, s int32) (int32, int) {
	w := s & 127
	lo := row + int(s>>7)
	p := (int32(t[lo])*(128-w) + int32(t[lo+1])*w) >> 7
	return p, lo + int(w>>6)
}

// P returns P(next bit = 1) as a 16-bit probability in [16, 65520], given
// the LM's 16-bit probability pl of a 1 and cm's model c, whose next
// prediction is for the same bit.
func (m *Mixer) P(pl int32, c *cm.Model) int {
	stL, c0, lq := m.inputs(pl, c, (*[nIn]int32)(m.x[:nIn]))
	m.rows(c0, wStride)
	for k := range nMix {
		d := dot(&m.x, (*[wStride]int32)(m.w[m.sel[k]:]))
		m.dot[k] = clampSt(d >> 16)
		m.pm[k] = squash(m.dot[k])
	}
	return m.output(stL, c0, lq)
}

// rows selects the first-layer weight sets, of stride weights each, by cm's
// contexts c2, c0 (the partial byte) and c1.
func (m *core) rows(c0, stride int) {
	m.sel[0] = (0*256 + int(m.v.C2)) * stride
	m.sel[1] = (1*256 + c0) * stride
	m.sel[2] = (2*256 + int(m.v.C1)) * stride
}

// err1 returns first-layer mixer k's error on bit y times the learning rate
// lr, and false where the error is too small to train on.
func (m *core) err1(k int, y int32, lr int64) (int64, bool) {
	err := int64(y<<12 - m.pm[k])
	if err <= skipErr && err >= -skipErr {
		return 0, false
	}
	return err * lr, true
}

// inputs reads cm's view of c and fills the fifteen inputs of id 6 into x.
// It returns the LM's stretched probability, the partial byte and the LM's
// bucket (0..15), which output needs.
func (m *core) inputs(pl int32, c *cm.Model, x *[nIn]int32) (stL int32, c0, lq int) {
	c.View(&m.v)
	v := &m.v
	stL = stretch(min(max(pl>>4, 0), 4095))
	m.pL, m.pC = pl>>4, v.P
	x[inLM] = stL
	copy(x[inCM:inCM+cm.NInputs], v.X[:])
	x[inCMP] = stretch(v.P)
	c0 = int(v.C0 & 0xFF)
	q, i := interp(m.apmL[:], c0*nBins, stL+2048)
	m.iL = i
	x[inLMA] = stretch(q >> 4)
	lq = int((stL + 2048) >> 8) // 0..15
	for j := range 2 {
		m.is[j] = lq*256 + int(v.States[j])
		x[inSM+j] = stretch(int32(m.sm[j][m.is[j]]) >> 4)
	}
	mb := 0
	if v.MatchLen > 0 {
		mb = min(v.MatchLen, 15)*2 + v.MatchBit
	}
	m.iM = lq*32 + mb
	x[inSMM] = stretch(int32(m.smM[m.iM]) >> 4)
	return stL, c0, lq
}

// output mixes the first layer's outputs (m.dot) in the second layer and
// refines the result with the two final APMs; stL, c0 and lq are what
// inputs returned. It returns the 16-bit probability that P returns.
func (m *core) output(stL int32, c0, lq int) int {
	v := &m.v
	cf := conf(stL)
	if v.Bits == 0 {
		m.miss = 0
	}
	m.sel2 = (((min(m.miss, 2)*4+m.adv())*6+cf)*8 + v.Bits) * nMix
	w2 := (*[nMix]int32)(m.w2[m.sel2:])
	d2 := int64(m.dot[0])*int64(w2[0]) + int64(m.dot[1])*int64(w2[1]) + int64(m.dot[2])*int64(w2[2])
	m.d2 = clampSt(d2 >> 16)
	m.p2 = squash(m.d2)

	q1, i1 := interp(m.a1[:], c0*nBins, m.d2+2048)
	q2, i2 := interp(m.a2[:], (lq*8+v.Bits)*nBins, m.d2+2048)
	m.i1, m.i2 = i1, i2
	p := (m.p2*32 + q1 + q2 + 2) >> 2
	return int(min(max(p, 16), 65520))
}

// adv buckets how much better the LM did than cm lately: 0..3.
func (m *core) adv() int {
	d := m.eL - m.eC
	switch {
	case d < -advT:
		return 0
	case d < 0:
		return 1
	case d < advT:
		return 2
	}
	return 3
}

// Update trains the mixer on the coded bit. Call it after P and before cm's
// Update.
func (m *Mixer) Update(bit int) {
	y := int32(bit & 1)
	lr := m.rate()
	for k := range nMix {
		if e, ok := m.err1(k, y, lr); ok {
			train(&m.x, (*[wStride]int32)(m.w[m.sel[k]:]), e)
		}
	}
	m.update(y)
}

// rate counts a coded bit and returns the first layer's learning rate for
// it.
func (m *core) rate() int64 {
	lr := int64(rate1)
	if m.n < rateBits {
		lr = rate0
	}
	m.n++
	return lr
}

// update trains the second layer, the APMs and the state maps on the coded
// bit y, after the first layer.
func (m *core) update(y int32) {
	e := int64(y<<12-m.p2) * rate2
	w2 := (*[nMix]int32)(m.w2[m.sel2:])
	for i := range nMix {
		w2[i] += int32((int64(m.dot[i])*e + 1<<13) >> 14)
	}
	if (y == 1) != (m.pL >= 2048) {
		m.miss++
	}
	m.eL += (abs(y<<12-m.pL)<<4 - m.eL) >> advShift
	m.eC += (abs(y<<12-m.pC)<<4 - m.eC) >> advShift
	apmTrain(&m.a1[m.i1], y, apmRate)
	apmTrain(&m.a2[m.i2], y, apmRate)
	apmTrain(&m.apmL[m.iL], y, apmRate)
	apmTrain(&m.sm[0][m.is[0]], y, smRate)
	apmTrain(&m.sm[1][m.is[1]], y, smRate)
	apmTrain(&m.smM[m.iM], y, smRate)
}

// apmTrain moves a 16-bit probability toward bit y at rate 1/2^r.
func apmTrain(t *uint16, y int32, r uint) {
	g := y<<16 + y<<r - y - y
	v := int32(*t)
	*t = uint16(v + (g-v)>>r)
}

func abs(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}

// dot returns the dot product of the inputs and a weight set.
func dot(x, w *[wStride]int32) int64 {
	// four partial sums (exact in int64, so the order does not matter)
	// shorten the dependency chain
	a := int64(x[0])*int64(w[0]) + int64(x[4])*int64(w[4]) + int64(x[8])*int64(w[8]) + int64(x[12])*int64(w[12])
	b := int64(x[1])*int64(w[1]) + int64(x[5])*int64(w[5]) + int64(x[9])*int64(w[9]) + int64(x[13])*int64(w[13])
	c := int64(x[2])*int64(w[2]) + int64(x[6])*int64(w[6]) + int64(x[10])*int64(w[10]) + int64(x[14])*int64(w[14])
	d := int64(x[3])*int64(w[3]) + int64(x[7])*int64(w[7]) + int64(x[11])*int64(w[11])
	return (a + b) + (c + d)
}

// train moves a weight set along the inputs by e (error times rate).
func train(x, w *[wStride]int32, e int64) {
	for i := range nIn {
		w[i] += int32((int64(x[i])*e + 1<<13) >> 14)
	}
}
