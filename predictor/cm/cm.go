// Package cm is lmfs's context-mixing bit predictor, in the lpaq1 family,
// written for cold blocks: every block is coded from a fresh model, so the
// model is tuned to learn fast from the first bytes.
//
// For each bit the model looks at:
//
//   - order-0 and order-1 contexts, each with a direct adaptive counter per
//     context and partial byte;
//   - order-2, 3, 4 and 6 contexts and a word context (the hash of the
//     letters of the current word, case-folded, with the previous word) in
//     one hash table of 16-byte slots (a checksum byte and the bit histories
//     of the 15 nodes of a nibble's bit tree), looked up twice per byte. A
//     bit history is a one-byte state standing for recent counts of zeros
//     and ones; an adaptive map per order turns it into a probability;
//     the word context is the current word only (empty between words);
//   - a match model: the most recent earlier occurrence of the last matchMin
//     bytes in the block predicts the bit that followed it, with a
//     confidence learned per match length.
//
// The stretched probabilities (ln(p/(1-p))) are combined by a gated linear
// mixer whose integer weight set is selected by the previous byte, the bit
// position and the match state; a final one-input mixer per partial byte
// rescales the result, and an adaptive probability map (APM/SSE) indexed by
// the partial byte refines it. Learning rates start high and fall as the
// block goes on.
//
// All arithmetic is integer (see tables.go for the fixed-point conventions),
// so every GOARCH computes the same probabilities. Any change to it changes
// the coded bits and so needs a new codec id.
package cm

import (
	"fmt"
	"sync"

	"github.com/lmfs/lmfs/predictor"
)

// Memory bounds: the tables of one model for a block of n bytes take about
// 16*n*slotsPerByte bytes plus fixed tables of about 1 MiB, capped by the
// configured memory.
const (
	minSlotsLog  = 10
	maxSlotsLog  = 24
	slotsPerByte = 4
	fixedMemory  = 1 << 20
	// MinMemory is the smallest memory bound New accepts.
	MinMemory = fixedMemory + 16<<minSlotsLog
)

const (
	nHashed  = 5 // orders 2, 3, 4, 6 and word, in the hash table
	nDirect  = 2 // orders 0 and 1, direct counters
	nCtx     = nDirect + nHashed
	nInputs  = nCtx + 2 // plus match model and bias
	matchMin = 8        // bytes of context the match model hashes
	setSize  = nInputs  // weights per weight set
	apmBins  = 33
)

// Predictor makes cold cm models and pools their tables. It implements
// predictor.BitPredictor and is safe for concurrent use.
type Predictor struct {
	memory int64
	pool   sync.Pool
}

// New returns a predictor whose models use at most about memory bytes each
// (values below MinMemory are raised to it).
func New(memory int64) *Predictor {
	if memory < MinMemory {
		memory = MinMemory
	}
	return &Predictor{memory: memory}
}

var _ predictor.BitPredictor = (*Predictor)(nil)

// Params implements predictor.BitPredictor: the parameter byte is the log2
// of the hash-table size in 16-byte slots, chosen from the block length and
// capped by the memory bound.
func (p *Predictor) Params(blockLen int) byte {
	want := blockLen * slotsPerByte
	lg := minSlotsLog
	for 1<<lg < want && lg < maxSlotsLog && int64(16)<<(lg+1)+fixedMemory <= p.memory {
		lg++
	}
	return byte(lg)
}

// Check returns the error New would give for parameter byte params, without
// making a model: for coders that run cm elsewhere (on a GPU) under the same
// memory bound.
func (p *Predictor) Check(params byte) error {
	lg := int(params)
	if lg < minSlotsLog || lg > maxSlotsLog {
		return fmt.Errorf("%w: cm hash-table size 2^%d slots is outside 2^%d..2^%d", predictor.ErrBadParams, lg, minSlotsLog, maxSlotsLog)
	}
	if need := int64(16)<<lg + fixedMemory; need > p.memory && lg > minSlotsLog {
		return fmt.Errorf("cm block needs %d MiB of tables, above the configured codec.cm_memory of %d MiB: raise it to read this block", need>>20, p.memory>>20)
	}
	return nil
}

// New implements predictor.BitPredictor.
func (p *Predictor) New(blockLen int, params byte) (predictor.BitModel, error) {
	if err := p.Check(params); err != nil {
		return nil, err
	}
	lg := int(params)
	m, _ := p.pool.Get().(*Model)
	if m == nil {
		m = &Model{}
	}
	m.reset(blockLen, 1<<lg)
	return m, nil
}

