// Package lmmix mixes the neural LM's bit probabilities with the
// context-mixing model's inputs (codec lm+cm, id 6). See SPEC.md.
package lmmix

import (
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/mix"
)

// nIn is the number of inputs of each first-layer mixer: the LM, cm's nine
// inputs (bias included), cm's final probability and its scaled mixer output.
const nIn = 1 + cm.NInputs + 2 + 3

const nMix = 3 // first-layer mixers

type config struct {
	confT     [5]int32 // |stretch(LM)| thresholds of the confidence buckets
	lr0, lr1  int64    // learning rates: before and after lrSwitch bits
	lrSwitch  int
	lr2       int64 // layer 2 rate
	skip      int64 // errors up to this are not trained on (first layer)
	apmRate   uint
	finalMode int
	initCM    int32 // initial weight of cm's final input (16.16)
	initLM    int32
	noLayer2  bool
	selC      int  // 0: partial byte, 1: previous byte, 2: previous byte x bits/2
	lmLin     bool // the LM also as a linear input
	lmAPM     bool // the LM calibrated by an APM per partial byte as an input
	lsm       int  // LM-conditioned state maps for this many hashed orders (0..2)
	lsmRate   uint
}

func stdConfig() config {
	return config{
		confT:    [5]int32{128, 384, 768, 1280, 1792},
		lrSwitch: 1 << 15,
		lr2:      4,
		skip:     0,
		apmRate:  7,
		initCM:   32768,
		initLM:   32768,
		lr0:      24,
		lr1:      12,
		selC:     1,
		lsmRate:  6,
	}
}

// Mixer is the per-block state of the lm+cm mixer.
type Mixer struct {
	cfg  config
	v    cm.View
	x    [nIn]int32
	w    []int32 // first layer: sets x nIn, mixer m's sets from off[m]
	sel  [nMix]int
	dot  [nMix]int32 // stretched outputs
	pm   [nMix]int32 // 12-bit outputs
	w2   []int32     // second layer: sets2 x nMix
	sel2 int
	d2   int32
	p2   int32 // 12-bit
	a1   []uint16
	a2   []uint16
	al   []uint16
	il   int
	sm   []uint16
	is   [2]int
	i1   int
	i2   int
	n    int
	pr   int
}

const (
	setsA = 6 * 8   // LM confidence x bit position
	setsB = 8 * 4   // match state x LM confidence
	setsC = 256 * 4 // partial byte
	sets2 = 6 * 8
	apm1N = 256
	apm2N = 16 * 8
)

var offs = [nMix]int{0, setsA * nIn, (setsA + setsB) * nIn}

// New returns a mixer in its initial state.
func New() *Mixer { return newCfg(stdConfig()) }

func newCfg(c config) *Mixer {
	m := &Mixer{cfg: c}
	m.w = make([]int32, (setsA+setsB+setsC)*nIn)
	m.w2 = make([]int32, sets2*nMix)
	m.a1 = make([]uint16, apm1N*33)
	m.a2 = make([]uint16, apm2N*33)
	m.al = make([]uint16, 256*33)
	m.sm = make([]uint16, 2*4096)
	m.Reset()
	return m
}

// Reset puts the mixer back to its initial state, for a new block.
func (m *Mixer) Reset() {
	for s := 0; s < len(m.w); s += nIn {
		clear(m.w[s : s+nIn])
		m.w[s+0] = m.cfg.initLM
		m.w[s+10] = m.cfg.initCM
	}
	for s := 0; s < len(m.w2); s += nMix {
		for i := range nMix {
			m.w2[s+i] = 65536 / nMix
		}
	}
	for i := range m.sm {
		m.sm[i] = 32768
	}
	for _, a := range [][]uint16{m.a1, m.a2, m.al} {
		for c := 0; c < len(a); c += 33 {
			for j := range 33 {
				a[c+j] = uint16(mix.Squash(int32((j-16)*128)) * 16)
			}
		}
	}
	m.n = 0
}

func (m *Mixer) conf(st int32) int {
	if st < 0 {
		st = -st
	}
	c := 0
	for _, t := range m.cfg.confT {
		if st >= t {
			c++
		}
	}
	return c
}

func clampSt(d int64) int32 { return int32(max(min(d, 2047), -2047)) }

