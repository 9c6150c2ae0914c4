package lm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/lm/lmtest"
)

// refLSTM is SPEC.md's lstm1 and lstm2 written out literally, in int64 and
// without any of the package's layouts or kernels, to check the package
// against.
type refLSTM struct {
	t *testing.T
	p *lmtest.LSTM
	h [][]int64
	c [][]int64

	in, z []int64 // scratch
}

func newRef(t *testing.T, p *lmtest.LSTM) *refLSTM {
	r := &refLSTM{t: t, p: p, z: make([]int64, 4*p.Hidden)}
	for range p.Layers {
		r.h = append(r.h, make([]int64, p.Hidden))
		r.c = append(r.c, make([]int64, p.Hidden))
	}
	r.step(256, 0)
	return r
}

func refR(acc int64, m, s int32) int64 { return (acc*int64(m) + int64(1)<<(s-1)) >> s }

func refClamp(x, lo, hi int64) int64 { return min(max(x, lo), hi) }

func (r *refLSTM) fits32(what string, v int64) {
	if v < -(1<<31) || v >= 1<<31 {
		r.t.Fatalf("%s = %d does not fit in 32 bits", what, v)
	}
}

// step is SPEC.md's step(x) (lstm1) or step(x, f) (lstm2: p.Arch == 3).
func (r *refLSTM) step(x, f int) {
	p, H := r.p, r.p.Hidden
	for l := range p.Layers {
		in := r.h[0]
		if l > 0 {
			in = append(append(r.in[:0], r.h[l-1]...), r.h[l]...)
		}
		K := len(in)
		z := r.z[:4*H]
		for j := range z {
			var acc int64
			w := p.W[l][j*K : j*K+K]
			for k, x := range in {
				acc += int64(w[k]) * x
			}
			r.fits32("gate sum", acc)
			v := refR(acc, p.M[l][j], p.S[l][j]) + int64(p.B[l][j])
			if l == 0 {
				v += int64(p.T0[x*4*H+j])
				if p.Arch == ArchLSTM2 {
					v += int64(p.T1[f*4*H+j])
				}
			}
			z[j] = refClamp(v, -2048, 2047)
		}
		for u := range H {
			ig := int64(p.Sig[z[u]+2048])
			fg := int64(p.Sig[z[H+u]+2048])
			gg := int64(p.Tanh[z[2*H+u]+2048])
			og := int64(p.Sig[z[3*H+u]+2048])
			sum := fg*r.c[l][u] + ig*gg + 2048
			r.fits32("cell sum", sum)
			c := refClamp(sum>>12, -(1 << 17), 1<<17)
			tc := int64(p.Tanh[refClamp(c>>4, -2048, 2047)+2048])
			r.c[l][u] = c
			r.h[l][u] = refClamp((og*tc+1<<16)>>17, -127, 127)
		}
	}
}

func (r *refLSTM) dist() predictor.Dist {
	p, H := r.p, r.p.Hidden
	var L [256]int64
	for v := range 256 {
		var acc int64
		for k := range H {
			acc += int64(p.WO[v*H+k]) * r.h[p.Layers-1][k]
		}
		r.fits32("logit sum", acc)
		L[v] = refClamp(refR(acc, p.MO[v], p.SO[v])+int64(p.BO[v]), -(1 << 24), 1<<24)
	}
	vmax := 0
	for v := range 256 {
		if L[v] > L[vmax] {
			vmax = v
		}
	}
	var e [256]int64
	var s int64
	for v := range 256 {
		e[v] = int64(p.Exp[min(L[vmax]-L[v], int64(len(p.Exp)-1))])
		s += e[v]
	}
	var d predictor.Dist
	var fs int64
	for v := range 256 {
		f := 1 + e[v]*(65536-256)/s
		d[v] = uint32(f)
		fs += f
	}
	d[vmax] += uint32(65536 - fs)
	return d
}

// refTables returns the reference tables of positions 0..len(in), with the
// match features of the SPEC transcription refMatchFeatures for lstm2.
func refTables(t *testing.T, p *lmtest.LSTM, in []byte) []predictor.Dist {
	r := newRef(t, p)
	feats := refMatchFeatures(in)
	out := []predictor.Dist{r.dist()}
	for i, b := range in {
		r.step(int(b), int(feats[i+1]))
		out = append(out, r.dist())
	}
	return out
}

