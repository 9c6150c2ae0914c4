package lm

import "fmt"

// The cost of lstm1 is in its matrix-vector products: int8 weights times a
// hidden state in [-127, 127], summed in int32. Every row of a matrix is
// stored padded with zeros to a multiple of 16 columns (kAlign) and the input
// vector, extended to int16, is padded likewise, so the kernels need no tail
// code. The sums are exact whatever the order of the additions (SPEC.md:
// no row can reach 2^31), so every kernel gives identical results.

// kAlign is the column padding of the stored matrices.
const kAlign = 16

// matvecFunc sets dst[r] = sum over i < k of w[r*k+i] * x[i] for every
// r < len(dst). len(dst) is a multiple of 4, k a multiple of kAlign,
// len(w) >= len(dst)*k and len(x) >= k.
type matvecFunc func(dst []int32, w []int8, x []int16, k int)

// checkMatvec panics when the arguments break matvecFunc's rules (a bug in
// this package, never a bad model file: the loader pads every matrix).
func checkMatvec(dst []int32, w []int8, x []int16, k int) {
	if len(dst)%4 != 0 || k%kAlign != 0 || k <= 0 || len(w) < len(dst)*k || len(x) < k {
		panic(fmt.Sprintf("lm: matvec on %d rows of %d columns, %d weights, %d inputs", len(dst), k, len(w), len(x)))
	}
}

// matvecGo is the pure-Go kernel: four rows at a time, so each input value
// loaded serves four products.
func matvecGo(dst []int32, w []int8, x []int16, k int) {
	checkMatvec(dst, w, x, k)
	x = x[:k]
	for r := 0; r < len(dst); r += 4 {
		w0 := w[r*k : r*k+k]
		w1 := w[(r+1)*k : (r+1)*k+k]
		w2 := w[(r+2)*k : (r+2)*k+k]
		w3 := w[(r+3)*k : (r+3)*k+k]
		var s0, s1, s2, s3 int32
		for i, xv := range x {
			v := int32(xv)
			s0 += int32(w0[i]) * v
			s1 += int32(w1[i]) * v
			s2 += int32(w2[i]) * v
			s3 += int32(w3[i]) * v
		}
		dst[r], dst[r+1], dst[r+2], dst[r+3] = s0, s1, s2, s3
	}
}
