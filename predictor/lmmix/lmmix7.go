package lmmix

import (
	"github.com/lmfs/lmfs/predictor/cm"
)

// Contexts that Mixer7 adds to id 6's inputs (bit i of a context set).
const (
	cxWord2 = iota // current and previous word (letters, case-folded)
	cxCol          // column in the line and the byte above (same column, previous line)
	cxSp23         // bytes -2 and -3 (sparse)
	cxSp13         // bytes -1 and -3 (sparse)
	cxInd          // indirect: byte -1 and the two bytes that followed its last occurrences
	cxO8           // order 8 (the last eight bytes)
	cxAbove        // the byte above and byte -1
	cxSp24         // bytes -2 and -4 (sparse)
	cxW12          // the previous two words (skipping the current one)
	cxW02          // the current word and the word before the previous one
	cxO12          // order 12
	cxInd2         // indirect: bytes -2, -1 and the two bytes that followed their last occurrences
	nCx
)

// opts7 is a configuration of Mixer7 (the tuning harness varies it; New7
// uses final7, the only one that is part of codec id 7).
type opts7 struct {
	ctx       uint32 // contexts in use (bit i: context i)
	slotShift int    // the context table has at least (bytes x contexts) >> slotShift slots
}

// ws7 is the number of weights per first-layer weight set in memory: up to
// 9 context inputs after id 6's 15.
const ws7 = 24

// final7 is the configuration of codec id 7: nine contexts, inputs 15..23
// in this order.
var final7 = opts7{ctx: 1<<cxWord2 | 1<<cxCol | 1<<cxInd | 1<<cxAbove | 1<<cxSp24 | 1<<cxW12 | 1<<cxW02 | 1<<cxO12 | 1<<cxInd2, slotShift: 2}

// Mixer7 is the per-block state of the lm+cm id 7 mixer: id 6's mixer
// (SPEC.md) with one more input per context of its own, each context a
// hashed bit history in a per-block table of cm's kind (cm.Slots) read
// through a cm-style state map. The zero value is not usable: call New7. A
// Mixer7 is not safe for concurrent use.
type Mixer7 struct {
	// w is first so that its rows (24 weights, 96 bytes) start 32-byte
	// aligned.
	w   [nMix * 256 * ws7]int32 // 16.16 weights; w[row+ni..] stay 0
	o   opts7
	ni  int        // inputs of each first-layer mixer
	cxs []int      // contexts in use, in order
	x   [ws7]int32 // x[ni..] stay 0
	core

	// history
	buf       []byte
	c0        uint32 // partial byte with a leading 1 (as cm's)
	bits      int
	c4, c8    uint32 // the last eight bytes
	word0     uint32 // hash of the current word (0 between words)
	word1     uint32 // hash of the previous word
	word2     uint32 // hash of the word before it
	lineStart int    // position after the last '\n'
	prevLine  int    // start of the line before (-1: none)
	ind       [256]uint16
	ind2      [1 << 12]uint16 // indirect on two bytes (cxInd2)

	// contexts
	tab  cm.Slots
	h    [nCx]uint32
	slot [nCx]int
	cp   [nCx]int
	st   [nCx]uint8
	csm  [nCx][256]uint32 // state maps, as cm's
}

// New7 returns an id 7 mixer for a block of n bytes.
func New7(n int) *Mixer7 { return newMixer7(final7, n) }

func newMixer7(o opts7, n int) *Mixer7 {
	m := &Mixer7{o: o}
	for i := range nCx {
		if o.ctx>>i&1 != 0 {
			m.cxs = append(m.cxs, i)
		}
	}
	m.ni = nIn + len(m.cxs)
	if m.ni > ws7 {
		panic("lmmix: too many id 7 contexts")
	}
	m.Reset(n)
	return m
}

// slotsLog7 returns the log2 of the context table's slots for a block of n
// bytes and k contexts.
func slotsLog7(n, k, shift int) int {
	lg := 10
	for 1<<lg < n*k>>shift && lg < 22 {
		lg++
	}
	return lg
}

// Reset puts the mixer back to its initial state, for a new block of n
// bytes.
func (m *Mixer7) Reset(n int) {
	clear(m.w[:])
	for s := 0; s < len(m.w); s += ws7 {
		m.w[s+inLM] = 1 << 15
		m.w[s+inCMP] = 1 << 15
	}
	m.core.reset()

	if cap(m.buf) < n {
		m.buf = make([]byte, 0, n)
	}
	m.buf = m.buf[:0]
	m.c0, m.bits, m.c4, m.c8, m.word0, m.word1, m.word2 = 1, 0, 0, 0, 0, 0, 0
	clear(m.ind2[:])
	m.lineStart, m.prevLine = 0, -1
	clear(m.ind[:])
	m.tab.Reset(slotsLog7(n, len(m.cxs), m.o.slotShift))
	for _, i := range m.cxs {
		cm.InitStateMap(&m.csm[i])
	}
	m.byteUpdate()
	m.nibbleUpdate()
}

