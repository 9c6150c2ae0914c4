//go:build amd64 && !purego

package lm

import "golang.org/x/sys/cpu"

// bestMatvec returns the fastest kernel for this machine: AVX2 assembly
// where the CPU has it, else pure Go.
func bestMatvec() (matvecFunc, string) {
	if cpu.X86.HasAVX2 {
		return matvecAVX2, "avx2"
	}
	return matvecGo, "go"
}

// matvecAVX2 is matvecFunc in AVX2 assembly (matvec_amd64.s).
func matvecAVX2(dst []int32, w []int8, x []int16, k int) {
	checkMatvec(dst, w, x, k)
	if len(dst) == 0 {
		return
	}
	matvecAVX2Asm(&dst[0], &w[0], &x[0], len(dst), k)
}

// matvecAVX2Asm computes rows (a multiple of 4) sums of k (a multiple of 16)
// products each; see matvecFunc.
//
//go:noescape
func matvecAVX2Asm(dst *int32, w *int8, x *int16, rows, k int)
