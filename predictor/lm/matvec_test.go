package lm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMatvecKernels checks every kernel this machine can run against a plain
// transcription of the sum, on random data, on the extremes (every weight and
// input at -127 or 127, the largest sums a model can make) and on small and
// odd shapes.
func TestMatvecKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type fill func(i int) int
	random := func(int) int { return rng.IntN(255) - 127 }
	cases := []struct {
		name    string
		rows, k int
		w, x    fill
	}{
		{"random 4x64", 4, 64, random, random},
		{"random 8x128", 8, 128, random, random},
		{"random 36x192", 36, 192, random, random},
		{"random 2048x512", 2048, 512, random, random},
		{"random 256x1024", 256, 1024, random, random},
		{"random 1536x384 (lstm2's gates)", 1536, 384, random, random},
		{"random 144x128 (a panel and a group)", 144, 128, random, random},
		{"random 48x64 (groups only)", 48, 64, random, random},
		{"random 400x2048 (panels and groups, widest)", 400, 2048, random, random},
		{"all +127", 12, 2048, func(int) int { return 127 }, func(int) int { return 127 }},
		{"-127 times +127", 8, 2048, func(int) int { return -127 }, func(int) int { return 127 }},
		{"-127 times -127", 8, 2048, func(int) int { return -127 }, func(int) int { return -127 }},
		{"alternating", 16, 1088, func(i int) int { return 127 - 254*(i&1) }, func(i int) int { return 127 - 254*(i>>1&1) }},
		{"zeros", 4, 64, func(int) int { return 0 }, random},
		{"zero input", 4, 64, random, func(int) int { return 0 }},
	}
	for _, c := range cases {
		w := make([]int8, c.rows*c.k)
		for i := range w {
			w[i] = int8(c.w(i))
		}
		m := newMatrix(w, c.rows, c.k)
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
		if c.rows%vnniGroup == 0 && hasVNNIPanel() && m.vnni == nil {
			t.Fatalf("%s: no packed weights for the panel kernel", c.name)
		}
		for _, k := range kernels() {
			got := make([]int32, c.rows+4)
			got[c.rows] = 12345 // must stay untouched
			k.mv(got[:c.rows], m, x)
			for r := range want {
				if got[r] != want[r] {
					t.Fatalf("%s, kernel %s: row %d = %d, want %d", c.name, k.name, r, got[r], want[r])
				}
			}
			if got[c.rows] != 12345 {
				t.Fatalf("%s, kernel %s wrote past the last row", c.name, k.name)
			}
		}
	}
}

func TestMatvecRejectsBadShapes(t *testing.T) {
	m := newMatrix(make([]int8, 4*64), 4, 64)
	for _, k := range kernels() {
		for _, c := range []struct {
			name string
			dst  []int32
			x    []int16
		}{{"short input", make([]int32, 4), make([]int16, 63)}, {"wrong rows", make([]int32, 8), make([]int16, 64)}} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("kernel %s, %s: no panic", k.name, c.name)
					}
				}()
				k.mv(c.dst, m, c.x)
			}()
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a matrix of 48 columns was made")
			}
		}()
		newMatrix(make([]int8, 4*48), 4, 48)
	}()
}

// BenchmarkMatvec measures the kernels on the shapes of an H = 512 model:
// B/s reads as MACs/s (one byte of weights per multiply-accumulate).
func BenchmarkMatvec(b *testing.B) {
	for _, s := range [][2]int{{2048, 512}, {2048, 1024}, {256, 512}} {
		rows, cols := s[0], s[1]
		w := make([]int8, rows*cols)
		for i := range w {
			w[i] = int8(i*7%255 - 127)
		}
		m := newMatrix(w, rows, cols)
		x := make([]int16, cols)
		dst := make([]int32, rows)
		for _, k := range kernels() {
			b.Run(fmt.Sprintf("%dx%d/%s", rows, cols, k.name), func(b *testing.B) {
				b.SetBytes(int64(rows * cols))
				for b.Loop() {
					k.mv(dst, m, x)
				}
			})
		}
	}
}