// byteUpdate computes the contexts' hashes after a whole byte.
func (m *Mixer7) byteUpdate() {
	c4 := m.c4
	for _, i := range m.cxs {
		var h uint32
		switch i {
		case cxWord2:
			h = cm.Hash32(m.word0*0x2545F491+cm.Hash32(m.word1+0x1000193)) + 0x0B000000
		case cxCol:
			pos := len(m.buf)
			col := min(pos-m.lineStart, 255)
			above := uint32(0)
			if m.prevLine >= 0 && m.prevLine+col < m.lineStart {
				above = uint32(m.buf[m.prevLine+col]) + 256
			}
			h = (above<<8|uint32(col))*0x6F4F2A35 + 0x0D000000
		case cxSp23:
			h = (c4&0xFFFF00)*0x7A3F5E93 + 0x0F000000
		case cxSp13:
			h = (c4&0xFF00FF)*0x3C6EF372 + 0x11000000
		case cxInd:
			c1 := c4 & 0xFF
			h = (c1|uint32(m.ind[c1])<<8)*0x2F0B4C75 + 0x13000000
		case cxO8:
			h = cm.Hash32(c4*0x9E3779B1+0x15000000) + m.c8*0x6F4F2A35
		case cxAbove:
			pos := len(m.buf)
			col := pos - m.lineStart
			above := uint32(0)
			if m.prevLine >= 0 && m.prevLine+col < m.lineStart {
				above = uint32(m.buf[m.prevLine+col]) + 256
			}
			h = (above<<8|c4&0xFF)*0x7FEB352D + 0x17000000
		case cxSp24:
			h = (c4&0xFF00FF00)*0x846CA68B + 0x19000000
		case cxW12:
			h = cm.Hash32(m.word1*0x2F0B4C75+cm.Hash32(m.word2+0x1B000000)) + 0x1B000000
		case cxW02:
			h = cm.Hash32(m.word0*0x7A3F5E93+cm.Hash32(m.word2+0x1D000000)) + 0x1D000000
		case cxO12:
			n := len(m.buf)
			c12 := uint32(0)
			if n >= 12 {
				c12 = uint32(m.buf[n-12])<<24 | uint32(m.buf[n-11])<<16 | uint32(m.buf[n-10])<<8 | uint32(m.buf[n-9])
			}
			h = cm.Hash32(cm.Hash32(c4*0x9E3779B1+0x1F000000)+m.c8*0x6F4F2A35) + c12*0x3C6EF372
		case cxInd2:
			i := (c4 & 0xFFFF) * 0x9E3779B1 >> 20
			h = (c4&0xFFFF|uint32(m.ind2[i])<<16)*0x2545F491 + 0x21000000
		}
		m.h[i] = h
	}
}

// nibbleUpdate looks up the contexts' slots at bits 0 and 4 of a byte.
func (m *Mixer7) nibbleUpdate() {
	k := m.c0 * 0x1D8E4E27
	for _, i := range m.cxs {
		m.slot[i] = m.tab.Find(m.h[i] + k)
	}
}

// P returns P(next bit = 1) as a 16-bit probability in [16, 65520], given
// the LM's 16-bit probability pl of a 1 and cm's model c, whose next
// prediction is for the same bit.
func (m *Mixer7) P(pl int32, c *cm.Model) int {
	stL, c0, lq := m.inputs(pl, c, (*[nIn]int32)(m.x[:nIn]))
	x := &m.x

	// the contexts' bit histories
	var node uint32
	if m.bits < 4 {
		node = m.c0
	} else {
		node = 1<<uint(m.bits-4) | m.c0&(1<<uint(m.bits-4)-1)
	}
	for j, i := range m.cxs {
		cp := m.slot[i] + int(node)
		m.cp[i] = cp
		st := m.tab.State(cp)
		m.st[i] = st
		x[nIn+j] = cm.StateMapP(m.csm[i][st])
	}

	m.rows(c0, ws7)
	for k := range nMix {
		d := dot24(x, (*[ws7]int32)(m.w[m.sel[k]:]))
		m.dot[k] = clampSt(d >> 16)
		m.pm[k] = squash(m.dot[k])
	}

	return m.output(stL, c0, lq)
}

// Update trains the mixer on the coded bit. Call it after P and before cm's
// Update.
func (m *Mixer7) Update(bit int) {
	y := int32(bit & 1)
	lr := m.rate()
	for k := range nMix {
		if e, ok := m.err1(k, y, lr); ok {
			train24(&m.x, (*[ws7]int32)(m.w[m.sel[k]:]), e)
		}
	}
	m.update(y)

	// the contexts
	for _, i := range m.cxs {
		cm.StateMapUpdate(&m.csm[i][m.st[i]], int(y))
		m.tab.Update(m.cp[i], int(y))
	}
	m.c0 = m.c0<<1 | uint32(y)
	m.bits++
	if m.bits == 8 {
		c := byte(m.c0)
		m.byteDone(c)
		m.c0, m.bits = 1, 0
		m.byteUpdate()
		m.nibbleUpdate()
	} else if m.bits == 4 {
		m.nibbleUpdate()
	}
}

