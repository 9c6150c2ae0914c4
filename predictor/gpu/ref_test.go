package gpu_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/lm"
)

// specModel is a straightforward transcription of predictor/lm/SPEC.md,
// "Architecture 2: lstm1" and "Architecture 3: lstm2" (with predictor/lm's
// match features): the oracle the library is checked against where the
// tuned Go reference (predictor/lm) does not load the model. It is written
// for clarity, not speed.
type specModel struct {
	NL, H, LF, E int
	sig, tanh    []int32
	t0           []int32 // 257 x 4H
	w            [][]int8
	b, m, s      [][]int32
	wo           []int8
	bo, mo, so   []int32
	exp          []int32
	t1           []int32 // lstm2: 2049 x 4H match-feature table; nil for lstm1
}

// genModel returns a random valid lstm1 model file and its parameters. hot
// scales the gate and logit products up so that the clamps of the spec are
// exercised.
func genModel(seed uint64, nl, h int, hot bool) ([]byte, *specModel) {
	return genModelArch(seed, nl, h, hot, 2)
}

// genModel2 returns a random valid lstm2 model file and its parameters: as
// genModel's lstm1 model of the same seed plus a match-feature table T1 with
// some entries at the ends of the int16 range.
func genModel2(seed uint64, nl, h int, hot bool) ([]byte, *specModel) {
	return genModelArch(seed, nl, h, hot, 3)
}

func genModelArch(seed uint64, nl, h int, hot bool, arch int32) ([]byte, *specModel) {
	rng := rand.New(rand.NewPCG(seed, 77))
	m := &specModel{NL: nl, H: h, LF: 8, E: 4096}
	m.sig = make([]int32, 4096)
	m.tanh = make([]int32, 4096)
	for k := range 4096 {
		x := float64(k-2048) / 256
		m.sig[k] = int32(math.Round(4096 / (1 + math.Exp(-x))))
		m.tanh[k] = int32(math.Round(4096 * math.Tanh(x)))
	}
	span := func(n int) int32 { return int32(rng.IntN(2*n+1) - n) }
	m.t0 = make([]int32, 257*4*h)
	for i := range m.t0 {
		m.t0[i] = span(1024)
	}
	w8 := func(n int) []int8 {
		w := make([]int8, n)
		for i := range w {
			w[i] = int8(span(127))
		}
		return w
	}
	// requantisation so that a typical sum lands near target
	mulShift := func(k int, target float64) (int32, int32) {
		typical := math.Sqrt(float64(k)) * 73 * 40
		sh := 30 + int(math.Ceil(math.Log2(typical/target)))
		if hot {
			sh -= 4
		}
		sh = max(1, min(62, sh))
		return int32(1<<30 + rng.IntN(1<<30)), int32(sh)
	}
	for l := range nl {
		k := h
		if l > 0 {
			k = 2 * h
		}
		m.w = append(m.w, w8(4*h*k))
		b, mm, ss := make([]int32, 4*h), make([]int32, 4*h), make([]int32, 4*h)
		for j := range b {
			if l > 0 {
				b[j] = span(512)
			}
			mm[j], ss[j] = mulShift(k, 600)
		}
		m.b, m.m, m.s = append(m.b, b), append(m.m, mm), append(m.s, ss)
	}
	m.wo = w8(256 * h)
	m.bo, m.mo, m.so = make([]int32, 256), make([]int32, 256), make([]int32, 256)
	for v := range 256 {
		m.bo[v] = span(1 << m.LF)
		m.mo[v], m.so[v] = mulShift(h, float64(int(3)<<m.LF))
	}
	m.exp = make([]int32, m.E)
	for d := range m.E {
		m.exp[d] = int32(math.Round((1 << 24) * math.Exp(-float64(d)/float64(int(1)<<m.LF))))
	}
	if arch == 3 {
		m.t1 = make([]int32, lm.NumMatchFeatures*4*h)
		for i := range m.t1 {
			switch r := rng.IntN(200); {
			case r == 0:
				m.t1[i] = -32768
			case r == 1:
				m.t1[i] = 32767
			default:
				m.t1[i] = span(1500)
			}
		}
	}
	var buf bytes.Buffer
	buf.WriteString("LMFSLM\x00\x01")
	put := func(v ...int32) {
		for _, x := range v {
			_ = binary.Write(&buf, binary.LittleEndian, x)
		}
	}
	put8 := func(v []int8) {
		for _, x := range v {
			buf.WriteByte(byte(x))
		}
	}
	put(1, arch, int32(nl), int32(h), int32(m.LF), int32(m.E), 16)
	put(m.sig...)
	put(m.tanh...)
	put(m.t0...)
	for _, v := range m.t1 {
		_ = binary.Write(&buf, binary.LittleEndian, int16(v))
	}
	for l := range nl {
		put8(m.w[l])
		put(m.b[l]...)
		put(m.m[l]...)
		put(m.s[l]...)
	}
	put8(m.wo)
	put(m.bo...)
	put(m.mo...)
	put(m.so...)
	put(m.exp...)
	buf.WriteString("LMFSEND\x00")
	return buf.Bytes(), m
}

func rq(acc int32, mul, sh int32) int64 {
	return (int64(acc)*int64(mul) + int64(1)<<(sh-1)) >> sh
}