// P returns P(next bit = 1) as a 16-bit probability given the LM's 16-bit
// probability pl and cm's model (whose P is for the same bit).
func (m *Mixer) P(pl int32, c *cm.Model) int {
	c.View(&m.v)
	v := &m.v
	stL := mix.Stretch(pl >> 4)
	m.x[0] = stL
	copy(m.x[1:], v.X[:])
	m.x[10] = mix.Stretch(v.P)
	m.x[11] = v.Final
	cf := m.conf(stL)
	ms := 0
	if v.MatchLen > 0 {
		ms = 1
		if v.MatchLen >= 16 {
			ms = 2
		}
		if v.MatchLen >= 32 {
			ms = 3
		}
		agree := (stL >= 0) == (v.MatchBit == 1)
		if !agree {
			ms += 3
		}
	}
	cf4 := min(cf, 3)
	m.sel[0] = offs[0] + (cf*8+v.Bits)*nIn
	m.sel[1] = offs[1] + (ms*4+cf4)*nIn
	switch m.cfg.selC {
	case 0:
		m.sel[2] = offs[2] + int(v.C0&0xFF)*nIn
	case 1:
		m.sel[2] = offs[2] + int(v.C1)*nIn
	case 2:
		m.sel[2] = offs[2] + (int(v.C1)*4+v.Bits/2)*nIn
	}
	if m.cfg.lmLin {
		m.x[12] = (pl >> 4) - 2048
	}
	lq := int((stL + 2048) >> 8) // 0..15
	if m.cfg.lmAPM {
		s := stL + 2048
		w := s & 127
		lo := int(s >> 7)
		i := int(v.C0&0xFF) * 33
		m.il = i + lo + int(w>>6)
		q := (int32(m.al[i+lo])*(128-w) + int32(m.al[i+lo+1])*w) >> 7
		m.x[12] = mix.Stretch(q >> 4)
	}
	for j := range m.cfg.lsm {
		m.is[j] = j*4096 + lq*256 + int(v.States[j])
		m.x[13+j] = mix.Stretch(int32(m.sm[m.is[j]]) >> 4)
	}
	for k := range nMix {
		w := m.w[m.sel[k] : m.sel[k]+nIn]
		var d int64
		for i, x := range m.x {
			d += int64(x) * int64(w[i])
		}
		m.dot[k] = clampSt(d >> 16)
		m.pm[k] = mix.Squash(m.dot[k])
	}
	var p int32
	if m.cfg.noLayer2 {
		p = mix.Squash(m.dot[0])
		m.d2 = m.dot[0]
	} else {
		m.sel2 = (cf*8 + v.Bits) * nMix
		w2 := m.w2[m.sel2 : m.sel2+nMix]
		var d int64
		for i := range nMix {
			d += int64(m.dot[i]) * int64(w2[i])
		}
		m.d2 = clampSt(d >> 16)
		p = mix.Squash(m.d2)
	}
	m.p2 = p
	// APMs
	s := m.d2 + 2048
	w := s & 127
	lo := int(s >> 7)
	i1 := int(v.C0&0xFF) * 33
	m.i1 = i1 + lo + int(w>>6)
	q1 := (int32(m.a1[i1+lo])*(128-w) + int32(m.a1[i1+lo+1])*w) >> 7
	i2 := (lq*8 + v.Bits) * 33
	m.i2 = i2 + lo + int(w>>6)
	q2 := (int32(m.a2[i2+lo])*(128-w) + int32(m.a2[i2+lo+1])*w) >> 7
	var out int32
	switch m.cfg.finalMode {
	case 0:
		out = (p*16*2 + q1 + q2 + 2) >> 2
	case 1:
		out = p * 16
	case 2:
		out = (p*16 + q1 + 1) >> 1
	case 3:
		out = (p*16 + q2 + 1) >> 1
	}
	m.pr = int(min(max(out, 16), 65520))
	return m.pr
}

// Update trains the mixer on the coded bit (call before cm's Update).
func (m *Mixer) Update(bit int) {
	y := int64(bit & 1)
	lr := m.cfg.lr1
	if m.n < m.cfg.lrSwitch {
		lr = m.cfg.lr0
	}
	m.n++
	for k := range nMix {
		err := y<<12 - int64(m.pm[k])
		if err <= m.cfg.skip && err >= -m.cfg.skip {
			continue
		}
		e := err * lr
		w := m.w[m.sel[k] : m.sel[k]+nIn]
		for i, x := range m.x {
			w[i] += int32((int64(x)*e + 1<<13) >> 14)
		}
	}
	if !m.cfg.noLayer2 {
		e := (y<<12 - int64(m.p2)) * m.cfg.lr2
		w2 := m.w2[m.sel2 : m.sel2+nMix]
		for i := range nMix {
			w2[i] += int32((int64(m.dot[i])*e + 1<<13) >> 14)
		}
	}
	r := m.cfg.apmRate
	g := int32(y<<16) + int32(y<<r) - int32(y) - int32(y)
	v := int32(m.a1[m.i1])
	m.a1[m.i1] = uint16(v + (g-v)>>r)
	v = int32(m.a2[m.i2])
	m.a2[m.i2] = uint16(v + (g-v)>>r)
	if m.cfg.lmAPM {
		v = int32(m.al[m.il])
		m.al[m.il] = uint16(v + (g-v)>>r)
	}
	r = m.cfg.lsmRate
	g = int32(y<<16) + int32(y<<r) - int32(y) - int32(y)
	for j := range m.cfg.lsm {
		v = int32(m.sm[m.is[j]])
		m.sm[m.is[j]] = uint16(v + (g-v)>>r)
	}
}
