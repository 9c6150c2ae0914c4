package lm

import (
	"math/rand/v2"
	"testing"
)

// TestMatvecKernels checks every kernel of this build against a plain
// transcription of the sum, on random data, on the extremes (every weight and
// input at -127 or 127, the largest sums a model can make) and on small and
// odd shapes.
func TestMatvecKernels(t *testing.T) {
	best, name := bestMatvec()
	kernels := map[string]matvecFunc{"go": matvecGo, name: best}
	rng := rand.New(rand.NewPCG(1, 2))
	type fill func(i int) int
	random := func(int) int { return rng.IntN(255) - 127 }
	cases := []struct {
		name    string
		rows, k int
		w, x    fill
	}{
		{"random 4x16", 4, 16, random, random},
		{"random 8x48", 8, 48, random, random},
		{"random 36x80", 36, 80, random, random},
		{"random 2048x512", 2048, 512, random, random},
		{"random 256x1024", 256, 1024, random, random},
		{"all +127", 12, 2048, func(int) int { return 127 }, func(int) int { return 127 }},
		{"-127 times +127", 8, 2048, func(int) int { return -127 }, func(int) int { return 127 }},
		{"-127 times -127", 8, 2048, func(int) int { return -127 }, func(int) int { return -127 }},
		{"alternating", 16, 1040, func(i int) int { return 127 - 254*(i&1) }, func(i int) int { return 127 - 254*(i>>1&1) }},
		{"zeros", 4, 32, func(int) int { return 0 }, random},
	}
	for _, c := range cases {
		w := make([]int8, c.rows*c.k)
		for i := range w {
			w[i] = int8(c.w(i))
		}
		x := make([]int16, c.k)
		for i := range x {
			x[i] = int16(c.x(i))
		}
		want := make([]int32, c.rows)
		for r := range want {
			var s int64
			for i := range c.k {
				s += int64(w[r*c.k+i]) * int64(x[i])
			}
			want[r] = int32(s)
		}
		for kn, f := range kernels {
			got := make([]int32, c.rows+4)
			got[c.rows] = 12345 // must stay untouched
			f(got[:c.rows], w, x, c.k)
			for r := range want {
				if got[r] != want[r] {
					t.Fatalf("%s, kernel %s: row %d = %d, want %d", c.name, kn, r, got[r], want[r])
				}
			}
			if got[c.rows] != 12345 {
				t.Fatalf("%s, kernel %s wrote past the last row", c.name, kn)
			}
		}
	}
}

func TestMatvecRejectsBadShapes(t *testing.T) {
	best, _ := bestMatvec()
	for _, f := range []matvecFunc{matvecGo, best} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("a matvec with 15 columns did not panic")
				}
			}()
			f(make([]int32, 4), make([]int8, 64), make([]int16, 16), 15)
		}()
	}
}

func BenchmarkMatvec(b *testing.B) {
	best, name := bestMatvec()
	for _, k := range []struct {
		name string
		f    matvecFunc
	}{{"go", matvecGo}, {name, best}} {
		b.Run(k.name, func(b *testing.B) {
			const rows, cols = 2048, 512
			w := make([]int8, rows*cols)
			x := make([]int16, cols)
			dst := make([]int32, rows)
			b.SetBytes(rows * cols) // one byte per MAC: B/s reads as MACs/s
			for b.Loop() {
				k.f(dst, w, x, cols)
			}
		})
	}
}
