package lmmix

// tuneMixer is the configurable mixer the design of tuneMixer was chosen with
// (tune_test.go); with finalConfig it computes exactly what tuneMixer does.

import (
	"math/bits"

	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/mix"
)

// tIn is the number of inputs of each first-layer mixer: the LM, cm's nine
// inputs (bias included), cm's final probability and its scaled mixer output.
const tIn = 1 + cm.NInputs + 2 + 3

const tMix = 4 // first-layer mixers

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
	drop      uint32 // inputs (bit i: x[i]) set to 0
	offMix    uint32 // first-layer mixers left out (bit k)
	dropB     uint32 // inputs mixer B does not see
	lsmOrd    [2]int
	sel2      int
	selCx     int
	advShift  uint
	advT      int32
	selA      int
	lsmM      bool      // LM x match state map in slot 11
	gsel      [tMix]int // if gsel[0] != 0: selector of each mixer (1+kind)
	full      uint32    // mixers that see all inputs (else the small set) when gsel is used
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

// tuneMixer is the per-block state of the lm+cm mixer.
type tuneMixer struct {
	cfg  config
	v    cm.View
	x    [tIn]int32
	w    []int32 // first layer: sets x tIn, mixer m's sets from off[m]
	sel  [tMix]int
	dot  [tMix]int32 // stretched outputs
	pm   [tMix]int32 // 12-bit outputs
	w2   []int32     // second layer: tsets2 x tMix
	sel2 int
	d2   int32
	p2   int32 // 12-bit
	a1   []uint16
	a2   []uint16
	al   []uint16
	il   int
	sm   []uint16
	is   [2]int
	pL   int32
	pC   int32
	eL   int32
	miss int
	a3   [256 * 33]uint16
	i3   int
	smM  [16 * 32]uint16
	iM   int
	eC   int32
	i1   int
	i2   int
	n    int
	pr   int
}

const (
	tsetsA = 6 * 8       // LM confidence x bit position
	tsetsB = 8 * 4       // match state x LM confidence
	tsetsC = 256 * 4 * 2 // partial byte
	tsets2 = 6 * 256 * 4
	tapm1N = 256
	tapm2N = 16 * 8
)

var toffs = [3]int{0, tsetsA * tIn, (tsetsA + tsetsB) * tIn}

func newCfg(c config) *tuneMixer {
	m := &tuneMixer{cfg: c}
	m.w = make([]int32, tMix*2048*tIn)
	m.w2 = make([]int32, tsets2*tMix)
	m.a1 = make([]uint16, tapm1N*33)
	m.a2 = make([]uint16, tapm2N*33)
	m.al = make([]uint16, 256*33)
	m.sm = make([]uint16, 2*4096)
	m.Reset()
	return m
}

// Reset puts the mixer back to its initial state, for a new block.
func (m *tuneMixer) Reset() {
	for s := 0; s < len(m.w); s += tIn {
		clear(m.w[s : s+tIn])
		m.w[s+0] = m.cfg.initLM
		m.w[s+10] = m.cfg.initCM
	}
	for s := 0; s < len(m.w2); s += tMix {
		on := int32(tMix - bits.OnesCount32(m.cfg.offMix))
		for i := range tMix {
			m.w2[s+i] = 65536 / on
		}
	}
	for i := range m.sm {
		m.sm[i] = 32768
	}
	for i := range m.smM {
		m.smM[i] = 32768
	}
	for _, a := range [][]uint16{m.a1, m.a2, m.al, m.a3[:]} {
		for c := 0; c < len(a); c += 33 {
			for j := range 33 {
				a[c+j] = uint16(mix.Squash(int32((j-16)*128)) * 16)
			}
		}
	}
	m.n = 0
	m.eL, m.eC = 0, 0
}

func (m *tuneMixer) adv() int {
	d := m.eL - m.eC
	t := m.cfg.advT
	switch {
	case d < -t:
		return 0
	case d < 0:
		return 1
	case d < t:
		return 2
	}
	return 3
}