// Release implements predictor.BitPredictor.
func (p *Predictor) Release(bm predictor.BitModel) {
	if m, ok := bm.(*Model); ok {
		p.pool.Put(m)
	}
}

// Context maps turn a context (a bit-history state, a match state, or for
// the direct counters an order-0/1 context) into an adaptive probability:
// each entry holds 22 bits of probability and a 10-bit count in one uint32.
// The match map learns at rate 1/(count+1.5) until the count reaches
// smLimit, the direct counters until ctrLimit; the bit-history maps start
// from each state's count estimate and learn at a fixed 1/256.
const smLimit = 1023

// smRate[n] = 2^16/(n+1.5), the learning rate after n updates.
var smRate = func() (r [1024]int32) {
	for n := range r {
		r[n] = 65536 * 2 / int32(2*n+3)
	}
	return
}()

// smP returns the 12-bit probability of an entry.
func smP(v uint32) int32 { return int32(v >> 20) }

// smUpdate trains entry v with bit y.
func smUpdate(v *uint32, y int) {
	t := *v
	n := t & 1023
	p := int32(t >> 10)
	// (target-p) has 23 bits with sign; scaled down by 2^7 and multiplied by
	// a rate below 2^16 it fits in 32 bits.
	p += ((int32(y)<<22 - p) >> 7) * smRate[n] >> 9
	if n < smLimit {
		n++
	}
	*v = uint32(p)<<10 | n
}

// ctrLimit caps the count of direct context counters, which track a
// changing context rather than a fixed state.
const ctrLimit = 60

// ctrUpdate trains a direct counter (same layout as a context-map entry)
// with bit y.
func ctrUpdate(v *uint32, y int) {
	t := *v
	n := t & 1023
	p := int32(t >> 10)
	p += ((int32(y)<<22 - p) >> 7) * smRate[n] >> 9
	if n < ctrLimit {
		n++
	}
	*v = uint32(p)<<10 | n
}

// smInitStates sets a map over bit-history states to each state's count
// estimate, (n1+1/2)/(n0+n1+1).
func smInitStates(t *[256]uint32) {
	for i := range t {
		n0, n1 := int64(tab.n0[i]), int64(tab.n1[i])
		p := ((2*n1 + 1) << 22) / (2*(n0+n1) + 2)
		t[i] = uint32(p) << 10
	}
}

// The APM refines the mixer's probability given the partial byte: 33 bins
// over the stretch domain per context, interpolated between the two nearest
// bins, the nearer one trained at rate 1/2^apmRate. Entries are 16-bit
// probabilities, starting at squash of the bin's centre.
const apmRate = 7

var apmRow = func() (r [apmBins]uint16) {
	for j := range r {
		r[j] = uint16(squashCalc(int32(j-16)*128) * 16)
	}
	return
}()

// Model is the per-block state of the cm predictor. It implements
// predictor.BitModel.
type Model struct {
	// history
	buf    []byte
	c0     uint32 // partial byte with a leading 1
	c4, c8 uint32 // last 8 bytes
	bits   int    // bits of the current byte seen
	word   uint32 // hash of the current word

	// contexts
	// ht holds the bit-history states of the hashed contexts in slots of
	// 16 bytes.
	ht   []uint8
	mask uint32 // slot index mask
	h    [nHashed]uint32
	slot [nHashed]int   // byte offset of each context's current slot
	cp   [nHashed]int   // index in ht of each hashed context's current state
	st   [nHashed]uint8 // the states predict saw
	sm   [nHashed][256]uint32
	o0   [256]uint32 // order 0: direct adaptive probabilities
	o1   []uint32    // order 1: direct adaptive probabilities
	o1i  int

	// match model
	mt    []int32 // hash of last matchMin bytes -> position after them
	mmask uint32
	mptr  int // position in buf of the predicted byte
	mlen  int
	mbit  int // expected bit, when mlen > 0
	mcx   int
	msm   [64 * 2]uint32

	// mixers
	x     [nInputs]int32
	w     []int32 // weightSets sets of setSize weights
	wsel  int     // offset of the selected weight set in w
	mp    int32   // the mixer's output, stretched
	fw    []int32 // final weights, selected by partial byte
	fsel  int
	fdot  int32
	nbits int

	apm    [256 * apmBins]uint16
	apmIdx int // the bin to train
	pmix   int32
	pr     int32 // final 12-bit probability of a 1
}

// weightSets is the number of mixer weight sets: previous byte (256) times
// bit position (8) times match state (none, predicts 0, predicts 1).
const weightSets = 256 * 8 * 3