// byteDone updates the history with byte c.
func (m *Mixer7) byteDone(c byte) {
	c1 := m.c4 & 0xFF
	m.ind[c1] = m.ind[c1]<<8 | uint16(c)
	if m.o.ctx>>cxInd2&1 != 0 {
		i2 := (m.c4 & 0xFFFF) * 0x9E3779B1 >> 20
		m.ind2[i2] = m.ind2[i2]<<8 | uint16(c)
	}
	m.buf = append(m.buf, c)
	m.c8 = m.c8<<8 | m.c4>>24
	m.c4 = m.c4<<8 | uint32(c)
	lc := c
	if lc >= 'A' && lc <= 'Z' {
		lc += 'a' - 'A'
	}
	if lc >= 'a' && lc <= 'z' || lc >= 0x80 {
		m.word0 = (m.word0 + uint32(lc) + 1) * 0x3D4D51CB
	} else if m.word0 != 0 {
		m.word2 = m.word1
		m.word1 = m.word0
		m.word0 = 0
	}
	if c == '\n' {
		m.prevLine = m.lineStart
		m.lineStart = len(m.buf)
	}
}

// dot24 returns the dot product of the inputs and a weight set (exact in
// int64, so the order of the sums does not matter).
func dot24(x, w *[ws7]int32) int64 {
	a := int64(x[0])*int64(w[0]) + int64(x[4])*int64(w[4]) + int64(x[8])*int64(w[8]) + int64(x[12])*int64(w[12]) + int64(x[16])*int64(w[16]) + int64(x[20])*int64(w[20])
	b := int64(x[1])*int64(w[1]) + int64(x[5])*int64(w[5]) + int64(x[9])*int64(w[9]) + int64(x[13])*int64(w[13]) + int64(x[17])*int64(w[17]) + int64(x[21])*int64(w[21])
	c := int64(x[2])*int64(w[2]) + int64(x[6])*int64(w[6]) + int64(x[10])*int64(w[10]) + int64(x[14])*int64(w[14]) + int64(x[18])*int64(w[18]) + int64(x[22])*int64(w[22])
	d := int64(x[3])*int64(w[3]) + int64(x[7])*int64(w[7]) + int64(x[11])*int64(w[11]) + int64(x[15])*int64(w[15]) + int64(x[19])*int64(w[19]) + int64(x[23])*int64(w[23])
	return (a + b) + (c + d)
}

// train24 moves a weight set along the inputs by e (error times rate);
// weights of inputs that stay 0 do not move.
func train24(x, w *[ws7]int32, e int64) {
	w[0] += int32((int64(x[0])*e + 1<<13) >> 14)
	w[1] += int32((int64(x[1])*e + 1<<13) >> 14)
	w[2] += int32((int64(x[2])*e + 1<<13) >> 14)
	w[3] += int32((int64(x[3])*e + 1<<13) >> 14)
	w[4] += int32((int64(x[4])*e + 1<<13) >> 14)
	w[5] += int32((int64(x[5])*e + 1<<13) >> 14)
	w[6] += int32((int64(x[6])*e + 1<<13) >> 14)
	w[7] += int32((int64(x[7])*e + 1<<13) >> 14)
	w[8] += int32((int64(x[8])*e + 1<<13) >> 14)
	w[9] += int32((int64(x[9])*e + 1<<13) >> 14)
	w[10] += int32((int64(x[10])*e + 1<<13) >> 14)
	w[11] += int32((int64(x[11])*e + 1<<13) >> 14)
	w[12] += int32((int64(x[12])*e + 1<<13) >> 14)
	w[13] += int32((int64(x[13])*e + 1<<13) >> 14)
	w[14] += int32((int64(x[14])*e + 1<<13) >> 14)
	w[15] += int32((int64(x[15])*e + 1<<13) >> 14)
	w[16] += int32((int64(x[16])*e + 1<<13) >> 14)
	w[17] += int32((int64(x[17])*e + 1<<13) >> 14)
	w[18] += int32((int64(x[18])*e + 1<<13) >> 14)
	w[19] += int32((int64(x[19])*e + 1<<13) >> 14)
	w[20] += int32((int64(x[20])*e + 1<<13) >> 14)
	w[21] += int32((int64(x[21])*e + 1<<13) >> 14)
	w[22] += int32((int64(x[22])*e + 1<<13) >> 14)
	w[23] += int32((int64(x[23])*e + 1<<13) >> 14)
}
