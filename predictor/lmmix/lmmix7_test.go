package lmmix

import (
	"math"
	"os"
	"testing"
)

// probs7 runs the id 7 mixer m (reset for src) over src with the LM's
// probabilities given by lmP and returns every output.
func probs7(t testing.TB, m *Mixer7, src []byte, lmP func(t, k int) int32) []uint16 {
	m.Reset(len(src))
	return runMixer(t, m, src, lmP)
}

// codedBits returns the bits an ideal coder spends on src with the 16-bit
// probabilities p of its bits.
func codedBits(src []byte, p []uint16) float64 {
	bits := 0.0
	for i, v := range p {
		q := float64(v) / 65536
		if int(src[i/8]>>(7-i%8))&1 == 0 {
			q = 1 - q
		}
		bits -= math.Log2(q)
	}
	return bits
}

// TestGolden7 pins every probability the id 7 mixer computes for a fixed
// input, with order2's probabilities standing in for the LM: any change to
// its arithmetic (or to cm's) shows up here and needs a new codec id. A port
// (CUDA) reproduces this hash from the same inputs.
func TestGolden7(t *testing.T) {
	src := goldenInput(20000)
	pl := order2P(t, src)
	got := probs7(t, New7(len(src)), src, func(i, k int) int32 { return pl[8*i+k] })
	const golden = "7e888004f1f4a71dda4ec347de6aedc52fa60f162c5d823250f070a802487d2a"
	if h := hashProbs(got); h != golden {
		t.Errorf("id 7 mixer probabilities hash to %s, golden %s", h, golden)
	}
}

// TestReset7: a reset mixer codes a block exactly as a new one does, also
// after a block of another length; the mixer learns (the text costs well
// below 8 bits per byte), and its contexts pay on real text (this package's
// source and spec: fewer bits than id 6).
func TestReset7(t *testing.T) {
	var src []byte
	for _, f := range []string{"SPEC.md", "lmmix.go"} {
		d, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, d...)
	}
	pl := order2P(t, src)
	lmP := func(i, k int) int32 { return pl[8*i+k] }
	want := probs7(t, New7(len(src)), src, lmP)
	bits := codedBits(src, want)
	if bpb := bits / float64(len(src)); bpb > 4 {
		t.Fatalf("%.2f bits per byte on text: the mixer does not learn", bpb)
	}
	bits6 := codedBits(src, probs(t, src, lmP))
	if bits >= bits6 {
		t.Errorf("id 7 codes the text in %.0f bits, id 6 in %.0f: the contexts do not pay", bits, bits6)
	}
	m := New7(100)
	other := goldenInput(40000)[20000:]
	probs7(t, m, other, func(i, k int) int32 { return 32768 })
	sameProbs(t, probs7(t, m, src, lmP), want)
}

// TestMixer7Tiny: blocks of 0 to a few bytes, extreme LM probabilities and
// data with many line breaks stay in range (probs7 checks every output).
func TestMixer7Tiny(t *testing.T) {
	m := New7(1)
	for _, src := range [][]byte{{}, {0}, {'\n'}, []byte("a\nb\n\n\nccc\n"), []byte("x y z w\n1,2,3\n4,5,6\n")} {
		for _, pl := range []int32{1, 65535, 32768, 0, 70000} {
			probs7(t, m, src, func(int, int) int32 { return pl })
		}
	}
}

// BenchmarkMixer7 measures cm with the id 6 and id 7 mixers (cm alone is
// BenchmarkMixer's "cm").
func BenchmarkMixer7(b *testing.B) {
	src := goldenInput(32 << 10)
	pl := order2P(b, src)
	lmP := func(i, k int) int32 { return pl[8*i+k] }
	b.Run("id6", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			probs(b, src, lmP)
		}
	})
	b.Run("id7", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		m := New7(len(src))
		for b.Loop() {
			probs7(b, m, src, lmP)
		}
	})
	if os.Getenv("LMFS_MIXTUNE") == "" {
		return
	}
	names, cfgs := tune7Configs()
	for i, o := range cfgs {
		b.Run("id7/"+names[i], func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			m := newMixer7(o, len(src))
			for b.Loop() {
				probs7(b, m, src, lmP)
			}
		})
	}
}