func (m *Model) reset(blockLen, slots int) {
	if cap(m.buf) < blockLen {
		m.buf = make([]byte, 0, blockLen)
	}
	m.buf = m.buf[:0]
	m.c0, m.c4, m.c8, m.bits, m.word = 1, 0, 0, 0, 0
	m.ht = resize8(m.ht, slots*16)
	m.mask = uint32(slots - 1)
	for i := range m.sm {
		smInitStates(&m.sm[i])
	}
	for i := range m.o0 {
		m.o0[i] = 1 << 31
	}
	m.o1 = resize32(m.o1, 1<<16)
	for i := range m.o1 {
		m.o1[i] = 1 << 31
	}
	ms := 1 << 10
	for ms < blockLen && ms < 1<<22 {
		ms *= 2
	}
	m.mt = resize32i(m.mt, ms)
	m.mmask = uint32(ms - 1)
	m.mptr, m.mlen, m.mbit = 0, 0, 0
	for i := range m.msm {
		m.msm[i] = 1 << 31
	}

	m.w = resize32i(m.w, weightSets*setSize)
	for i := range m.w {
		m.w[i] = 1 << 14
	}
	m.fw = resize32i(m.fw, 256)
	for i := range m.fw {
		m.fw[i] = 65536
	}
	m.nbits = 0
	for i := 0; i < 256; i++ {
		copy(m.apm[i*apmBins:], apmRow[:])
	}
	m.h = [nHashed]uint32{}
	m.byteUpdate()
	m.nibbleUpdate()
	m.predict()
}

func resize8(b []uint8, n int) []uint8 {
	if cap(b) < n {
		return make([]uint8, n)
	}
	b = b[:n]
	clear(b)
	return b
}

func resize32(b []uint32, n int) []uint32 {
	if cap(b) < n {
		return make([]uint32, n)
	}
	return b[:n]
}

func resize32i(b []int32, n int) []int32 {
	if cap(b) < n {
		return make([]int32, n)
	}
	b = b[:n]
	clear(b)
	return b
}

// P implements predictor.BitModel.
func (m *Model) P() int { return int(m.pr) << 4 }

func hash32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x7feb352d
	x ^= x >> 15
	x *= 0x846ca68b
	x ^= x >> 16
	return x
}

// find returns the byte offset of the slot for context hash h, claiming the
// least used of three candidate slots when none carries h's checksum.
func (m *Model) find(h uint32) int { return findSlot(m.ht, m.mask, h) }

// findSlot is find on table t of mask+1 slots of 16 bytes.
func findSlot(t []uint8, mask, h uint32) int {
	h = hash32(h)
	chk := uint8(h >> 24)
	i := h & mask
	b0 := int(i) * 16
	if t[b0] == chk {
		return b0
	}
	b1 := int(i^1) * 16
	if t[b1] == chk {
		return b1
	}
	b2 := int(i^2) * 16
	if t[b2] == chk {
		return b2
	}
	b := b0
	if tab.prio[t[b1+1]] < tab.prio[t[b+1]] {
		b = b1
	}
	if tab.prio[t[b2+1]] < tab.prio[t[b+1]] {
		b = b2
	}
	clear(t[b : b+16])
	t[b] = chk
	return b
}

// byteUpdate recomputes the byte-level context hashes after a whole byte.
func (m *Model) byteUpdate() {
	c4, c8 := m.c4, m.c8
	m.h[0] = (c4&0xFFFF)*0x2F0B4C75 + 0x1000000
	m.h[1] = (c4&0xFFFFFF)*0x7A3F5E93 + 0x3000000
	m.h[2] = c4*0x3C6EF372 + 0x5000000
	m.h[3] = hash32(c4*0x9E3779B1+0x7000000) + (c8&0xFFFF)*0x6F4F2A35
	m.h[4] = hash32(m.word*0x2545F491) + 0x9000000
}

// nibbleUpdate looks up the hashed slots at bit 0 and bit 4 of a byte.
func (m *Model) nibbleUpdate() {
	k := m.c0 * 0x1D8E4E27
	for i := range m.h {
		m.slot[i] = m.find(m.h[i] + k)
	}
}