// extremeLSTM is a valid model whose every value sits at a bound of SPEC.md:
// weights at +-127, the largest multipliers, biases and input table at
// +-2^20, so that sums reach their largest size and every clamp is hit.
// lstm2 makes it an lstm2 model (T1 at +-32767 and -32768).
func extremeLSTM(seed uint64, layers, hidden int, lstm2 bool) *lmtest.LSTM {
	p := lmtest.RandomLSTM(seed, layers, hidden)
	if lstm2 {
		p = lmtest.RandomLSTM2(seed, layers, hidden)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	sign := func() int32 { return int32(1 - 2*rng.IntN(2)) }
	for i := range p.T0 {
		p.T0[i] = sign() << 20
	}
	if p.T1 != nil {
		for i := range p.T1 {
			p.T1[i] = int16(sign() * 32767)
			if sign() < 0 {
				p.T1[i] = -32768 // the i16 range is T1's only bound
			}
		}
	}
	for l := range p.W {
		for i := range p.W[l] {
			p.W[l][i] = int8(127 * sign())
		}
		for j := range p.B[l] {
			p.B[l][j] = sign() << 20
			p.M[l][j], p.S[l][j] = 1<<31-1, int32(1+rng.IntN(40))
		}
	}
	for i := range p.WO {
		p.WO[i] = int8(127 * sign())
	}
	for v := range p.BO {
		p.BO[v] = sign() << 30
		p.MO[v], p.SO[v] = 1<<31-1, int32(1+rng.IntN(62))
	}
	return p
}

// lstmCases are the models the tests run: small random lstm1 and lstm2
// ones of several shapes (widths that are and are not multiples of the
// kernels' 16), and extreme ones.
func lstmCases() []struct {
	name string
	p    *lmtest.LSTM
} {
	type c = struct {
		name string
		p    *lmtest.LSTM
	}
	out := []c{}
	for i, s := range [][2]int{{1, 8}, {1, 24}, {2, 16}, {2, 40}, {3, 32}, {4, 8}, {1, 64}} {
		out = append(out, c{fmt.Sprintf("random NL=%d H=%d", s[0], s[1]), lmtest.RandomLSTM(uint64(i+1), s[0], s[1])})
	}
	for i, s := range [][2]int{{1, 8}, {2, 24}, {3, 16}, {1, 64}} {
		out = append(out, c{fmt.Sprintf("lstm2 random NL=%d H=%d", s[0], s[1]), lmtest.RandomLSTM2(uint64(i+21), s[0], s[1])})
	}
	out = append(out, c{"extreme NL=2 H=24", extremeLSTM(11, 2, 24, false)})
	out = append(out, c{"extreme NL=2 H=72", extremeLSTM(12, 2, 72, false)})
	out = append(out, c{"lstm2 extreme NL=2 H=24", extremeLSTM(15, 2, 24, true)})
	sat := lmtest.RandomLSTM(13, 2, 16)
	for k := range sat.Sig {
		sat.Sig[k], sat.Tanh[k] = 4096, 4096 // the cell grows to its bound, h to 127
	}
	out = append(out, c{"saturated +", sat})
	neg := lmtest.RandomLSTM(14, 2, 16)
	for k := range neg.Sig {
		neg.Sig[k], neg.Tanh[k] = 4096, -4096
	}
	out = append(out, c{"saturated -", neg})
	return out
}

func lstmInputs() [][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	bin := make([]byte, 64)
	for i := range bin {
		bin[i] = byte(rng.UintN(256))
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	return [][]byte{
		nil,
		{'x'},
		[]byte("The quick brown fox jumps over the lazy dog.\r\nfunc main() { println(42) }\n"),
		// Repeats for lstm2's match model, longer than scoreChunk.
		[]byte("hello world, hello world! hello there, hello world, hello world! the end"),
		bin,
		make([]byte, 32),
		bytes.Repeat([]byte{0xff}, 32),
		bytes.Repeat([]byte("ab"), 17)[:33],
		all,
	}
}

// loadWith loads p to run on kernel k (nil: the default one).
func loadWith(t testing.TB, p *lmtest.LSTM, k *kernel) *Model {
	t.Helper()
	m, err := Load(p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if k != nil {
		m.lstm.useKernel(k)
		m.kernel = k.name
	}
	return m
}

// TestLSTMMatchesReference checks Score and Streams, on every kernel, against
// the literal transcription of SPEC.md, table by table, and every table
// against the Dist rules.
func TestLSTMMatchesReference(t *testing.T) {
	kernels := kernels()
	for _, c := range lstmCases() {
		inputs := lstmInputs()
		if c.p.Hidden > 64 {
			// The reference is slow on wide models: a few short inputs.
			inputs = [][]byte{nil, {0x80}, inputs[2][:24]}
		}
		want := make([][]predictor.Dist, len(inputs))
		for i, in := range inputs {
			want[i] = refTables(t, c.p, in)
			for pos := range want[i] {
				if err := want[i][pos].Check(); err != nil {
					t.Fatalf("%s: the reference's table %d breaks the rules: %v", c.name, pos, err)
				}
			}
		}
		for ki, k := range kernels {
			if ki > 0 {
				// The kernels agree on every sum (TestMatvecKernels): the
				// slower ones see the first few inputs only.
				inputs = inputs[:min(len(inputs), 4)]
			}
			m := loadWith(t, c.p, &k)
			err := m.Score(context.Background(), inputs, func(b, pos int, d *predictor.Dist) error {
				if *d != want[b][pos] {
					return fmt.Errorf("input %d position %d: Score's table differs from the reference", b, pos)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s, kernel %s: %v", c.name, k.name, err)
			}
			s, err := m.Streams(context.Background(), len(inputs))
			if err != nil {
				t.Fatal(err)
			}
			// All streams advance together; each finishes with the table
			// after its last byte.
			for pos := 0; ; pos++ {
				var ids []int
				for b, in := range inputs {
					if pos <= len(in) {
						ids = append(ids, b)
					}
				}
				if len(ids) == 0 {
					break
				}
				dst := make([]predictor.Dist, len(ids))
				if err := s.Predict(context.Background(), ids, dst); err != nil {
					t.Fatal(err)
				}
				var push []int
				var syms []byte
				for i, b := range ids {
					if dst[i] != want[b][pos] {
						t.Fatalf("%s, kernel %s: input %d position %d: the stream's table differs from the reference", c.name, k.name, b, pos)
					}
					if pos < len(inputs[b]) {
						push = append(push, b)
						syms = append(syms, inputs[b][pos])
					}
				}
				if err := s.Push(push, syms); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestLSTM2Feature checks that the match feature reaches the model: an
// lstm2 model whose T1 is all 0 gives lstm1's tables, one with T1 row f
// set to a constant gives other tables where f_t is that feature.
func TestLSTM2Feature(t *testing.T) {
	in := []byte("hello world, hello world! hello there, hello world, hello world! the end")
	feats := refMatchFeatures(in)
	p1 := lmtest.RandomLSTM(31, 2, 16)
	p2 := lmtest.RandomLSTM2(31, 2, 16)
	clear(p2.T1)
	tables := func(m *Model) []predictor.Dist {
		var out []predictor.Dist
		if err := m.Score(context.Background(), [][]byte{in}, func(b, pos int, d *predictor.Dist) error {
			out = append(out, *d)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := tables(loadWith(t, p1, nil))
	m2 := loadWith(t, p2, nil)
	if m2.Arch() != ArchLSTM2 || m2.Config().Arch != ArchLSTM2 {
		t.Fatalf("Arch() = %d, Config().Arch = %d, want %d", m2.Arch(), m2.Config().Arch, ArchLSTM2)
	}
	if got := tables(m2); !slices.Equal(got, want) {
		t.Fatal("lstm2 with T1 = 0 differs from lstm1")
	}
	// Set the row of the feature at position 20 (the step over in[19]
	// consumes f_20 and gives the table of position 20).
	f := feats[20]
	if f == 0 {
		t.Fatal("no match at position 20 of the test input")
	}
	for j := range 4 * 16 {
		p2.T1[int(f)*4*16+j] = 900
	}
	got := tables(loadWith(t, p2, nil))
	first := slices.Index(feats, f)
	for pos := range first {
		if got[pos] != want[pos] {
			t.Fatalf("position %d, before feature %d first occurs (%d): tables differ", pos, f, first)
		}
	}
	if got[20] == want[20] {
		t.Error("T1's row of the active feature changed nothing")
	}
}

func TestLSTMModelInfo(t *testing.T) {
	p := lmtest.RandomLSTM(1, 2, 24)
	file := p.Encode()
	m, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config()
	if c.Arch != ArchLSTM1 || c.Layers != 2 || c.Hidden != 24 || c.LogitFrac != p.LogitFrac || c.Window != 0 {
		t.Errorf("Config() = %+v", c)
	}
	H := 24
	if want := 4*H*H + 4*H*2*H + 256*H; m.MACs() != want {
		t.Errorf("MACs() = %d, want %d", m.MACs(), want)
	}
	if want := 257*4*H + 4*H*H + 4*H + 4*H*2*H + 4*H + 256*H + 256; m.Params() != want {
		t.Errorf("Params() = %d, want %d", m.Params(), want)
	}
	if m.FileSize() != len(file) {
		t.Errorf("FileSize() = %d, want %d", m.FileSize(), len(file))
	}
	if _, err := LoadVerified(file, m.ID()); err != nil {
		t.Error(err)
	}
	if m.Kernel() == "" {
		t.Error("an lstm1 model names no kernel")
	}
	if m.Arch() != ArchLSTM1 {
		t.Errorf("Arch() = %d, want %d", m.Arch(), ArchLSTM1)
	}
	m2, err := Load(lmtest.RandomLSTM2(1, 2, 24).Encode())
	if err != nil {
		t.Fatal(err)
	}
	c = m2.Config()
	if m2.Arch() != ArchLSTM2 || c.Arch != ArchLSTM2 || c.Layers != 2 || c.Hidden != 24 {
		t.Errorf("lstm2: Arch() = %d, Config() = %+v", m2.Arch(), c)
	}
	if m2.MACs() != m.MACs() {
		t.Errorf("lstm2 MACs() = %d, lstm1's %d: the feature adds none", m2.MACs(), m.MACs())
	}
	if want := m.Params() + NumMatchFeatures*4*H; m2.Params() != want {
		t.Errorf("lstm2 Params() = %d, want %d", m2.Params(), want)
	}
}

func TestLSTMStreamsErrors(t *testing.T) {
	m := loadWith(t, lmtest.RandomLSTM(1, 1, 8), nil)
	ctx := context.Background()
	if _, err := m.Streams(ctx, -1); err == nil {
		t.Error("Streams(-1) gave no error")
	}
	s, err := m.Streams(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Predict(ctx, []int{2}, make([]predictor.Dist, 1)); err == nil {
		t.Error("Predict on a stream that does not exist gave no error")
	}
	if err := s.Predict(ctx, []int{0, 1}, make([]predictor.Dist, 1)); err == nil {
		t.Error("Predict with fewer tables than ids gave no error")
	}
	if err := s.Push([]int{0}, []byte{1, 2}); err == nil {
		t.Error("Push with more bytes than ids gave no error")
	}
	if err := s.Push([]int{-1}, []byte{1}); err == nil {
		t.Error("Push to stream -1 gave no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Predict(cctx, []int{0}, make([]predictor.Dist, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Predict with a cancelled context gave %v", err)
	}
	err = m.Score(cctx, [][]byte{[]byte("abc")}, func(int, int, *predictor.Dist) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Score with a cancelled context gave %v", err)
	}
	stop := errors.New("stop")
	if err := m.Score(ctx, [][]byte{[]byte("abc")}, func(int, int, *predictor.Dist) error { return stop }); err != stop {
		t.Errorf("Score did not return emit's error: %v", err)
	}
	s.Close()
	if err := s.Push([]int{0}, []byte{1}); err == nil {
		t.Error("Push after Close gave no error")
	}
}

// TestLSTMLoadRejectsBadFiles breaks each load-time check of SPEC.md once.
func TestLSTMLoadRejectsBadFiles(t *testing.T) {
	const H = 16
	// Offsets of the fields of a 2-layer H=16 file.
	const (
		hdr   = 8 + 7*4
		sig   = hdr
		tanh  = sig + 4096*4
		t0    = tanh + 4096*4
		w0    = t0 + 257*4*H*4
		b0    = w0 + 4*H*H
		m0    = b0 + 4*H*4
		s0    = m0 + 4*H*4
		w1    = s0 + 4*H*4
		b1    = w1 + 4*H*2*H
		wo    = b1 + 3*4*H*4
		bo    = wo + 256*H
		mo    = bo + 256*4
		so    = mo + 256*4
		expAt = so + 256*4
	)
	good := lmtest.RandomLSTM(5, 2, H).Encode()
	if _, err := Load(good); err != nil {
		t.Fatal(err)
	}
	if len(good) != expAt+4096*4+8 {
		t.Fatalf("file layout: %d bytes, the offsets here say %d", len(good), expAt+4096*4+8)
	}
	put := func(off int, v int32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[off:], uint32(v))
		return b
	}
	set8 := func(off int, v int8) []byte {
		b := bytes.Clone(good)
		b[off] = byte(v)
		return b
	}
	mod := func(f func(p *lmtest.LSTM)) []byte {
		p := lmtest.RandomLSTM(5, 2, H)
		f(p)
		return p.Encode()
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic", set8(1, 'X')},
		{"format", put(8, 2)},
		{"arch 4", put(12, 4)},
		{"arch 0", put(12, 0)},
		{"lstm1 file marked lstm2 (no T1)", put(12, ArchLSTM2)},
		{"layers 0", put(16, 0)},
		{"layers 5", put(16, 5)},
		{"hidden 4", put(20, 4)},
		{"hidden 20", put(20, 20)},
		{"hidden 2048", put(20, 2048)},
		{"logit fraction 17", put(24, 17)},
		{"exp length 0", put(28, 0)},
		{"exp length 70000", put(28, 70000)},
		{"total bits 15", put(32, 15)},
		{"header only", good[:hdr]},
		{"truncated", good[:len(good)/2]},
		{"no end marker", good[:len(good)-1]},
		{"trailing bytes", append(bytes.Clone(good), 0)},
		{"SIG below 0", put(sig, -1)},
		{"SIG above 4096", put(sig+4095*4, 4097)},
		{"SIG falls", put(sig+2000*4, 0)},
		{"TANH below -4096", put(tanh, -4097)},
		{"TANH falls", put(tanh+3000*4, -4096)},
		{"T0 above 2^20", put(t0+40, 1<<20+1)},
		{"T0 below -2^20", put(t0+4*(257*4*H-1), -(1<<20)-1)},
		{"layer-0 weight -128", set8(w0+5, -128)},
		{"layer-1 weight -128", set8(w1+4*H*2*H-1, -128)},
		{"layer-0 bias", put(b0, 1<<20+1)},
		{"layer-0 M negative", put(m0+8, -1)},
		{"layer-0 S 0", put(s0, 0)},
		{"layer-0 S 63", put(s0+4, 63)},
		{"layer-1 bias", put(b1+4, -(1<<20)-1)},
		{"output weight -128", set8(wo, -128)},
		{"output bias", put(bo+4, 1<<30+1)},
		{"output M negative", put(mo, -5)},
		{"output S 0", put(so+4*255, 0)},
		{"EXP[0] = 0", put(expAt, 0)},
		{"EXP above 2^24", put(expAt, 1<<24+1)},
		{"EXP grows", put(expAt+4*4095, 1<<24)},
		{"one layer short", mod(func(p *lmtest.LSTM) { p.Layers = 3 })},
		{"layer 1 sized as layer 0", mod(func(p *lmtest.LSTM) { p.W[1] = p.W[1][:4*H*H] })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.data)
			if !errors.Is(err, ErrBadModel) {
				t.Fatalf("Load gave %v, want an error wrapping ErrBadModel", err)
			}
		})
	}
	// lstm2: T1 (2049 x 4H int16) right after T0.
	good2 := lmtest.RandomLSTM2(5, 2, H).Encode()
	if _, err := Load(good2); err != nil {
		t.Fatal(err)
	}
	t1 := t0 + 257*4*H*4
	t1End := t1 + NumMatchFeatures*4*H*2
	if len(good2) != len(good)+NumMatchFeatures*4*H*2 {
		t.Fatalf("lstm2 file of %d bytes, want %d", len(good2), len(good)+NumMatchFeatures*4*H*2)
	}
	put2 := func(off int, v int32) []byte {
		b := bytes.Clone(good2)
		binary.LittleEndian.PutUint32(b[off:], uint32(v))
		return b
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"lstm2 file marked lstm1", put2(12, ArchLSTM1)},
		{"lstm2 truncated in T1", good2[:t1+1000]},
		{"lstm2 truncated after T1", good2[:t1End]},
		{"lstm2 with a short T1", append(bytes.Clone(good2[:t1End-2*4*H]), good2[t1End:]...)},
		{"lstm2 with a T1 row too many", append(append(bytes.Clone(good2[:t1End]), make([]byte, 2*4*H)...), good2[t1End:]...)},
		{"lstm2 layers 0", put2(16, 0)},
		{"lstm2 hidden 20", put2(20, 20)},
		{"lstm2 T0 above 2^20", put2(t0+8, 1<<20+1)},
		{"lstm2 layer-0 weight -128", func() []byte { b := bytes.Clone(good2); b[t1End+3] = 0x80; return b }()},
		{"lstm2 trailing bytes", append(bytes.Clone(good2), 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.data)
			if !errors.Is(err, ErrBadModel) {
				t.Fatalf("Load gave %v, want an error wrapping ErrBadModel", err)
			}
			t.Log(err)
		})
	}
	// T1 may take any int16.
	ext := bytes.Clone(good2)
	binary.LittleEndian.PutUint16(ext[t1:], 0x8000)
	binary.LittleEndian.PutUint16(ext[t1End-2:], 0x7fff)
	if _, err := Load(ext); err != nil {
		t.Errorf("T1 at -32768 and 32767: %v", err)
	}

	// The bounds themselves are allowed.
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"T0 at 2^20", put(t0, 1<<20)},
		{"output bias at -2^30", put(bo, -(1 << 30))},
		{"M at 2^31-1", put(m0, 1<<31-1)},
		{"S at 62", put(s0, 62)},
		{"M 0", put(mo, 0)},
	} {
		if _, err := Load(c.data); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// BenchmarkLSTM measures encoding (Score) of one block and of eight at once
// (encode8), decoding (a stream, one Predict and Push per byte) and decoding
// eight blocks at once (decode8) in bytes
// per second on one core, for random
// models of the shapes lstm.py trains (s, m, m2, l2: H = 384 and 512, one
// and two layers), lstm1 and lstm2 (names starting "lstm2-"), on each
// kernel. The text repeats, so lstm2's match model has a match at almost
// every byte. Run it with -cpu 1.
func BenchmarkLSTM(b *testing.B) {
	text := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog. "), 12)[:512]
	for _, shape := range [][2]int{{1, 384}, {1, 512}, {2, 384}, {2, 512}} {
		nl, h := shape[0], shape[1]
		for _, k := range kernels() {
			for _, p := range []*lmtest.LSTM{lmtest.RandomLSTM(1, nl, h), lmtest.RandomLSTM2(1, nl, h)} {
				benchLSTM(b, p, k, text)
			}
		}
	}
}

func benchLSTM(b *testing.B, p *lmtest.LSTM, k kernel, text []byte) {
	m := loadWith(b, p, &k)
	prefix := fmt.Sprintf("H%d-NL%d/%s", p.Hidden, p.Layers, k.name)
	if m.Arch() == ArchLSTM2 {
		prefix = "lstm2-" + prefix
	}
	b.Run(prefix+"/encode", func(b *testing.B) {
		b.ReportMetric(float64(m.MACs()), "MACs/byte")
		defer reportKBs(b, len(text))
		for b.Loop() {
			if err := m.Score(context.Background(), [][]byte{text}, func(int, int, *predictor.Dist) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(prefix+"/encode8", func(b *testing.B) {
		// Eight blocks scored in one call (stepped in lockstep).
		blocks := make([][]byte, 8)
		for j := range blocks {
			blocks[j] = append(append([]byte(nil), text[j*16:]...), text[:j*16]...)
		}
		b.ReportMetric(float64(m.MACs()), "MACs/byte")
		defer reportKBs(b, 8*len(text))
		for b.Loop() {
			if err := m.Score(context.Background(), blocks, func(int, int, *predictor.Dist) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(prefix+"/decode", func(b *testing.B) {
		b.ReportMetric(float64(m.MACs()), "MACs/byte")
		defer reportKBs(b, len(text))
		ctx := context.Background()
		ids, dst := []int{0}, make([]predictor.Dist, 1)
		for b.Loop() {
			s, err := m.Streams(ctx, 1)
			if err != nil {
				b.Fatal(err)
			}
			for i := range text {
				if err := s.Predict(ctx, ids, dst); err != nil {
					b.Fatal(err)
				}
				if err := s.Push(ids, text[i:i+1]); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
		}
	})
	b.Run(prefix+"/decode8", func(b *testing.B) {
		// Eight blocks decoded together: one Predict and Push for
		// the eight per byte.
		const ns = 8
		b.ReportMetric(float64(m.MACs()), "MACs/byte")
		defer reportKBs(b, ns*len(text))
		ctx := context.Background()
		ids, dst, syms := []int{0, 1, 2, 3, 4, 5, 6, 7}, make([]predictor.Dist, ns), make([]byte, ns)
		for b.Loop() {
			s, err := m.Streams(ctx, ns)
			if err != nil {
				b.Fatal(err)
			}
			for i := range text {
				if err := s.Predict(ctx, ids, dst); err != nil {
					b.Fatal(err)
				}
				for j := range syms {
					syms[j] = text[(i+j)%len(text)]
				}
				if err := s.Push(ids, syms); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
		}
	})
}

// reportKBs reports the speed of a benchmark that codes n bytes per
// iteration in KB/s (1000 bytes), the unit of the model's speed targets.
func reportKBs(b *testing.B, n int) {
	if e := b.Elapsed().Seconds(); e > 0 {
		b.ReportMetric(float64(b.N*n)/e/1000, "KB/s")
	}
	b.ReportMetric(0, "ns/op")
}

// TestLSTMPushSameStreamTwice checks that a Push naming a stream twice
// appends both bytes in order, as two Pushes would.
func TestLSTMPushSameStreamTwice(t *testing.T) {
	for _, p := range []*lmtest.LSTM{lmtest.RandomLSTM(3, 2, 16), lmtest.RandomLSTM2(3, 2, 16)} {
		pushSameStreamTwice(t, p)
	}
}

func pushSameStreamTwice(t *testing.T, p *lmtest.LSTM) {
	m := loadWith(t, p, nil)
	ctx := context.Background()
	s, err := m.Streams(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Stream 0 gets "abcdefg" + "abcdefg" (a repeat for lstm2's match
	// model), pushed two and three bytes at a time.
	want := map[int]string{0: "abcdefgabcdefg", 1: "d", 2: "b"}
	if err := s.Push([]int{0, 2, 0, 1}, []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	want[0] = "ac"
	for _, part := range []string{"bcd", "efgabc", "defg"} {
		ids := make([]int, len(part))
		if err := s.Push(ids, []byte(part)); err != nil {
			t.Fatal(err)
		}
		want[0] += part
	}
	dst := make([]predictor.Dist, 3)
	if err := s.Predict(ctx, []int{0, 1, 2}, dst); err != nil {
		t.Fatal(err)
	}
	for id, in := range want {
		ref := refTables(t, p, []byte(in))
		if dst[id] != ref[len(in)] {
			t.Errorf("stream %d after %q: table differs from the reference", id, in)
		}
	}
}

// TestLSTMNoAllocsPerByte checks that decoding a byte (Predict and Push on
// one stream and on several) allocates nothing.
func TestLSTMNoAllocsPerByte(t *testing.T) {
	for _, p := range []*lmtest.LSTM{lmtest.RandomLSTM(2, 2, 16), lmtest.RandomLSTM2(2, 2, 16)} {
		noAllocsPerByte(t, loadWith(t, p, nil))
	}
}

func noAllocsPerByte(t *testing.T, m *Model) {
	ctx := context.Background()
	for _, ids := range [][]int{{0}, {0, 1, 2}} {
		s, err := m.Streams(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]predictor.Dist, len(ids))
		syms := []byte("abc")[:len(ids)]
		allocs := testing.AllocsPerRun(50, func() {
			if err := s.Predict(ctx, ids, dst); err != nil {
				t.Fatal(err)
			}
			if err := s.Push(ids, syms); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("arch %d, %d streams: %v allocations per byte", m.Arch(), len(ids), allocs)
		}
		s.Close()
	}
}

// TestLSTMConcurrentUse codes the same blocks from several goroutines at
// once on one model (as the coding pool does) and checks every table
// against a serial run.
func TestLSTMConcurrentUse(t *testing.T) {
	for _, p := range []*lmtest.LSTM{lmtest.RandomLSTM(4, 2, 32), lmtest.RandomLSTM2(4, 2, 32)} {
		concurrentUse(t, loadWith(t, p, nil))
	}
}

func concurrentUse(t *testing.T, m *Model) {
	inputs := lstmInputs()
	want := map[[2]int]predictor.Dist{}
	ctx := context.Background()
	if err := m.Score(ctx, inputs, func(b, pos int, d *predictor.Dist) error {
		want[[2]int{b, pos}] = *d
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			errs <- func() error {
				if g%2 == 0 {
					return m.Score(ctx, inputs, func(b, pos int, d *predictor.Dist) error {
						if *d != want[[2]int{b, pos}] {
							return fmt.Errorf("goroutine %d: block %d position %d differs", g, b, pos)
						}
						return nil
					})
				}
				s, err := m.Streams(ctx, 1)
				if err != nil {
					return err
				}
				defer s.Close()
				in := inputs[len(inputs)-1]
				dst := make([]predictor.Dist, 1)
				for pos := range in {
					if err := s.Predict(ctx, []int{0}, dst); err != nil {
						return err
					}
					if dst[0] != want[[2]int{len(inputs) - 1, pos}] {
						return fmt.Errorf("goroutine %d: stream position %d differs", g, pos)
					}
					if err := s.Push([]int{0}, in[pos:pos+1]); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// FuzzLSTM2ScoreStreams checks, on any input, that an lstm2 model's Score
// and Streams (bytes pushed one at a time into one stream and, into a second
// stream, in groups that name the stream several times) give the same
// tables.
func FuzzLSTM2ScoreStreams(f *testing.F) {
	f.Add([]byte("hello world, hello world! hello there"), uint8(3))
	f.Add(bytes.Repeat([]byte{0}, 80), uint8(1))
	f.Add([]byte("abcdeXabcdeYabcdeX"), uint8(7))
	m, err := Load(lmtest.RandomLSTM2(41, 2, 8).Encode())
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, in []byte, group uint8) {
		if len(in) > 64 {
			in = in[:64] // long enough for matches, short for CI's fuzz run
		}
		var want []predictor.Dist
		if err := m.Score(ctx, [][]byte{in}, func(b, pos int, d *predictor.Dist) error {
			want = append(want, *d)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		s, err := m.Streams(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		dst := make([]predictor.Dist, 2)
		g := 1 + int(group)%8
		for pos := range in {
			if err := s.Predict(ctx, []int{0}, dst[:1]); err != nil {
				t.Fatal(err)
			}
			if dst[0] != want[pos] {
				t.Fatalf("position %d: the stream's table differs from Score's", pos)
			}
			if err := s.Push([]int{0}, in[pos:pos+1]); err != nil {
				t.Fatal(err)
			}
			if (pos+1)%g == 0 || pos == len(in)-1 {
				// Stream 1 catches up with one Push naming it several times.
				from := pos - pos%g
				ids := make([]int, pos+1-from)
				for i := range ids {
					ids[i] = 1
				}
				if err := s.Push(ids, in[from:pos+1]); err != nil {
					t.Fatal(err)
				}
				if err := s.Predict(ctx, []int{0, 1}, dst); err != nil {
					t.Fatal(err)
				}
				if dst[0] != dst[1] {
					t.Fatalf("after %d bytes: pushed in groups of %d, the table differs", pos+1, g)
				}
			}
		}
	})
}

// TestScoreLockstepMatchesOneByOne: Score over many blocks (groups stepped
// in lockstep, the four-vector kernel on whole panels) gives every table
// that Score of each block alone gives (chunks of positions), on every
// kernel, for models with and without whole panels and blocks of different
// lengths (empty, one byte, longer than a chunk).
func TestScoreLockstepMatchesOneByOne(t *testing.T) {
	text := []byte("The quick brown fox jumps over the lazy dog. The quick brown fox jumps again. func main() { println(42) }\n")
	var blocks [][]byte
	for i := range 11 {
		blocks = append(blocks, text[i*7%len(text):min(len(text), i*7%len(text)+i*13)])
	}
	blocks[3] = nil
	blocks[5] = text[:1]
	for _, p := range []*lmtest.LSTM{lmtest.RandomLSTM(5, 2, 384), lmtest.RandomLSTM2(6, 2, 384), lmtest.RandomLSTM2(7, 1, 48)} {
		for _, k := range kernels() {
			if p.Hidden > 64 && (k.name == "go" || k.name == "swar") {
				continue // slow; they share the code around the kernel
			}
			m := loadWith(t, p, &k)
			want := make([][]predictor.Dist, len(blocks))
			for i, b := range blocks {
				err := m.Score(context.Background(), [][]byte{b}, func(_, pos int, d *predictor.Dist) error {
					if pos != len(want[i]) {
						return fmt.Errorf("block %d: position %d after %d", i, pos, len(want[i]))
					}
					want[i] = append(want[i], *d)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			got := make([]int, len(blocks))
			err := m.Score(context.Background(), blocks, func(b, pos int, d *predictor.Dist) error {
				if pos != got[b] {
					return fmt.Errorf("block %d: position %d after %d", b, pos, got[b])
				}
				if *d != want[b][pos] {
					return fmt.Errorf("block %d position %d: the table differs from the block scored alone", b, pos)
				}
				got[b]++
				return nil
			})
			if err != nil {
				t.Fatalf("H%d arch %d, kernel %s: %v", p.Hidden, m.Arch(), k.name, err)
			}
			for i, b := range blocks {
				if got[i] != len(b) {
					t.Fatalf("H%d, kernel %s: block %d got %d tables for %d bytes", p.Hidden, k.name, i, got[i], len(b))
				}
			}
		}
	}
}
