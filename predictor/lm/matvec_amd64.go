//go:build amd64 && !purego

package lm

import (
	"fmt"

	"golang.org/x/sys/cpu"
)

// kernels returns the matrix-vector kernels this build has for this machine,
// fastest first: AVX-512 VNNI (with the requantisation in AVX-512) and AVX2
// assembly where the CPU has them, and the two pure-Go kernels.
func kernels() []kernel {
	var ks []kernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI {
		ks = append(ks, kernel{"avx512vnni", matvecVNNIPanel, matvecManyVNNIPanel, requantAVX512Go, addI16AVX2Go, gatesAVX512Go})
	}
	if cpu.X86.HasAVX2 {
		ks = append(ks, kernel{"avx2", matvecAVX2, nil, requantGo, addI16AVX2Go, gatesGo})
	}
	return append(ks, kernel{"swar", matvecSWAR, nil, requantGo, addI16Go, gatesGo}, kernel{"go", matvecGo, nil, requantGo, addI16Go, gatesGo})
}

// addI16AVX2Go is addI16Func in AVX2 assembly (matvec_amd64.s).
func addI16AVX2Go(dst, a []int32, b []int16) {
	n := len(dst)
	if n%8 != 0 || len(a) < n || len(b) < n {
		panic(fmt.Sprintf("lm: int16 addition of %d values from %d and %d", n, len(a), len(b)))
	}
	if n > 0 {
		addI16AVX2(&dst[0], &a[0], &b[0], n)
	}
}

//go:noescape
func addI16AVX2(dst, a *int32, b *int16, n int)

// matvecAVX2 is matvecFunc in AVX2 assembly (matvec_amd64.s).
func matvecAVX2(dst []int32, m *matrix, x []int16) {
	checkMatvec(dst, m, x)
	if m.rows > 0 {
		matvecAVX2Asm(&dst[0], &m.w[0], &x[0], m.rows, m.k)
	}
}

// matvecVNNI is matvecFunc in AVX-512 VNNI assembly (matvec_amd64.s).
func matvecVNNI(dst []int32, m *matrix, x []int16) {
	checkMatvec(dst, m, x)
	if m.rows > 0 {
		matvecVNNIAsm(&dst[0], &m.w[0], &x[0], &m.rowsum[0], m.rows, m.k)
	}
}

// matvecAVX2Asm computes rows (a multiple of 4) sums of k (a multiple of 32)
// products each.
//
//go:noescape
func matvecAVX2Asm(dst *int32, w *int8, x *int16, rows, k int)

// matvecVNNIAsm computes rows (a multiple of 4) sums of k (a multiple of 64,
// at most maxCols) products each; rowsum holds the sum of each row.
//
//go:noescape
func matvecVNNIAsm(dst *int32, w *int8, x *int16, rowsum *int32, rows, k int)

// gatesAVX512Go is gatesFunc in AVX-512 assembly for widths that are a
// multiple of 16 (gatesGo otherwise).
func gatesAVX512Go(h []int16, c, z []int32, sig, tanh *[tableLen]int32) {
	n := len(h)
	if n%16 != 0 {
		gatesGo(h, c, z, sig, tanh)
		return
	}
	if len(c) < n || len(z) < 4*n {
		panic(fmt.Sprintf("lm: gates of %d units from %d cells and %d sums", n, len(c), len(z)))
	}
	if n > 0 {
		gatesAVX512(&h[0], &c[0], &z[0], &sig[0], &tanh[0], n)
	}
}

//go:noescape
func gatesAVX512(h *int16, c, z, sig, tanh *int32, n int)

// hasVNNIPanel reports whether this machine runs the panel kernel, so that
// newMatrix packs the weights for it.
func hasVNNIPanel() bool {
	return cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI
}

// matvecVNNIPanel is matvecFunc in AVX-512 VNNI assembly on the weights
// packed by packVNNI; matrices without them (rows not a multiple of 16, or a
// block of rows that does not start a panel) take matvecVNNI.
func matvecVNNIPanel(dst []int32, m *matrix, x []int16) {
	checkMatvec(dst, m, x)
	if m.vnni == nil {
		if m.rows > 0 {
			matvecVNNIAsm(&dst[0], &m.w[0], &x[0], &m.rowsum[0], m.rows, m.k)
		}
		return
	}
	if len(m.vnni) != m.rows*m.k {
		panic(fmt.Sprintf("lm: %d packed weights for %d x %d", len(m.vnni), m.rows, m.k))
	}
	matvecVNNIPanelAsm(&dst[0], &m.vnni[0], &x[0], &m.rowsum[0], m.rows/vnniPanel, m.rows%vnniPanel/vnniGroup, m.k)
}

// matvecManyVNNIPanel is matvecManyFunc with the four-vector panel kernel
// for the vectors in fours, where m has whole panels of packed weights.
func matvecManyVNNIPanel(dst [][]int32, m *matrix, x [][]int16) {
	i := 0
	if m.vnni != nil && m.rows%vnniPanel == 0 {
		for ; i+4 <= len(dst); i += 4 {
			for j := i; j < i+4; j++ {
				checkMatvec(dst[j], m, x[j])
			}
			matvec4VNNIPanelAsm(&dst[i][0], &dst[i+1][0], &dst[i+2][0], &dst[i+3][0], &m.vnni[0],
				&x[i][0], &x[i+1][0], &x[i+2][0], &x[i+3][0], &m.rowsum[0], m.rows/vnniPanel, m.k)
		}
	}
	for ; i < len(dst); i++ {
		matvecVNNIPanel(dst[i], m, x[i])
	}
}

//go:noescape
func matvec4VNNIPanelAsm(dst0, dst1, dst2, dst3 *int32, p *int8, x0, x1, x2, x3 *int16, rowsum *int32, panels, k int)

// matvecVNNIPanelAsm computes panels*128 + tail*16 sums of k (a multiple of
// 64, at most maxCols) products each from weights packed by packVNNI.
//
//go:noescape
func matvecVNNIPanelAsm(dst *int32, p *int8, x *int16, rowsum *int32, panels, tail, k int)

// requantAVX512Go is requantFunc in AVX-512 assembly (matvec_amd64.s).
func requantAVX512Go(dst, acc, add []int32, p *rqVec, lo, hi int64) {
	n := len(dst)
	if n%8 != 0 || len(acc) < n || len(add) < n || len(p.m) < n || len(p.s) < n || len(p.b) < n || len(p.half) < n {
		panic(fmt.Sprintf("lm: requantisation of %d values", n))
	}
	if n > 0 {
		requantAVX512(&dst[0], &acc[0], &add[0], &p.m[0], &p.s[0], &p.b[0], &p.half[0], n, lo, hi)
	}
}

//go:noescape
func requantAVX512(dst, acc, add, m, s, b *int32, half *int64, n int, lo, hi int64)