func (m *tuneMixer) conf(st int32) int {
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

// P returns P(next bit = 1) as a 16-bit probability given the LM's 16-bit
// probability pl and cm's model (whose P is for the same bit).
func (m *tuneMixer) P(pl int32, c *cm.Model) int {
	c.View(&m.v)
	v := &m.v
	stL := mix.Stretch(pl >> 4)
	m.x[0] = stL
	copy(m.x[1:], v.X[:])
	m.x[10] = mix.Stretch(v.P)
	m.x[11] = v.Final
	for i := range tIn {
		if m.cfg.drop>>i&1 != 0 {
			m.x[i] = 0
		}
	}
	cf := m.conf(stL)
	if v.Bits == 0 {
		m.miss = 0
	}
	if m.cfg.lsmM {
		mb := 0
		if v.MatchLen > 0 {
			mb = min(v.MatchLen, 15)*2 + v.MatchBit
		}
		m.iM = int((stL+2048)>>8)*32 + mb
		m.x[11] = mix.Stretch(int32(m.smM[m.iM]) >> 4)
	}
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
	m.sel[0] = toffs[0] + (cf*8+v.Bits)*tIn
	if m.cfg.selA == 1 {
		ma := 0
		if v.MatchLen > 0 {
			ma = 1
			if (stL >= 0) != (v.MatchBit == 1) {
				ma = 2
			}
		}
		m.sel[0] = toffs[2] + 2048*tIn + ((ma*6+cf)*8+v.Bits)*tIn
	}
	m.sel[1] = toffs[1] + (ms*4+cf4)*tIn
	switch m.cfg.selC {
	case 0:
		m.sel[2] = toffs[2] + int(v.C0&0xFF)*tIn
	case 1:
		m.sel[2] = toffs[2] + int(v.C1)*tIn
	case 3:
		m.sel[2] = toffs[2] + (int(v.C1)*4+min(cf, 3))*tIn
	case 5:
		m.sel[2] = toffs[2] + int((v.C2*0x2F0B+v.C1*0x9E37)>>3&1023)*tIn
	case 6:
		m.sel[2] = toffs[2] + int(v.C1)*tIn
		m.sel[0] = toffs[2] + (256+int(v.C2))*tIn
	case 4:
		mm := 0
		if v.MatchLen > 0 {
			mm = 1 + v.MatchBit
		}
		m.sel[2] = toffs[2] + (int(v.C1)*3+mm)*tIn
	case 2:
		m.sel[2] = toffs[2] + (int(v.C1)*4+v.Bits/2)*tIn
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
		m.is[j] = j*4096 + lq*256 + int(v.States[m.cfg.lsmOrd[j]])
		m.x[13+j] = mix.Stretch(int32(m.sm[m.is[j]]) >> 4)
	}
	if m.cfg.gsel[0] != 0 {
		for k := range tMix {
			var c int
			switch m.cfg.gsel[k] - 1 {
			case 0:
				c = cf*8 + v.Bits
			case 1:
				c = int(v.C1)
			case 2:
				c = int(v.C2)
			case 3:
				c = int(v.C0 & 0xFF)
			case 4:
				c = ms*4 + cf4
			case 5:
				c = int(v.C1)*2 + v.Bits>>2
			case 6:
				c = int(v.C2)*2 + v.Bits>>2
			case 7:
				c = int(v.C1&0xF0) | int(v.C0&0xF)<<0
			case 8:
				c = int((v.C2*0x2F0B + v.C1*0x9E37) >> 3 & 1023)
			case 9:
				c = int(v.C2)*8 + v.Bits
			case 10:
				c = int(v.C1)*4 + min(cf, 3)
			case 11:
				c = 0
			case 12:
				c = v.Bits
			}
			m.sel[k] = (k*2048 + c) * tIn
		}
	}
	for k := range tMix {
		if m.cfg.offMix>>k&1 != 0 {
			m.dot[k], m.pm[k] = 0, 2048
			continue
		}
		w := m.w[m.sel[k] : m.sel[k]+tIn]
		var d int64
		for i, x := range m.x {
			if m.small(k) && m.cfg.dropB>>i&1 != 0 {
				continue
			}
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
		switch m.cfg.sel2 {
		case 0:
			m.sel2 = (cf*8 + v.Bits) * tMix
		case 1:
			m.sel2 = int(v.C0&0xFF) * tMix
		case 2:
			m.sel2 = (cf*256 + int(v.C0&0xFF)) * tMix
		case 3:
			m.sel2 = (m.adv()*256 + int(v.C0&0xFF)) * tMix
		case 4:
			m.sel2 = ((m.adv()*6+cf)*8 + v.Bits) * tMix
		case 5:
			m.sel2 = ((m.adv()*6+cf)*256 + int(v.C0&0xFF)) * tMix
		case 6:
			m.sel2 = (((min(m.miss, 2)*4+m.adv())*6+cf)*8 + v.Bits) * tMix
		}
		w2 := m.w2[m.sel2 : m.sel2+tMix]
		var d int64
		for i := range tMix {
			d += int64(m.dot[i]) * int64(w2[i])
		}
		m.d2 = clampSt(d >> 16)
		p = mix.Squash(m.d2)
	}
	m.p2 = p
	m.pL, m.pC = pl>>4, v.P
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
	case 4:
		out = (p*16 + q1 + q2*2 + 2) >> 2
	case 5:
		out = (p*16*2 + q1*3 + q2*3 + 4) >> 3
	case 6:
		out = (p*16 + q1*2 + q2 + 2) >> 2
	case 7, 8:
		i3 := int(v.C1) * 33
		m.i3 = i3 + lo + int(w>>6)
		q3 := (int32(m.a3[i3+lo])*(128-w) + int32(m.a3[i3+lo+1])*w) >> 7
		if m.cfg.finalMode == 7 {
			out = (p*16*2 + q1 + q2 + q3*2 + 3) / 6
		} else {
			out = (p*16 + q1 + q2 + q3 + 2) >> 2
		}
	}
	m.pr = int(min(max(out, 16), 65520))
	return m.pr
}

// Update trains the mixer on the coded bit (call before cm's Update).
func (m *tuneMixer) Update(bit int) {
	y := int64(bit & 1)
	lr := m.cfg.lr1
	if m.n < m.cfg.lrSwitch {
		lr = m.cfg.lr0
	}
	m.n++
	for k := range tMix {
		if m.cfg.offMix>>k&1 != 0 {
			continue
		}
		err := y<<12 - int64(m.pm[k])
		if err <= m.cfg.skip && err >= -m.cfg.skip {
			continue
		}
		e := err * lr
		w := m.w[m.sel[k] : m.sel[k]+tIn]
		for i, x := range m.x {
			if m.small(k) && m.cfg.dropB>>i&1 != 0 {
				continue
			}
			w[i] += int32((int64(x)*e + 1<<13) >> 14)
		}
	}
	if !m.cfg.noLayer2 {
		e := (y<<12 - int64(m.p2)) * m.cfg.lr2
		w2 := m.w2[m.sel2 : m.sel2+tMix]
		for i := range tMix {
			w2[i] += int32((int64(m.dot[i])*e + 1<<13) >> 14)
		}
	}
	if (y == 1) != (m.pL >= 2048) {
		m.miss++
	}
	if m.cfg.lsmM {
		v := int32(m.smM[m.iM])
		m.smM[m.iM] = uint16(v + (g0(y, 6)-v)>>6)
	}
	if m.cfg.advShift > 0 {
		el := int32(y<<12) - m.pL
		ec := int32(y<<12) - m.pC
		m.eL += (abs(el)<<4 - m.eL) >> m.cfg.advShift
		m.eC += (abs(ec)<<4 - m.eC) >> m.cfg.advShift
	}
	r := m.cfg.apmRate
	g := int32(y<<16) + int32(y<<r) - int32(y) - int32(y)
	v := int32(m.a1[m.i1])
	m.a1[m.i1] = uint16(v + (g-v)>>r)
	v = int32(m.a2[m.i2])
	m.a2[m.i2] = uint16(v + (g-v)>>r)
	if m.cfg.finalMode >= 7 {
		v = int32(m.a3[m.i3])
		m.a3[m.i3] = uint16(v + (g-v)>>r)
	}
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

func (m *tuneMixer) small(k int) bool {
	if m.cfg.gsel[0] != 0 {
		return m.cfg.full>>k&1 == 0
	}
	return k == 1
}

func g0(y int64, r uint) int32 {
	return int32(y<<16) + int32(y<<r) - int32(y) - int32(y)
}