// Update implements predictor.BitModel.
func (m *Model) Update(bit int) {
	y := bit & 1
	m.train(y)

	m.c0 = m.c0<<1 | uint32(y)
	m.bits++
	if m.mlen > 0 && m.mbit != y {
		m.mlen = 0
	}
	if m.bits == 8 {
		c := byte(m.c0)
		m.buf = append(m.buf, c)
		m.c8 = m.c8<<8 | m.c4>>24
		m.c4 = m.c4<<8 | uint32(c)
		m.c0, m.bits = 1, 0
		lc := c
		if lc >= 'A' && lc <= 'Z' {
			lc += 'a' - 'A'
		}
		if lc >= 'a' && lc <= 'z' || lc >= 0x80 {
			m.word = (m.word + uint32(lc) + 1) * 0x3D4D51CB
		} else {
			m.word = 0
		}
		m.byteUpdate()
		m.matchUpdate()
		m.nibbleUpdate()
	} else if m.bits == 4 {
		m.nibbleUpdate()
	}
	m.predict()
}

// matchUpdate advances the match model after a whole byte.
func (m *Model) matchUpdate() {
	n := len(m.buf)
	if m.mlen > 0 {
		m.mptr++
		if m.mlen < 65535 {
			m.mlen++
		}
	}
	if n < matchMin {
		return
	}
	// the last matchMin = 8 bytes are c8:c4
	h := hash32(m.c4*0x2F0B4C75^hash32(m.c8+0x9E3779B9)) & m.mmask
	if m.mlen == 0 {
		p := int(m.mt[h])
		if p > 0 && p < n {
			l := 0
			for l < 255 && l < p && m.buf[p-1-l] == m.buf[n-1-l] {
				l++
			}
			if l >= matchMin {
				m.mptr, m.mlen = p, l
			}
		}
	}
	m.mt[h] = int32(n)
}

func matchBucket(l int) int {
	switch {
	case l < 16:
		return l
	case l < 48:
		return 16 + (l-16)/4
	case l < 176:
		return 24 + (l-48)/16
	default:
		return min(32+(l-176)/64, 63)
	}
}

// predict computes the probability of the next bit.
func (m *Model) predict() {
	// node within the nibble tree: 1..15
	var node uint32
	if m.bits < 4 {
		node = m.c0
	} else {
		node = (1 << uint(m.bits-4)) | (m.c0 & ((1 << uint(m.bits-4)) - 1))
	}
	ht := m.ht
	m.x[0] = stretchTab[m.o0[m.c0&0xFF]>>20]
	m.o1i = int((m.c4&0xFF)<<8 | m.c0&0xFF)
	m.x[1] = stretchTab[m.o1[m.o1i]>>20]
	for i := range nHashed {
		cp := m.slot[i] + int(node)
		m.cp[i] = cp
		st := ht[cp]
		m.st[i] = st
		m.x[nDirect+i] = stretchTab[m.sm[i][st]>>20]
	}

	// match model
	if m.mlen > 0 {
		pb := m.buf[m.mptr]
		m.mbit = int(pb>>(7-uint(m.bits))) & 1
		m.mcx = matchBucket(m.mlen)*2 + m.mbit
		m.x[nCtx] = stretch(smP(m.msm[m.mcx&127]))
	} else {
		m.mcx = 0
		m.x[nCtx] = 0
	}
	m.x[nCtx+1] = 256

	// mixer: one weight set per (previous byte, bit position, match state)
	ms := 0
	if m.mlen > 0 {
		ms = 1 + m.mbit
	}
	m.wsel = ((int(m.c4&0xFF)<<3|m.bits)*3 + ms) * setSize
	m.mp = clampSt(int32(dot9(&m.x, (*[setSize]int32)(m.w[m.wsel:])) >> 16))
	// final scaling, one weight per partial byte
	m.fsel = int(m.c0 & 0xFF)
	m.fdot = clampSt(int32((int64(m.mp) * int64(m.fw[m.fsel&0xFF])) >> 16))
	pr := squash(m.fdot)
	m.pmix = pr

	// APM stages
	s := m.fdot + 2048
	w := s & 127
	i := int(m.c0&0xFF)*apmBins + int(s>>7)
	m.apmIdx = i + int(w>>6)
	p1 := (int32(m.apm[i])*(128-w) + int32(m.apm[i+1])*w) >> 11
	pr = (pr + p1 + 1) >> 1
	if pr < 1 {
		pr = 1
	} else if pr > 4095 {
		pr = 4095
	}
	m.pr = pr
}

func clampSt(d int32) int32 {
	if d > 2047 {
		return 2047
	}
	if d < -2047 {
		return -2047
	}
	return d
}