// TestDivider checks the reciprocal division of the frequency code against
// the division, on the bounds and on random values of the sizes it meets
// (sums of 256 entries of at most 2^24, products below 2^40) and beyond.
func TestDivider(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	divisors := []uint64{1, 2, 3, 7, 255, 256, 65280, 1 << 24, 1<<24 + 1, 1<<32 - 1, 1 << 32, 1<<63 + 5, 1<<64 - 1}
	for range 2000 {
		divisors = append(divisors, 1+rng.Uint64N(1<<33), 1+rng.Uint64()>>uint(rng.IntN(64)))
	}
	for _, s := range divisors {
		d := newDivider(s)
		ns := []uint64{0, 1, s - 1, s, s + 1, 2*s - 1, 1<<40 - 1, 1<<64 - 1, ^uint64(0) - s + 1}
		for range 50 {
			ns = append(ns, rng.Uint64N(1<<40), rng.Uint64())
		}
		for _, n := range ns {
			if got, want := d.div(n), n/s; got != want {
				t.Fatalf("%d / %d: got %d, want %d", n, s, got, want)
			}
		}
	}
}

// TestRequantKernels checks every requantisation routine against SPEC.md's
// R(acc, M, S) + B + add, clamped, on random values and on the bounds.
func TestRequantKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const n = 2048
	acc, add, dst := make([]int32, n), make([]int32, n), make([]int32, n)
	m, s, b := make([]int32, n), make([]int32, n), make([]int32, n)
	for i := range n {
		switch i % 4 {
		case 0: // the largest magnitudes
			acc[i] = int32(2048*127*127) * int32(1-2*rng.IntN(2))
			m[i], s[i] = 1<<31-1, int32(1+rng.IntN(62))
			b[i], add[i] = int32(1<<30)*int32(1-2*rng.IntN(2)), int32(1<<20)*int32(1-2*rng.IntN(2))
		default:
			acc[i] = int32(rng.IntN(2*2048*127*127+1) - 2048*127*127)
			m[i], s[i] = int32(rng.IntN(1<<31)), int32(1+rng.IntN(62))
			b[i], add[i] = int32(rng.IntN(1<<21)-1<<20), int32(rng.IntN(1<<21)-1<<20)
		}
	}
	p := newRQ(b, m, s)
	for _, bounds := range [][2]int64{{zMin, zMax}, {-maxLogit, maxLogit}} {
		for _, k := range kernels() {
			clear(dst)
			k.rq(dst, acc, add, &p, bounds[0], bounds[1])
			for i := range n {
				v := (int64(acc[i])*int64(m[i])+int64(1)<<(s[i]-1))>>s[i] + int64(b[i]) + int64(add[i])
				want := int32(min(max(v, bounds[0]), bounds[1]))
				if dst[i] != want {
					t.Fatalf("kernel %s, bounds %v, value %d: %d, want %d", k.name, bounds, i, dst[i], want)
				}
			}
		}
	}
}

// TestAddI16Kernels checks every kernel's T0[x] + T1[f] (lstm2) on random
// values, the bounds, every length up to 4H = 4096 in steps of 8, and
// inputs longer than dst (only len(dst) values are written).
func TestAddI16Kernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	const n = 4 * maxLSTMH
	a, b := make([]int32, n+8), make([]int16, n+8)
	for i := range a {
		a[i] = int32(rng.IntN(1<<21+1) - 1<<20)
		b[i] = int16(rng.Uint32())
	}
	a[0], b[0], a[1], b[1] = 1<<20, 32767, -(1 << 20), -32768
	for _, k := range kernels() {
		for _, ln := range []int{0, 8, 32, 96, 1536, n} {
			dst := make([]int32, ln+1)
			dst[ln] = 12345
			k.add16(dst[:ln], a, b)
			for i := range ln {
				if want := a[i] + int32(b[i]); dst[i] != want {
					t.Fatalf("kernel %s, length %d, value %d: %d, want %d", k.name, ln, i, dst[i], want)
				}
			}
			if dst[ln] != 12345 {
				t.Fatalf("kernel %s, length %d: wrote past dst", k.name, ln)
			}
		}
	}
}

// TestMatvecBlocks: the blocks of rows that step uses give the rows of the
// whole matrix on every kernel, whether a block's rows start a panel of the
// packed weights (then they share them) or not.
func TestMatvecBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ rows, k, nb int }{{1536, 384, 6}, {1536, 768, 8}, {2048, 512, 8}, {256, 64, 2}, {48, 64, 3}} {
		w := make([]int8, c.rows*c.k)
		for i := range w {
			w[i] = int8(rng.IntN(255) - 127)
		}
		x := make([]int16, c.k)
		for i := range x {
			x[i] = int16(rng.IntN(255) - 127)
		}
		m := newMatrix(w, c.rows, c.k)
		want := make([]int32, c.rows)
		matvecGo(want, m, x)
		rb := c.rows / c.nb
		for _, k := range kernels() {
			for i, b := range m.blocks(c.nb) {
				if shared := b.vnni != nil; m.vnni != nil && shared != (rb%vnniPanel == 0) {
					t.Fatalf("%dx%d in %d blocks: block %d shares packed weights: %v", c.rows, c.k, c.nb, i, shared)
				}
				got := make([]int32, rb)
				k.mv(got, b, x)
				for r := range got {
					if got[r] != want[i*rb+r] {
						t.Fatalf("%dx%d in %d blocks, kernel %s: block %d row %d = %d, want %d", c.rows, c.k, c.nb, k.name, i, r, got[r], want[i*rb+r])
					}
				}
			}
		}
	}
}