func clamp(x, lo, hi int64) int64 { return min(max(x, lo), hi) }

type specState struct {
	h [][]int32
	c [][]int32
}

func (m *specModel) newState() *specState {
	s := &specState{}
	for range m.NL {
		s.h = append(s.h, make([]int32, m.H))
		s.c = append(s.c, make([]int32, m.H))
	}
	m.step(s, 256, 0)
	return s
}

// step is the spec's step(x) (lstm1) or step(x, f) (lstm2).
func (m *specModel) step(s *specState, x int, f uint16) {
	H := m.H
	for l := range m.NL {
		in := s.h[0]
		if l > 0 {
			in = append(append([]int32(nil), s.h[l-1]...), s.h[l]...)
		}
		z := make([]int32, 4*H)
		for j := range 4 * H {
			var acc int32
			for k, v := range in {
				acc += int32(m.w[l][j*len(in)+k]) * v
			}
			v := rq(acc, m.m[l][j], m.s[l][j]) + int64(m.b[l][j])
			if l == 0 {
				v += int64(m.t0[x*4*H+j])
				if m.t1 != nil {
					v += int64(m.t1[int(f)*4*H+j])
				}
			}
			z[j] = int32(clamp(v, -2048, 2047))
		}
		for u := range H {
			ig, fg := m.sig[z[u]+2048], m.sig[z[H+u]+2048]
			gg, og := m.tanh[z[2*H+u]+2048], m.sig[z[3*H+u]+2048]
			c := int32(clamp(int64((fg*s.c[l][u]+ig*gg+2048)>>12), -1<<17, 1<<17))
			tc := m.tanh[clamp(int64(c>>4), -2048, 2047)+2048]
			s.c[l][u] = c
			s.h[l][u] = int32(clamp(int64((og*tc+1<<16)>>17), -127, 127))
		}
	}
}

func (m *specModel) dist(s *specState, d *predictor.Dist) {
	top := s.h[m.NL-1]
	var L [256]int64
	for v := range 256 {
		var acc int32
		for k, x := range top {
			acc += int32(m.wo[v*m.H+k]) * x
		}
		L[v] = clamp(rq(acc, m.mo[v], m.so[v])+int64(m.bo[v]), -1<<24, 1<<24)
	}
	lmax, vmax := L[0], 0
	for v := 1; v < 256; v++ {
		if L[v] > lmax {
			lmax, vmax = L[v], v
		}
	}
	var e [256]uint64
	var sum uint64
	for v := range 256 {
		e[v] = uint64(m.exp[min(lmax-L[v], int64(m.E-1))])
		sum += e[v]
	}
	var fs uint32
	for v := range 256 {
		d[v] = 1 + uint32(e[v]*(1<<16-256)/sum)
		fs += d[v]
	}
	d[vmax] += 1<<16 - fs
}

// Score implements predictor.ByteModel.
func (m *specModel) Score(ctx context.Context, blocks [][]byte, emit func(b, pos int, d *predictor.Dist) error) error {
	var d predictor.Dist
	for b, blk := range blocks {
		s := m.newState()
		var feats []uint16
		if m.t1 != nil {
			feats = lm.MatchFeatures(nil, blk)
		}
		for pos, x := range blk {
			if err := ctx.Err(); err != nil {
				return err
			}
			m.dist(s, &d)
			if err := emit(b, pos, &d); err != nil {
				return err
			}
			var f uint16
			if feats != nil {
				f = feats[pos+1]
			}
			m.step(s, int(x), f)
		}
	}
	return nil
}

// Streams implements predictor.ByteModel.
func (m *specModel) Streams(_ context.Context, n int) (predictor.ByteStreams, error) {
	st := &specStreams{m: m}
	for range n {
		st.s = append(st.s, m.newState())
		if m.t1 != nil {
			st.match = append(st.match, lm.NewMatcher())
		}
	}
	return st, nil
}

type specStreams struct {
	m     *specModel
	s     []*specState
	match []*lm.Matcher // lstm2
}

func (s *specStreams) Predict(_ context.Context, ids []int, dst []predictor.Dist) error {
	for i, id := range ids {
		s.m.dist(s.s[id], &dst[i])
	}
	return nil
}

func (s *specStreams) Push(ids []int, syms []byte) error {
	if len(ids) != len(syms) {
		return fmt.Errorf("%d ids, %d syms", len(ids), len(syms))
	}
	for i, id := range ids {
		var f uint16
		if s.match != nil {
			f = s.match[id].Push(syms[i])
		}
		s.m.step(s.s[id], int(syms[i]), f)
	}
	return nil
}

func (s *specStreams) Close() error { return nil }

// symbolPath returns the 8 bit-tree probabilities along sym for table d,
// as coder/arith.go's EncodeSymbol computes them.
func symbolPath(d *predictor.Dist, sym byte) [8]uint16 {
	var cum [257]uint64
	for i, v := range d {
		cum[i+1] = cum[i] + uint64(v)
	}
	var out [8]uint16
	lo, hi := 0, 256
	for k := range 8 {
		mid := (lo + hi) / 2
		out[k] = uint16((cum[hi] - cum[mid]) << 16 / (cum[hi] - cum[lo]))
		if int(sym) >= mid {
			lo = mid
		} else {
			hi = mid
		}
	}
	return out
}
