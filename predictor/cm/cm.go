// Package cm is lmfs's context-mixing bit predictor, in the lpaq1 family,
// written for cold blocks: every block is coded from a fresh model, so the
// model is tuned to learn fast from the first bytes.
//
// For each bit the model looks at:
//
//   - order-0 and order-1 contexts in direct tables, and order-2, 3, 4 and 6
//     contexts and a word context (the hash of the letters of the current
//     word, case-folded, with the previous word) in one hash table of 16-byte
//     slots (a checksum byte and the bit histories of the 15 nodes of a
//     nibble's bit tree), looked up twice per byte;
//   - a match model: the longest recent repeat of the last MinLen bytes in the
//     block, predicting the bit that followed it;
//
// Each context's bit history (a one-byte state counting recent zeros and
// ones) is mapped to a probability by an adaptive table per order. The
// stretched probabilities are combined by gated linear mixers (integer
// weights, weight sets selected by the partial byte and by match state), a
// final mixer combines those, and two adaptive probability maps (APM/SSE)
// refine the result by order-1 and order-2 context.
//
// All arithmetic is integer (see tables.go for the fixed-point conventions),
// so every GOARCH computes the same probabilities. Any change to it changes
// the coded bits and so needs a new codec id.
package cm

import (
	"sync"

	"github.com/lmfs/lmfs/predictor"
)

// Memory bounds: the tables of one model for a block of n bytes take about
// 16*n*slotsPerByte bytes plus fixed tables of about 1 MiB, capped by the
// configured memory.
const (
	minSlots     = 1 << 10
	slotsPerByte = 4
	fixedMemory  = 1 << 20
	// MinMemory is the smallest memory bound New accepts.
	MinMemory = fixedMemory + 16*minSlots
)