// TestMatvecMany checks every kernel's many-vector product against the
// one-vector Go kernel, for counts of vectors that do and do not fill the
// four-vector kernel, on shapes with and without whole panels, and on the
// extremes.
func TestMatvecMany(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		rows, k int
		ext     bool // every weight and input at +-127
	}{{1536, 384, false}, {256, 768, false}, {128, 64, false}, {144, 128, false}, {36, 192, false}, {256, 2048, true}} {
		w := make([]int8, c.rows*c.k)
		for i := range w {
			w[i] = int8(rng.IntN(255) - 127)
			if c.ext {
				w[i] = 127
			}
		}
		m := newMatrix(w, c.rows, c.k)
		for _, n := range []int{1, 3, 4, 5, 8, 9} {
			xs := make([][]int16, n)
			want := make([][]int32, n)
			got := make([][]int32, n)
			for i := range xs {
				xs[i] = make([]int16, c.k)
				for j := range xs[i] {
					xs[i][j] = int16(rng.IntN(255) - 127)
					if c.ext {
						xs[i][j] = int16(127 - 254*(i&1))
					}
				}
				want[i] = make([]int32, c.rows)
				matvecGo(want[i], m, xs[i])
			}
			for _, k := range kernels() {
				buf := make([]int32, n*(c.rows+4))
				for i := range got {
					got[i] = buf[i*(c.rows+4) : i*(c.rows+4)+c.rows]
					buf[i*(c.rows+4)+c.rows] = 12345 // must stay untouched
				}
				k.many()(got, m, xs)
				for i := range got {
					for r := range got[i] {
						if got[i][r] != want[i][r] {
							t.Fatalf("%dx%d, %d vectors, kernel %s: vector %d row %d = %d, want %d", c.rows, c.k, n, k.name, i, r, got[i][r], want[i][r])
						}
					}
					if buf[i*(c.rows+4)+c.rows] != 12345 {
						t.Fatalf("%dx%d, %d vectors, kernel %s wrote past vector %d", c.rows, c.k, n, k.name, i)
					}
				}
			}
		}
	}
}

// TestGatesKernels checks every kernel's gate nonlinearities against
// gatesGo: random sums and cells over their whole ranges, the extremes, and
// widths with and without a whole number of 16-unit vectors, with tables
// of the model file's ranges.
func TestGatesKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var sig, tanh [tableLen]int32
	for i := range sig {
		sig[i] = int32(rng.IntN(4097))
		tanh[i] = int32(rng.IntN(8193) - 4096)
	}
	sig[0], sig[tableLen-1], tanh[0], tanh[tableLen-1] = 0, 4096, -4096, 4096
	for _, n := range []int{16, 48, 384, 512, 8, 40} {
		for _, ext := range []bool{false, true} {
			z := make([]int32, 4*n)
			c := make([]int32, n)
			for i := range z {
				z[i] = int32(rng.IntN(zMax-zMin+1) + zMin)
				if ext {
					z[i] = []int32{zMin, zMax}[rng.IntN(2)]
				}
			}
			for i := range c {
				c[i] = int32(rng.IntN(2*cellMax+1) - cellMax)
				if ext {
					c[i] = []int32{-cellMax, cellMax}[rng.IntN(2)]
				}
			}
			wantH, wantC := make([]int16, n), append([]int32(nil), c...)
			gatesGo(wantH, wantC, z, &sig, &tanh)
			for _, k := range kernels() {
				h, cc := make([]int16, n+1), append(append([]int32(nil), c...), 777)
				h[n] = 555 // must stay untouched
				k.gates(h[:n], cc[:n], z, &sig, &tanh)
				if !slices.Equal(h[:n], wantH) || !slices.Equal(cc[:n], wantC) {
					t.Fatalf("%d units (extremes %v), kernel %s: h or c differ from gatesGo", n, ext, k.name)
				}
				if h[n] != 555 || cc[n] != 777 {
					t.Fatalf("%d units, kernel %s wrote past the last unit", n, k.name)
				}
			}
		}
	}
}
