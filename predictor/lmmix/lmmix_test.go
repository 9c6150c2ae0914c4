package lmmix

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/lm"
	"github.com/lmfs/lmfs/predictor/order2"
)

// goldenInput is a deterministic block of n bytes: words picked by a linear
// congruential generator, a repeated stretch (for cm's match model) and a
// stretch of noise, so every part of the mixer is exercised.
func goldenInput(n int) []byte {
	words := []string{"the ", "mixer ", "of ", "lmfs ", "codes ", "bits ", "with ", "an ", "LM, ", "and ", "cm.\n", "0x1F ", "{\"k\": 7} "}
	var b []byte
	s := uint32(12345)
	next := func() uint32 { s = s*1664525 + 1013904223; return s >> 8 }
	for len(b) < n {
		switch r := next() % 100; {
		case r < 80:
			b = append(b, words[next()%uint32(len(words))]...)
		case r < 90 && len(b) > 300:
			st := int(next() % uint32(len(b)-200))
			b = append(b, b[st:st+int(next()%150)+20]...)
		default:
			for range next()%40 + 1 {
				b = append(b, byte(next()))
			}
		}
	}
	return b[:n]
}

// bitMixer is what the tests drive: Mixer (id 6) and Mixer7 (id 7).
type bitMixer interface {
	P(pl int32, c *cm.Model) int
	Update(bit int)
}

// probs runs a new id 6 mixer over src with the LM's probabilities given by
// lmP (byte and bit position, as in the coder) and returns every output.
func probs(t testing.TB, src []byte, lmP func(t, k int) int32) []uint16 {
	return runMixer(t, New(), src, lmP)
}

// runMixer runs m, in the state it is in, over src with a new cm model and
// the LM's probabilities given by lmP, checks that every output is in range
// and returns them.
func runMixer(t testing.TB, m bitMixer, src []byte, lmP func(t, k int) int32) []uint16 {
	pred := cm.New(64 << 20)
	bm, err := pred.New(len(src), pred.Params(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	defer pred.Release(bm)
	c := bm.(*cm.Model)
	out := make([]uint16, 0, 8*len(src))
	for i, b := range src {
		for k := range 8 {
			p := m.P(lmP(i, k), c)
			if p < 16 || p > 65520 {
				t.Fatalf("byte %d bit %d: P = %d, outside [16, 65520]", i, k, p)
			}
			out = append(out, uint16(p))
			bit := int(b>>(7-k)) & 1
			m.Update(bit)
			c.Update(bit)
		}
	}
	return out
}

// sameProbs fails t at the first bit where a reset mixer's outputs got
// differ from a new one's, want.
func sameProbs(t *testing.T, got, want []uint16) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("byte %d bit %d: reset mixer gives %d, new one %d", i/8, i%8, got[i], want[i])
		}
	}
}

// order2P stands in for the LM: the order-2 reference model's bit
// probabilities of src, clamped to 1..65535.
func order2P(t testing.TB, src []byte) []int32 {
	var p order2.Predictor
	bm, err := p.New(len(src), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(bm)
	out := make([]int32, 0, 8*len(src))
	for _, b := range src {
		for k := 7; k >= 0; k-- {
			out = append(out, int32(min(max(bm.P(), 1), 65535)))
			bm.Update(int(b>>k) & 1)
		}
	}
	return out
}

func hashProbs(p []uint16) string {
	h := sha256.New()
	var b [2]byte
	for _, v := range p {
		binary.LittleEndian.PutUint16(b[:], v)
		h.Write(b[:])
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestGolden pins every probability the mixer computes for a fixed input,
// with order2's probabilities standing in for the LM (so the test does not
// depend on a model): any change to the mixer's arithmetic (or to cm's)
// shows up here and needs a new codec id. A port (CUDA) reproduces this
// hash from the same inputs.
func TestGolden(t *testing.T) {
	src := goldenInput(20000)
	pl := order2P(t, src)
	got := probs(t, src, func(i, k int) int32 { return pl[8*i+k] })
	const golden = "3b2a7b89a26d9de47ae3acf5c9e051c1c16a26155c06ffa63b8b71e6f34c57a3"
	if h := hashProbs(got); h != golden {
		t.Errorf("mixer probabilities hash to %s, golden %s", h, golden)
	}
}

// TestMatchesTuningTwin checks that Mixer computes exactly what the
// configurable mixer it was tuned with computes for finalConfig, on real
// text with the built-in LM's probabilities and on noise.
func TestMatchesTuningTwin(t *testing.T) {
	model, err := lm.Default()
	if err != nil {
		t.Fatal(err)
	}
	src := goldenInput(3000)
	pl := make([]int32, 0, 8*len(src))
	err = model.Score(context.Background(), [][]byte{src}, func(_, pos int, d *predictor.Dist) error {
		var cum [257]uint32
		var s uint32
		for i, f := range d {
			cum[i] = s
			s += uint32(f)
		}
		cum[256] = s
		lo, hi := 0, 256
		for range 8 {
			mid := (lo + hi) / 2
			pl = append(pl, int32(uint64(cum[hi]-cum[mid])<<16/uint64(cum[hi]-cum[lo])))
			if int(src[pos]) >= mid {
				lo = mid
			} else {
				hi = mid
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := probs(t, src, func(i, k int) int32 { return pl[8*i+k] })
	pred := cm.New(64 << 20)
	bm, err := pred.New(len(src), pred.Params(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	defer pred.Release(bm)
	c := bm.(*cm.Model)
	tw := newCfg(finalConfig())
	for i, b := range src {
		for k := range 8 {
			if p := tw.P(pl[8*i+k], c); p != int(want[8*i+k]) {
				t.Fatalf("byte %d bit %d: twin gives %d, Mixer %d", i, k, p, want[8*i+k])
			}
			bit := int(b>>(7-k)) & 1
			tw.Update(bit)
			c.Update(bit)
		}
	}
}

// TestReset: a reset mixer codes a block exactly as a new one does, and the
// mixer learns (the text costs well below 8 bits per byte).
func TestReset(t *testing.T) {
	src := goldenInput(5000)
	pl := order2P(t, src)
	lmP := func(i, k int) int32 { return pl[8*i+k] }
	want := probs(t, src, lmP)
	m := New()
	for range 2 {
		m.Reset()
		got := runMixer(t, m, src, lmP)
		sameProbs(t, got, want)
		if bpb := codedBits(src, got) / float64(len(src)); bpb > 4 {
			t.Fatalf("%.2f bits per byte on repetitive text: the mixer does not learn", bpb)
		}
	}
}

// BenchmarkMixer measures cm with and without the mixer (which reads cm's
// live state, so cm cannot be left out): the difference is the mixer's cost.
func BenchmarkMixer(b *testing.B) {
	src := goldenInput(32 << 10)
	pl := order2P(b, src)
	pred := cm.New(64 << 20)
	run := func(b *testing.B, mixed bool) {
		b.SetBytes(int64(len(src)))
		m := New()
		for b.Loop() {
			bm, err := pred.New(len(src), pred.Params(len(src)))
			if err != nil {
				b.Fatal(err)
			}
			c := bm.(*cm.Model)
			m.Reset()
			for i, x := range src {
				for k := range 8 {
					bit := int(x>>(7-k)) & 1
					if mixed {
						m.P(pl[8*i+k], c)
						m.Update(bit)
					} else {
						c.P()
					}
					c.Update(bit)
				}
			}
			pred.Release(bm)
		}
	}
	b.Run("cm", func(b *testing.B) { run(b, false) })
	b.Run("cm+mixer", func(b *testing.B) { run(b, true) })
}