const (
	nHashed  = 5           // orders 2, 3, 4, 6 and word, in the hash table
	nCtx     = 2 + nHashed // plus order 0 and 1 in direct tables
	nInputs  = nCtx + 2    // plus match model and bias
	nSets    = 3           // mixers in the first layer
	matchMin = 6           // bytes of context the match model hashes
	setSize  = nInputs     // weights per weight set
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

// slotsFor returns the hash-table size (in 16-byte slots) for a block: a
// power of two, a function of the block length and memory bound only, so that
// encoder and decoder agree.
func (p *Predictor) slotsFor(blockLen int) int {
	want := blockLen * slotsPerByte
	n := minSlots
	for n < want && int64(n*2)*16+fixedMemory <= p.memory {
		n *= 2
	}
	return n
}

// New implements predictor.BitPredictor.
func (p *Predictor) New(blockLen int) predictor.BitModel {
	m, _ := p.pool.Get().(*Model)
	if m == nil {
		m = &Model{}
	}
	m.reset(blockLen, p.slotsFor(blockLen))
	return m
}

// Release implements predictor.BitPredictor.
func (p *Predictor) Release(bm predictor.BitModel) {
	if m, ok := bm.(*Model); ok {
		p.pool.Put(m)
	}
}

// stateMap maps a context (here a bit-history state) to an adaptive
// probability: 22 bits of probability and a 10-bit count in one uint32,
// updated by 1/(count+1.5) until the count reaches its limit.
type stateMap struct {
	t     []uint32
	limit uint32
}

var recip = func() (r [1024]int64) {
	for n := range r {
		r[n] = 65536 * 2 / int64(2*n+3)
	}
	return
}()

func (s *stateMap) p(cx int) int32 { return int32(s.t[cx] >> 20) }

func (s *stateMap) update(cx int, y int) {
	v := s.t[cx]
	n := v & 1023
	p := int64(v >> 10)
	p += ((int64(y)<<22 - p) * recip[n]) >> 16
	if n < s.limit {
		n++
	}
	s.t[cx] = uint32(p)<<10 | n
}

// initStates sets a state map over bit-history states to each state's count
// estimate, (n1+1/2)/(n0+n1+1).
func (s *stateMap) initStates() {
	for i := range s.t {
		n0, n1 := int64(tab.n0[i&255]), int64(tab.n1[i&255])
		p := ((2*n1 + 1) << 22) / (2*(n0+n1) + 2)
		s.t[i] = uint32(p) << 10
	}
}

// initFlat sets every context of a state map to probability 1/2.
func (s *stateMap) initFlat() {
	for i := range s.t {
		s.t[i] = 1 << 31
	}
}

// apm refines a probability given a context: 33 bins over the stretch domain
// per context, interpolated, the nearer bin trained.
type apm struct {
	t    []uint16
	idx  int
	rate uint
}

func (a *apm) init(n int, rate uint) {
	if cap(a.t) < n*apmBins {
		a.t = make([]uint16, n*apmBins)
	}
	a.t = a.t[:n*apmBins]
	for i := 0; i < n; i++ {
		for j := 0; j < apmBins; j++ {
			a.t[i*apmBins+j] = uint16(squash(int32(j-16)*128) * 16)
		}
	}
	a.rate = rate
}

func (a *apm) pp(pr int32, cx int) int32 {
	s := stretch(pr) + 2048
	lo := int(s >> 7)
	w := s & 127
	i := cx*apmBins + lo
	t := a.t[i : i+2]
	if w >= 64 {
		a.idx = i + 1
	} else {
		a.idx = i
	}
	return (int32(t[0])*(128-w) + int32(t[1])*w) >> 11
}

func (a *apm) update(y int) {
	g := int32(y<<16) + int32(y<<a.rate) - int32(y) - int32(y)
	v := int32(a.t[a.idx])
	a.t[a.idx] = uint16(v + (g-v)>>a.rate)
}

// Model is the per-block state of the cm predictor. It implements
// predictor.BitModel.
type Model struct {
	// history
	buf    []byte
	c0     uint32 // partial byte with a leading 1
	c4, c8 uint32 // last 8 bytes
	bits   int    // bits of the current byte seen
	word   uint32 // hash of the current word
	word1  uint32 // hash of the previous word

	// contexts
	t0   []uint8 // order 0: 256 states
	t1   []uint8 // order 1: 64K states
	ht   []uint8 // hashed contexts: slots of 16 bytes
	mask uint32  // slot index mask
	h    [nHashed]uint32
	slot [nHashed]int // byte offset of each context's current slot
	cp   [nCtx]int    // index of each context's current state (in t0, t1 or ht)
	sm   [nCtx]stateMap

	// match model
	mt    []int32 // hash of last matchMin bytes -> position after them
	mmask uint32
	mptr  int // position in buf of the predicted byte
	mlen  int
	mbit  int // expected bit, when mlen > 0
	mcx   int
	msm   stateMap

	// mixers
	x     [nInputs]int32
	w     []int32 // nSets groups of weight sets
	wsel  [nSets]int
	mp    [nSets]int32 // each first-layer mixer's stretch output
	fw    []int32      // final mixer weights, selected by bits
	fsel  int
	fdot  int32
	lr    int64
	nbits int

	a1, a2 apm
	pmix   int32
	pr     int32 // final 12-bit probability of a 1
}

// Sizes of the first-layer weight-set groups: by partial byte, by match
// length and expected bit, by order-2 byte class and bit position.
var setCounts = [nSets]int{256, 64 * 2, 8 * 256}

func (m *Model) reset(blockLen, slots int) {
	if cap(m.buf) < blockLen {
		m.buf = make([]byte, 0, blockLen)
	}
	m.buf = m.buf[:0]
	m.c0, m.c4, m.c8, m.bits, m.word, m.word1 = 1, 0, 0, 0, 0, 0
	m.t0 = resize8(m.t0, 256)
	m.t1 = resize8(m.t1, 1<<16)
	m.ht = resize8(m.ht, slots*16)
	m.mask = uint32(slots - 1)
	for i := range m.sm {
		m.sm[i].t = resize32(m.sm[i].t, 256)
		m.sm[i].limit = 1023
		m.sm[i].initStates()
	}
	ms := 1 << 10
	for ms < blockLen && ms < 1<<22 {
		ms *= 2
	}
	m.mt = resize32i(m.mt, ms)
	m.mmask = uint32(ms - 1)
	m.mptr, m.mlen, m.mbit = 0, 0, 0
	m.msm.t = resize32(m.msm.t, 64*2)
	m.msm.limit = 1023
	m.msm.initFlat()

	nw := 0
	for _, c := range setCounts {
		nw += c * setSize
	}
	m.w = resize32i(m.w, nw)
	for i := range m.w {
		m.w[i] = 1 << 14
	}
	m.fw = resize32i(m.fw, 256*nSets)
	for i := range m.fw {
		m.fw[i] = 65536 / nSets
	}
	m.nbits = 0
	m.a1.init(256, 6)
	m.a2.init(1<<16, 6)
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
func (m *Model) find(h uint32) int {
	h = hash32(h)
	chk := uint8(h >> 24)
	i := h & m.mask
	t := m.ht
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
	m.h[4] = hash32(m.word*0x2545F491+m.word1) + 0x9000000
	if m.word == 0 {
		m.h[4] += (c4 & 0xFF) * 0x5851F42D
	}
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

	// bit histories
	m.t0[m.cp[0]] = tab.next[m.t0[m.cp[0]]][y]
	m.t1[m.cp[1]] = tab.next[m.t1[m.cp[1]]][y]
	for i := 2; i < nCtx; i++ {
		j := m.cp[i]
		m.ht[j] = tab.next[m.ht[j]][y]
	}

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
		} else if m.word != 0 {
			m.word1 = m.word
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
	var h uint32
	for _, c := range m.buf[n-matchMin:] {
		h = (h + uint32(c) + 1) * 0x2F0B4C75
	}
	h = hash32(h) & m.mmask
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
	m.cp[0] = int(m.c0)
	m.cp[1] = int(m.c4&0xFF)<<8 | int(m.c0)
	for i := 0; i < nHashed; i++ {
		m.cp[2+i] = m.slot[i] + int(node)
	}
	st := [nCtx]uint8{m.t0[m.cp[0]], m.t1[m.cp[1]]}
	for i := 2; i < nCtx; i++ {
		st[i] = m.ht[m.cp[i]]
	}
	for i := 0; i < nCtx; i++ {
		m.x[i] = stretch(m.sm[i].p(int(st[i])))
	}

	// match model
	if m.mlen > 0 {
		pb := m.buf[m.mptr]
		m.mbit = int(pb>>(7-uint(m.bits))) & 1
		m.mcx = matchBucket(m.mlen)*2 + m.mbit
		m.x[nCtx] = stretch(m.msm.p(m.mcx))
	} else {
		m.mcx = 0
		m.x[nCtx] = 0
	}
	m.x[nCtx+1] = 256

	// first layer
	mb := 0
	if m.mlen > 0 {
		mb = m.mcx
	}
	c1 := m.c4 & 0xFF
	m.wsel[0] = int(m.c0) * setSize
	off := setCounts[0] * setSize
	m.wsel[1] = off + mb*setSize
	off += setCounts[1] * setSize
	m.wsel[2] = off + (int(m.bits)<<8|int(c1))*setSize
	for j := 0; j < nSets; j++ {
		w := m.w[m.wsel[j] : m.wsel[j]+setSize]
		var dot int64
		for i, x := range m.x {
			dot += int64(x) * int64(w[i])
		}
		d := int32(dot >> 16)
		if d > 2047 {
			d = 2047
		} else if d < -2047 {
			d = -2047
		}
		m.mp[j] = d
	}
	// final layer
	m.fsel = int(m.c0) * nSets
	fw := m.fw[m.fsel : m.fsel+nSets]
	var dot int64
	for j, x := range m.mp {
		dot += int64(x) * int64(fw[j])
	}
	m.fdot = clampSt(int32(dot >> 16))
	pr := squash(m.fdot)
	m.pmix = pr

	// APM stages
	p1 := m.a1.pp(pr, int(m.c0))
	p2 := m.a2.pp(pr, int((hash32(m.c4&0xFFFF)^m.c0*0x9E3779B1)>>16))
	pr = (2*pr + p1 + p2 + 2) >> 2
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
	st := [nCtx]uint8{m.t0[m.cp[0]], m.t1[m.cp[1]]}
	for i := 2; i < nCtx; i++ {
		st[i] = m.ht[m.cp[i]]
	}
	for i := 0; i < nCtx; i++ {
		m.sm[i].update(int(st[i]), y)
	}
	if m.mlen > 0 {
		m.msm.update(m.mcx, y)
	}

	lr := int64(14)
	if m.nbits < 1<<14 {
		lr = 40
	} else if m.nbits < 1<<16 {
		lr = 24
	}
	m.nbits++
	// first layer: each mixer learns from its own prediction
	for j := 0; j < nSets; j++ {
		err := int64(y<<12) - int64(squash(m.mp[j]))
		e := err * lr
		w := m.w[m.wsel[j] : m.wsel[j]+setSize]
		for i, x := range m.x {
			w[i] += int32((int64(x)*e + 1<<13) >> 14)
		}
	}
	err := int64(y<<12) - int64(m.pmix)
	e := err * lr
	fw := m.fw[m.fsel : m.fsel+nSets]
	for j, x := range m.mp {
		fw[j] += int32((int64(x)*e + 1<<13) >> 14)
	}
	m.a1.update(y)
	m.a2.update(y)
}