// train updates every adaptive part with the coded bit y.
func (m *Model) train(y int) {
	ht := m.ht
	yb := y & 1
	ctrUpdate(&m.o0[m.c0&0xFF], yb)
	ctrUpdate(&m.o1[m.o1i&0xFFFF], yb)
	for i := range nHashed {
		st := m.st[i]
		// state maps start from the states' count estimates and learn
		// at a fixed rate of 1/256
		StateMapUpdate(&m.sm[i][st], yb)
		ht[m.cp[i]] = nextState[st][yb]
	}
	if m.mlen > 0 {
		smUpdate(&m.msm[m.mcx&127], y)
	}

	lr := int64(7)
	if m.nbits < 1<<14 {
		lr = 20
	} else if m.nbits < 1<<16 {
		lr = 12
	}
	m.nbits++
	// the mixer learns from its own prediction (skipping errors below 24/4096,
	// which change little), the final weight from the final one
	if err := int64(y<<12) - int64(squash(m.mp)); err > 24 || err < -24 {
		e := err * lr
		train9(&m.x, (*[setSize]int32)(m.w[m.wsel:]), e)
	}
	e := (int64(y<<12) - int64(m.pmix)) * lr
	m.fw[m.fsel&0xFF] += int32((int64(m.mp)*e + 1<<13) >> 14)
	g := int32(y<<16) + int32(y<<apmRate) - int32(y) - int32(y)
	v := int32(m.apm[m.apmIdx])
	m.apm[m.apmIdx] = uint16(v + (g-v)>>apmRate)
}

// dot9 returns the dot product of inputs and weights.
func dot9(x *[nInputs]int32, w *[setSize]int32) int64 {
	return int64(x[0])*int64(w[0]) + int64(x[1])*int64(w[1]) + int64(x[2])*int64(w[2]) +
		int64(x[3])*int64(w[3]) + int64(x[4])*int64(w[4]) + int64(x[5])*int64(w[5]) +
		int64(x[6])*int64(w[6]) + int64(x[7])*int64(w[7]) + int64(x[8])*int64(w[8])
}

// train9 moves weights w along inputs x by error e (error times rate).
func train9(x *[nInputs]int32, w *[setSize]int32, e int64) {
	w[0] += int32((int64(x[0])*e + 1<<13) >> 14)
	w[1] += int32((int64(x[1])*e + 1<<13) >> 14)
	w[2] += int32((int64(x[2])*e + 1<<13) >> 14)
	w[3] += int32((int64(x[3])*e + 1<<13) >> 14)
	w[4] += int32((int64(x[4])*e + 1<<13) >> 14)
	w[5] += int32((int64(x[5])*e + 1<<13) >> 14)
	w[6] += int32((int64(x[6])*e + 1<<13) >> 14)
	w[7] += int32((int64(x[7])*e + 1<<13) >> 14)
	w[8] += int32((int64(x[8])*e + 1<<13) >> 14)
}

// The match hash covers c4 and c8, so matchMin must be 8.
var _ = [1]int{}[matchMin-8]

// The unrolled mixer code assumes nine inputs.
var _ = [1]int{}[nInputs-9]

// NInputs is the number of stretched inputs of cm's main mixer and NHashed
// the number of its hashed contexts (see View).
const (
	NInputs = nInputs
	NHashed = nHashed
)

// View is what the model computed for the next bit, for a caller that mixes
// cm's predictions with another model's (codec lm+cm, id 6). All values are
// integer, in the fixed-point conventions of tables.go.
type View struct {
	// X are the main mixer's inputs in the stretch domain: order 0, order 1,
	// orders 2, 3, 4, 6, word, match model, and the bias (256).
	X *[NInputs]int32
	// Mix is the main mixer's output and Final the output after the final
	// per-partial-byte scaling, both stretched and clamped to [-2047, 2047].
	Mix, Final int32
	// P is the model's final probability of a 1 (12 bits, 1..4095), as P
	// returns it shifted to 16 bits.
	P int32
	// C0 is the partial byte with a leading 1, C1 the previous byte, C2
	// the one before it and Bits the number of bits of the current byte
	// already coded.
	C0, C1, C2 uint32
	Bits       int
	// States are the bit-history states of the hashed contexts (orders 2,
	// 3, 4, 6 and word) for this bit.
	States *[NHashed]uint8
	// MatchLen is the match model's current match length (0: none) and
	// MatchBit the bit it predicts when MatchLen > 0.
	MatchLen, MatchBit int
}

// View fills v with the model's state for the next bit. It changes nothing
// in the model; v.X points into the model and is valid until the next
// Update.
func (m *Model) View(v *View) {
	v.X = &m.x
	v.States = &m.st
	v.Mix, v.Final, v.P = m.mp, m.fdot, m.pr
	v.C0, v.C1, v.C2, v.Bits = m.c0, m.c4&0xFF, m.c4>>8&0xFF, m.bits
	v.MatchLen, v.MatchBit = m.mlen, m.mbit
}
