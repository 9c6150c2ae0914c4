package coder

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/lmfs/lmfs/predictor"
)

func TestArithBitsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name string
		n    int
		p    func(i int) int
	}{
		{"one", 1, func(int) int { return 32768 }},
		{"fair", 10007, func(int) int { return 32768 }},
		{"extreme-low", 5000, func(int) int { return 1 }},
		{"extreme-high", 5000, func(int) int { return 65535 }},
		{"clamped", 3000, func(i int) int { return []int{-5, 0, 70000, 1 << 20}[i%4] }},
		{"random", 20011, func(int) int { return 1 + rng.IntN(65535) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bits := make([]int, tc.n)
			ps := make([]int, tc.n)
			for i := range bits {
				ps[i] = tc.p(i)
				// draw bits that mostly follow, sometimes contradict, p
				if rng.IntN(65536) < clampP(ps[i]) {
					bits[i] = 1
				}
				if rng.IntN(50) == 0 {
					bits[i] ^= 1
				}
			}
			e := NewEncoder([]byte("hdr"))
			for i, b := range bits {
				e.EncodeBit(b, ps[i])
			}
			out := e.Finish()
			if !bytes.HasPrefix(out, []byte("hdr")) {
				t.Fatal("encoder lost dst")
			}
			d := NewDecoder(out[3:])
			for i := range bits {
				if got := d.DecodeBit(ps[i]); got != bits[i] {
					t.Fatalf("bit %d: got %d want %d", i, got, bits[i])
				}
			}
			if err := d.Finish(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestArithOverhead checks that coding costs within a few bytes of the
// information content.
func TestArithOverhead(t *testing.T) {
	e := NewEncoder(nil)
	n := 80000
	for i := 0; i < n; i++ {
		e.EncodeBit(i&1, 32768)
	}
	if got, want := len(e.Finish()), n/8; got > want+4 {
		t.Fatalf("%d fair bits took %d bytes, want at most %d", n, got, want+4)
	}
}

// randomDist returns a valid Dist, skewed toward a few symbols.
func randomDist(rng *rand.Rand) *predictor.Dist {
	var d predictor.Dist
	left := uint32(predictor.FreqTotal - 256)
	for i := range d {
		d[i] = 1
	}
	for left > 0 {
		s := rng.IntN(256)
		if rng.IntN(3) > 0 {
			s = rng.IntN(8)
		}
		k := min(left, 1+uint32(rng.IntN(3000)))
		d[s] += k
		left -= k
	}
	return &d
}

func TestArithSymbolsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 5000
	dists := make([]*predictor.Dist, n)
	syms := make([]byte, n)
	for i := range syms {
		dists[i] = randomDist(rng)
		syms[i] = byte(rng.IntN(256))
		if rng.IntN(2) == 0 {
			syms[i] = byte(rng.IntN(8))
		}
	}
	e := NewEncoder(nil)
	for i, s := range syms {
		if err := e.EncodeSymbol(dists[i], s); err != nil {
			t.Fatal(err)
		}
	}
	out := e.Finish()
	d := NewDecoder(out)
	for i := range syms {
		got, err := d.DecodeSymbol(dists[i])
		if err != nil {
			t.Fatal(err)
		}
		if got != syms[i] {
			t.Fatalf("symbol %d: got %d want %d", i, got, syms[i])
		}
	}
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestArithSymbolCost(t *testing.T) {
	// A symbol with frequency f of the total costs about log2(total/f) bits.
	var d predictor.Dist
	for i := range d {
		d[i] = 1
	}
	d['a'] = predictor.FreqTotal - 255
	e := NewEncoder(nil)
	for i := 0; i < 10000; i++ {
		if err := e.EncodeSymbol(&d, 'a'); err != nil {
			t.Fatal(err)
		}
	}
	// -log2((65536-255)/65536) = 0.0056 bits each, 56 bits in all
	if got := len(e.Finish()); got > 16 {
		t.Fatalf("10000 likely symbols took %d bytes", got)
	}
}

func TestArithBadDist(t *testing.T) {
	var zero, short predictor.Dist
	for i := range short {
		short[i] = 1
	}
	zero = short
	zero[7] = 0
	zero[8] = predictor.FreqTotal - 254
	for name, d := range map[string]*predictor.Dist{"zero": &zero, "short-total": &short} {
		if err := NewEncoder(nil).EncodeSymbol(d, 0); err == nil {
			t.Errorf("%s: encoder accepted a bad table", name)
		}
		if _, err := NewDecoder([]byte{1, 2, 3}).DecodeSymbol(d); err == nil {
			t.Errorf("%s: decoder accepted a bad table", name)
		}
		if err := d.Check(); err == nil {
			t.Errorf("%s: Dist.Check accepted a bad table", name)
		}
	}
}

// FuzzArithDecode decodes garbage as bits and symbols: it must never panic,
// and Finish must reject a stream that a valid encoding could not be.
func FuzzArithDecode(f *testing.F) {
	e := NewEncoder(nil)
	for i := 0; i < 100; i++ {
		e.EncodeBit(i%3&1, 20000)
	}
	f.Add(e.Finish(), uint16(100), uint16(20000))
	f.Add([]byte{}, uint16(10), uint16(1))
	f.Add([]byte{0xFF, 0xFF}, uint16(300), uint16(65535))
	rng := rand.New(rand.NewPCG(8, 8))
	dist := randomDist(rng)
	f.Fuzz(func(t *testing.T, stream []byte, n, p uint16) {
		d := NewDecoder(stream)
		for i := 0; i < int(n)%4000; i++ {
			if i%5 == 4 {
				if _, err := d.DecodeSymbol(dist); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if b := d.DecodeBit(int(p)); b != 0 && b != 1 {
				t.Fatalf("bit %d", b)
			}
		}
		if err := d.Finish(); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Finish error %v does not wrap ErrCorrupt", err)
		}
	})
}
