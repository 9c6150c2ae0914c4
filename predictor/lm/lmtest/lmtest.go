// Package lmtest writes lmfs LM model files for tests and benchmarks:
// models of architectures 2 and 3 (lstm1 and lstm2, predictor/lm/SPEC.md)
// with random weights of a chosen shape, valid by construction, so code that
// uses a model can be tested and measured without a trained model file.
package lmtest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// LSTM holds every field of an lstm1 or lstm2 model file (SPEC.md, "Model
// file (arch 2)" and "Model file (arch 3)"), in file order. Encode writes
// them as they are, valid or not, so tests can also make files that a
// loader must reject.
type LSTM struct {
	Format, Arch   uint32  // 1 and 2 (lstm1) or 3 (lstm2) for a valid file
	Layers, Hidden int     // NL and H
	LogitFrac      int     // LF
	TotalBits      uint32  // TB, 16
	Sig, Tanh      []int32 // 4096 entries each
	T0             []int32 // 257 x 4H
	T1             []int16 // lstm2: 2049 x 4H (written when not nil)
	W              [][]int8
	B, M, S        [][]int32 // per layer, 4H each
	WO             []int8    // 256 x H
	BO, MO, SO     []int32
	Exp            []int32
}

// Encode returns the model file.
func (m *LSTM) Encode() []byte {
	b := []byte("LMFSLM\x00\x01")
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	i32s := func(s []int32) {
		for _, v := range s {
			u32(uint32(v))
		}
	}
	i8s := func(s []int8) {
		for _, v := range s {
			b = append(b, byte(v))
		}
	}
	u32(m.Format)
	u32(m.Arch)
	u32(uint32(m.Layers))
	u32(uint32(m.Hidden))
	u32(uint32(m.LogitFrac))
	u32(uint32(len(m.Exp)))
	u32(m.TotalBits)
	i32s(m.Sig)
	i32s(m.Tanh)
	i32s(m.T0)
	for _, v := range m.T1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	for l := range m.W {
		i8s(m.W[l])
		i32s(m.B[l])
		i32s(m.M[l])
		i32s(m.S[l])
	}
	i8s(m.WO)
	i32s(m.BO)
	i32s(m.MO)
	i32s(m.SO)
	i32s(m.Exp)
	return append(b, "LMFSEND\x00"...)
}

// Tables returns the SIG and TANH tables the exporter writes (SPEC.md,
// "Where the numbers come from").
func Tables() (sig, tanh []int32) {
	sig, tanh = make([]int32, 4096), make([]int32, 4096)
	for k := range 4096 {
		x := float64(k-2048) / 256
		sig[k] = int32(math.Round(4096 / (1 + math.Exp(-x))))
		tanh[k] = int32(math.Round(4096 * math.Tanh(x)))
	}
	return sig, tanh
}

// ExpTable returns EXP[d] = round(2^24 exp(-d / 2^lf)) for d < n.
func ExpTable(lf, n int) []int32 {
	e := make([]int32, n)
	for d := range e {
		e[d] = int32(math.Round((1 << 24) * math.Exp(-float64(d)/float64(int(1)<<lf))))
	}
	return e
}

// FixedPoint returns M and S with M / 2^S ~ scale and M in [2^30, 2^31),
// as the exporter chooses them (scale must lie in [2^-32, 2^29]).
func FixedPoint(scale float64) (m, s int32) {
	for s = 1; s <= 62; s++ {
		v := math.Round(scale * math.Ldexp(1, int(s)))
		if v >= 1<<30 && v < 1<<31 {
			return int32(v), s
		}
	}
	return 1 << 30, 62
}

// RandomLSTM returns a valid lstm1 model with NL = layers and H = hidden
// (a multiple of 8 in [8, 1024]) whose weights are drawn from seed. The
// requantisation is scaled so that the gates, the cell and the logits move
// through their whole range rather than sit at 0 or saturate.
func RandomLSTM(seed uint64, layers, hidden int) *LSTM {
	rng := rand.New(rand.NewPCG(seed, 0x6c6d6673))
	const lf = 8
	m := &LSTM{Format: 1, Arch: 2, Layers: layers, Hidden: hidden, LogitFrac: lf, TotalBits: 16}
	m.Sig, m.Tanh = Tables()
	m.Exp = ExpTable(lf, 4096)
	H := hidden
	i8 := func(n int) []int8 {
		s := make([]int8, n)
		for i := range s {
			s[i] = int8(rng.IntN(255) - 127)
		}
		return s
	}
	span := func(n, r int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = int32(rng.IntN(2*r+1) - r)
		}
		return s
	}
	m.T0 = span(257*4*H, 600)
	for l := range layers {
		k := H
		if l > 0 {
			k = 2 * H
		}
		m.W = append(m.W, i8(4*H*k))
		m.B = append(m.B, span(4*H, 200))
		// acc has a spread of about sqrt(k) * 73 * 60 for weights uniform in
		// [-127, 127] and a hidden state of spread 60: bring it to ~500 in z.
		mm, ss := make([]int32, 4*H), make([]int32, 4*H)
		for j := range mm {
			mm[j], ss[j] = FixedPoint(500 / (math.Sqrt(float64(k)) * 73 * 60) * (0.5 + rng.Float64()))
		}
		m.M, m.S = append(m.M, mm), append(m.S, ss)
	}
	m.WO = i8(256 * H)
	m.BO = span(256, 2<<lf)
	m.MO, m.SO = make([]int32, 256), make([]int32, 256)
	for v := range m.MO {
		m.MO[v], m.SO[v] = FixedPoint(3 * (1 << lf) / (math.Sqrt(float64(H)) * 73 * 60))
	}
	return m
}

// RandomLSTM2 returns a valid lstm2 model: RandomLSTM(seed, layers, hidden)
// with arch 3 and a match-feature table T1 drawn from seed, spread like T0
// so that the feature moves the gates as much as the byte does.
func RandomLSTM2(seed uint64, layers, hidden int) *LSTM {
	m := RandomLSTM(seed, layers, hidden)
	m.Arch = 3
	rng := rand.New(rand.NewPCG(seed, 0x6d617463))
	m.T1 = make([]int16, 2049*4*hidden)
	for i := range m.T1 {
		m.T1[i] = int16(rng.IntN(1201) - 600)
	}
	return m
}
