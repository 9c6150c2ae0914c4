package lm

import (
	"math/rand/v2"
	"testing"
)

// TestDenseSWARMatchesPlain checks the packed layer against plain int32
// arithmetic on random weights, activations and sparsity, extremes included.
func TestDenseSWARMatchesPlain(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 200 {
		cols, rows := 1+rng.IntN(600), 1+rng.IntN(300)
		if trial == 0 {
			cols, rows = maxHidden, 257
		}
		w := make([]int8, cols*rows)
		for i := range w {
			w[i] = int8(rng.IntN(255) - 127)
			if trial == 0 {
				w[i] = -127
			}
		}
		x := make([]int32, cols)
		var nz []int
		for c := range x {
			if trial == 0 || rng.IntN(3) > 0 {
				x[c] = int32(1 + rng.IntN(127))
				if trial == 0 {
					x[c] = 127
				}
				nz = append(nz, c)
			}
		}
		bias := make([]int32, rows)
		for i := range bias {
			bias[i] = int32(rng.IntN(1<<20) - 1<<19)
		}
		want := make([]int32, rows)
		copy(want, bias)
		for _, c := range nz {
			axpy(want, w[c*rows:c*rows+rows], x[c])
		}
		got := make([]int32, rows)
		denseSWAR(got, bias, pack(w, cols, rows), nz, x, make([]uint64, (rows+1)/2))
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("trial %d (%dx%d): output %d is %d, want %d", trial, rows, cols, i, got[i], want[i])
			}
		}
	}
}

func BenchmarkDense(b *testing.B) {
	const cols, rows = 512, 192
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]int8, cols*rows)
	for i := range w {
		w[i] = int8(rng.IntN(255) - 127)
	}
	x := make([]int32, cols)
	var nz []int
	for c := range x {
		x[c] = int32(1 + rng.IntN(127))
		nz = append(nz, c)
	}
	bias := make([]int32, rows)
	acc := make([]int32, rows)
	p := pack(w, cols, rows)
	lanes := make([]uint64, rows/2)
	b.Run("axpy", func(b *testing.B) {
		b.SetBytes(cols * rows)
		for b.Loop() {
			copy(acc, bias)
			for _, c := range nz {
				axpy(acc, w[c*rows:c*rows+rows], x[c])
			}
		}
	})
	b.Run("swar", func(b *testing.B) {
		b.SetBytes(cols * rows)
		for b.Loop() {
			denseSWAR(acc, bias, p, nz, x, lanes)
		}
	})
}

// TestSumRowsMatchesPlain checks the packed table sum against plain int32
// additions, with the most rows a model may have and extreme entries.
func TestSumRowsMatchesPlain(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for trial := range 100 {
		h := 8 * (1 + rng.IntN(80))
		nrows := 1 + rng.IntN(maxWindow+maxOrders)
		if trial == 0 {
			nrows = maxWindow + maxOrders
		}
		table := make([]int8, 300*h)
		for i := range table {
			table[i] = int8(rng.IntN(255) - 127)
			if trial == 0 {
				table[i] = 127
			} else if trial == 1 {
				table[i] = -127
			}
		}
		tu := make([]uint8, len(table))
		for i, v := range table {
			tu[i] = uint8(int32(v) + 128)
		}
		rows := make([]int, nrows)
		for i := range rows {
			rows[i] = rng.IntN(300)
		}
		bias := make([]int32, h)
		for i := range bias {
			bias[i] = int32(rng.IntN(1<<20) - 1<<19)
		}
		want := make([]int32, h)
		copy(want, bias)
		for _, r := range rows {
			addRow(want, table[r*h:r*h+h])
		}
		got := make([]int32, h)
		sumRows(got, bias, tu, rows, make([]uint64, h/8), make([]uint64, h/8))
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("trial %d: entry %d is %d, want %d", trial, i, got[i], want[i])
			}
		}
	}
}
