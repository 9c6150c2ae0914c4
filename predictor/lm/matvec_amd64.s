//go:build amd64 && !purego

#include "textflag.h"

// Both kernels work on four rows at a time and, while they sum a group of
// four rows, prefetch the next group (PREFETCHT0): a model of two layers of
// 512 has 3.2 MB of weights, more than a core's L2 cache, and decodes about
// 20% faster so. A prefetch past the last row is harmless (a prefetch never
// faults).

// AVX2: 16 int8 weights are sign-extended to int16 (VPMOVSXBW), multiplied by
// 16 int16 inputs and added in pairs to int32 (VPMADDWD), and accumulated per
// row in a ymm register of eight int32 lanes, summed horizontally at the end
// of the rows.

// func matvecAVX2Asm(dst *int32, w *int8, x *int16, rows, k int)
TEXT ·matvecAVX2Asm(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ rows+24(FP), CX
	MOVQ k+32(FP), R8
	LEAQ (R8)(R8*2), R12 // 3k
	MOVQ R8, R13
	SHLQ $2, R13 // 4k: the stride of a group of four rows
avx2rows:
	TESTQ CX, CX
	JZ avx2done
	LEAQ (SI)(R8*1), R9
	LEAQ (SI)(R8*2), R10
	LEAQ (SI)(R12*1), R11
	LEAQ (SI)(R13*1), R14 // the next group of rows, prefetched
	LEAQ (R14)(R8*1), R15
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	XORQ AX, AX
avx2loop:
	PREFETCHT0 (R14)(AX*1)
	PREFETCHT0 (R15)(AX*1)
	PREFETCHT0 (R14)(R8*2)
	PREFETCHT0 (R15)(R8*2)
	VMOVDQU (DX)(AX*2), Y4
	VMOVDQU 32(DX)(AX*2), Y5
	VPMOVSXBW (SI)(AX*1), Y6
	VPMOVSXBW 16(SI)(AX*1), Y7
	VPMADDWD Y4, Y6, Y6
	VPMADDWD Y5, Y7, Y7
	VPADDD Y6, Y0, Y0
	VPADDD Y7, Y0, Y0
	VPMOVSXBW (R9)(AX*1), Y6
	VPMOVSXBW 16(R9)(AX*1), Y7
	VPMADDWD Y4, Y6, Y6
	VPMADDWD Y5, Y7, Y7
	VPADDD Y6, Y1, Y1
	VPADDD Y7, Y1, Y1
	VPMOVSXBW (R10)(AX*1), Y6
	VPMOVSXBW 16(R10)(AX*1), Y7
	VPMADDWD Y4, Y6, Y6
	VPMADDWD Y5, Y7, Y7
	VPADDD Y6, Y2, Y2
	VPADDD Y7, Y2, Y2
	VPMOVSXBW (R11)(AX*1), Y6
	VPMOVSXBW 16(R11)(AX*1), Y7
	VPMADDWD Y4, Y6, Y6
	VPMADDWD Y5, Y7, Y7
	VPADDD Y6, Y3, Y3
	VPADDD Y7, Y3, Y3
	ADDQ $32, AX
	CMPQ AX, R8
	JB avx2loop
	VPHADDD Y1, Y0, Y0
	VPHADDD Y3, Y2, Y2
	VPHADDD Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD X1, X0, X0
	VMOVDQU X0, (DI)
	ADDQ $16, DI
	ADDQ R13, SI
	SUBQ $4, CX
	JMP avx2rows
avx2done:
	VZEROUPPER
	RET

// AVX-512 VNNI: VPDPBUSD multiplies 64 unsigned bytes by 64 signed bytes and
// adds each four adjacent products to one of 16 int32 lanes, exactly (no
// saturation). The input h in [-127, 127] is first turned into the bytes
// h+128 in [1, 255], in the frame; the sum of w*(h+128) is then the wanted
// sum plus 128 times the sum of the row, which is subtracted at the end. No
// lane can overflow: a row has at most 2048 products of at most 255*127.

// TOBYTES stores the 32 inputs at src + 2*AX (int16 in [-127, 127]) as the
// bytes h+128 at off(BX)(AX*1); Y7 holds 0x80 in every byte.
#define TOBYTES(src, off) \
	VMOVDQU16 (src)(AX*2), Z6; \
	VPMOVWB Z6, Y6; \
	VPXOR Y7, Y6, Y6; \
	VMOVDQU Y6, off(BX)(AX*1)

// func matvecVNNIAsm(dst *int32, w *int8, x *int16, rowsum *int32, rows, k int)
TEXT ·matvecVNNIAsm(SB), 0, $2048-48
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ rows+32(FP), CX
	MOVQ k+40(FP), R8
	// The input as bytes h+128 (h XOR 0x80) in the frame.
	LEAQ 0(SP), BX
	MOVL $0x80808080, AX
	VPBROADCASTD AX, Y7
	XORQ AX, AX
vnnix:
	TOBYTES(DX, 0)
	ADDQ $32, AX
	CMPQ AX, R8
	JB vnnix
	MOVQ rowsum+24(FP), DX
	LEAQ (R8)(R8*2), R12 // 3k
	MOVQ R8, R13
	SHLQ $2, R13 // 4k: the stride of a group of four rows
vnnirows:
	TESTQ CX, CX
	JZ vnnidone
	LEAQ (SI)(R8*1), R9
	LEAQ (SI)(R8*2), R10
	LEAQ (SI)(R12*1), R11
	LEAQ (SI)(R13*1), R14 // the next group of rows, prefetched
	LEAQ (R14)(R8*1), R15
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	XORQ AX, AX
vnniloop:
	PREFETCHT0 (R14)(AX*1)
	PREFETCHT0 (R15)(AX*1)
	PREFETCHT0 (R14)(R8*2)
	PREFETCHT0 (R15)(R8*2)
	VMOVDQU64 (BX)(AX*1), Z4
	VPDPBUSD (SI)(AX*1), Z4, Z0
	VPDPBUSD (R9)(AX*1), Z4, Z1
	VPDPBUSD (R10)(AX*1), Z4, Z2
	VPDPBUSD (R11)(AX*1), Z4, Z3
	ADDQ $64, AX
	CMPQ AX, R8
	JB vnniloop
	VEXTRACTI64X4 $1, Z0, Y5
	VPADDD Y5, Y0, Y0
	VEXTRACTI64X4 $1, Z1, Y5
	VPADDD Y5, Y1, Y1
	VEXTRACTI64X4 $1, Z2, Y5
	VPADDD Y5, Y2, Y2
	VEXTRACTI64X4 $1, Z3, Y5
	VPADDD Y5, Y3, Y3
	VPHADDD Y1, Y0, Y0
	VPHADDD Y3, Y2, Y2
	VPHADDD Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD X1, X0, X0
	// sum of w*(x+128) = sum of w*x + 128*rowsum
	VMOVDQU (DX), X1
	VPSLLD $7, X1, X1
	VPSUBD X1, X0, X0
	VMOVDQU X0, (DI)
	ADDQ $16, DI
	ADDQ $16, DX
	ADDQ R13, SI
	SUBQ $4, CX
	JMP vnnirows
vnnidone:
	VZEROUPPER
	RET

// func requantAVX512(dst, acc, add, m, s, b *int32, half *int64, n int, lo, hi int64)
//
// dst[j] = clamp(((acc[j]*m[j] + half[j]) >> s[j]) + b[j] + add[j], lo, hi)
// for j < n (a multiple of 8), eight 64-bit lanes at a time: VPMULDQ
// multiplies the sign-extended acc by m (in [0, 2^31)) exactly, VPSRAVQ is
// the arithmetic shift.
TEXT ·requantAVX512(SB), NOSPLIT, $0-80
	MOVQ dst+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ add+16(FP), DX
	MOVQ m+24(FP), R8
	MOVQ s+32(FP), R9
	MOVQ b+40(FP), R10
	MOVQ half+48(FP), R11
	MOVQ n+56(FP), CX
	VPBROADCASTQ lo+64(FP), Z28
	VPBROADCASTQ hi+72(FP), Z29
	XORQ AX, AX
rqloop:
	CMPQ AX, CX
	JAE rqdone
	VPMOVSXDQ (SI)(AX*4), Z0
	VPMOVZXDQ (R8)(AX*4), Z1
	VPMULDQ Z1, Z0, Z0
	VPADDQ (R11)(AX*8), Z0, Z0
	VPMOVZXDQ (R9)(AX*4), Z1
	VPSRAVQ Z1, Z0, Z0
	VPMOVSXDQ (R10)(AX*4), Z1
	VPADDQ Z1, Z0, Z0
	VPMOVSXDQ (DX)(AX*4), Z1
	VPADDQ Z1, Z0, Z0
	VPMAXSQ Z28, Z0, Z0
	VPMINSQ Z29, Z0, Z0
	VPMOVQD Z0, (DI)(AX*4)
	ADDQ $8, AX
	JMP rqloop
rqdone:
	VZEROUPPER
	RET

// func addI16AVX2(dst, a *int32, b *int16, n int)
//
// dst[j] = a[j] + b[j] (b sign-extended) for j < n, a multiple of 8: lstm2's
// T0[x] + T1[f], eight lanes at a time.
TEXT ·addI16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	XORQ AX, AX
addloop:
	CMPQ AX, CX
	JAE adddone
	VPMOVSXWD (DX)(AX*2), Y0
	VPADDD (SI)(AX*4), Y0, Y0
	VMOVDQU Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP addloop
adddone:
	VZEROUPPER
	RET

// The panel kernel (AVX-512 VNNI) reads the weights packed for it (see
// packVNNI): one VPDPBUSD takes four adjacent columns of 16 rows, the
// columns' four input bytes broadcast to every lane, so each lane sums one
// row and no horizontal sums are needed. A panel of 128 rows keeps eight
// accumulators (eight independent chains) and streams its weights in order;
// a tail of groups of 16 rows (rows not a multiple of 128) runs one group at
// a time.

// PANELSTORE stores the sums of 16 rows from z at off(DI), less 128 times
// their row sums at off(DX) (the input was offset by 128).
#define PANELSTORE(off, z) \
	VMOVDQU32 off(DX), Z10; \
	VPSLLD $7, Z10, Z10; \
	VPSUBD Z10, z, z; \
	VMOVDQU32 z, off(DI)

// func matvecVNNIPanelAsm(dst *int32, p *int8, x *int16, rowsum *int32, panels, tail, k int)
TEXT ·matvecVNNIPanelAsm(SB), 0, $2048-56
	MOVQ dst+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ k+48(FP), R8
	// The input as bytes h+128 (h XOR 0x80) in the frame.
	LEAQ 0(SP), BX
	MOVL $0x80808080, AX
	VPBROADCASTD AX, Y7
	XORQ AX, AX
panx:
	TOBYTES(DX, 0)
	ADDQ $32, AX
	CMPQ AX, R8
	JB panx
	MOVQ rowsum+24(FP), DX
	MOVQ panels+32(FP), CX
panel:
	TESTQ CX, CX
	JZ tail
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	XORQ AX, AX
panloop:
	VPBROADCASTD (BX)(AX*1), Z8
	VPDPBUSD 0(SI), Z8, Z0
	VPDPBUSD 64(SI), Z8, Z1
	VPDPBUSD 128(SI), Z8, Z2
	VPDPBUSD 192(SI), Z8, Z3
	VPDPBUSD 256(SI), Z8, Z4
	VPDPBUSD 320(SI), Z8, Z5
	VPDPBUSD 384(SI), Z8, Z6
	VPDPBUSD 448(SI), Z8, Z7
	VPBROADCASTD 4(BX)(AX*1), Z9
	VPDPBUSD 512(SI), Z9, Z0
	VPDPBUSD 576(SI), Z9, Z1
	VPDPBUSD 640(SI), Z9, Z2
	VPDPBUSD 704(SI), Z9, Z3
	VPDPBUSD 768(SI), Z9, Z4
	VPDPBUSD 832(SI), Z9, Z5
	VPDPBUSD 896(SI), Z9, Z6
	VPDPBUSD 960(SI), Z9, Z7
	ADDQ $1024, SI
	ADDQ $8, AX
	CMPQ AX, R8
	JB panloop
	// sum of w*(x+128) = sum of w*x + 128*rowsum
	PANELSTORE(0, Z0)
	PANELSTORE(64, Z1)
	PANELSTORE(128, Z2)
	PANELSTORE(192, Z3)
	PANELSTORE(256, Z4)
	PANELSTORE(320, Z5)
	PANELSTORE(384, Z6)
	PANELSTORE(448, Z7)
	ADDQ $512, DI
	ADDQ $512, DX
	DECQ CX
	JMP panel
tail:
	MOVQ tail+40(FP), CX
tailgroup:
	TESTQ CX, CX
	JZ pandone
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	XORQ AX, AX
tailloop:
	VPBROADCASTD (BX)(AX*1), Z8
	VPDPBUSD 0(SI), Z8, Z0
	VPBROADCASTD 4(BX)(AX*1), Z9
	VPDPBUSD 64(SI), Z9, Z1
	VPBROADCASTD 8(BX)(AX*1), Z10
	VPDPBUSD 128(SI), Z10, Z2
	VPBROADCASTD 12(BX)(AX*1), Z11
	VPDPBUSD 192(SI), Z11, Z3
	ADDQ $256, SI
	ADDQ $16, AX
	CMPQ AX, R8
	JB tailloop
	VPADDD Z1, Z0, Z0
	VPADDD Z3, Z2, Z2
	VPADDD Z2, Z0, Z0
	PANELSTORE(0, Z0)
	ADDQ $64, DI
	ADDQ $64, DX
	DECQ CX
	JMP tailgroup
pandone:
	VZEROUPPER
	RET

// The four-vector panel kernel multiplies the packed weights by four input
// vectors at once: each 64-byte run of weights is loaded once (from L2, the
// bound of the one-vector kernel) and used by four VPDPBUSD. A panel runs as
// two halves of four groups; sixteen accumulators (4 groups x 4 vectors).

// P4STORE stores one group's sums of 16 rows for the four vectors (z0 to
// z3) at off(dst_v)(R12*1), less 128 times the rows' sums at off(DX)(R12*1).
#define P4STORE(off, z0, z1, z2, z3) \
	VMOVDQU32 off(DX)(R12*1), Z24; \
	VPSLLD $7, Z24, Z24; \
	VPSUBD Z24, z0, z0; \
	VMOVDQU32 z0, off(DI)(R12*1); \
	VPSUBD Z24, z1, z1; \
	VMOVDQU32 z1, off(R9)(R12*1); \
	VPSUBD Z24, z2, z2; \
	VMOVDQU32 z2, off(R10)(R12*1); \
	VPSUBD Z24, z3, z3; \
	VMOVDQU32 z3, off(R11)(R12*1)

// func matvec4VNNIPanelAsm(dst0, dst1, dst2, dst3 *int32, p *int8, x0, x1, x2, x3 *int16, rowsum *int32, panels, k int)
TEXT ·matvec4VNNIPanelAsm(SB), 0, $8192-96
	MOVQ k+88(FP), R8
	// The inputs as bytes h+128 in the frame, vector v at 2048*v.
	LEAQ 0(SP), BX
	MOVL $0x80808080, AX
	VPBROADCASTD AX, Y7
	MOVQ x0+40(FP), R9
	MOVQ x1+48(FP), R10
	MOVQ x2+56(FP), R11
	MOVQ x3+64(FP), R12
	XORQ AX, AX
p4x:
	TOBYTES(R9, 0)
	TOBYTES(R10, 2048)
	TOBYTES(R11, 4096)
	TOBYTES(R12, 6144)
	ADDQ $32, AX
	CMPQ AX, R8
	JB p4x
	MOVQ p+32(FP), SI
	MOVQ rowsum+72(FP), DX
	MOVQ dst0+0(FP), DI
	MOVQ dst1+8(FP), R9
	MOVQ dst2+16(FP), R10
	MOVQ dst3+24(FP), R11
	MOVQ panels+80(FP), CX
	SHLQ $1, CX // halves
	XORQ R12, R12 // byte offset of the half's first row in dst and rowsum
	MOVQ SI, R13 // the panel's first run
p4half:
	TESTQ CX, CX
	JZ p4done
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	MOVQ R13, SI
	XORQ AX, AX
p4loop:
	VPBROADCASTD (BX)(AX*1), Z16
	VPBROADCASTD 2048(BX)(AX*1), Z17
	VPBROADCASTD 4096(BX)(AX*1), Z18
	VPBROADCASTD 6144(BX)(AX*1), Z19
	VMOVDQU64 0(SI), Z20
	VMOVDQU64 64(SI), Z21
	VMOVDQU64 128(SI), Z22
	VMOVDQU64 192(SI), Z23
	VPDPBUSD Z20, Z16, Z0
	VPDPBUSD Z20, Z17, Z1
	VPDPBUSD Z20, Z18, Z2
	VPDPBUSD Z20, Z19, Z3
	VPDPBUSD Z21, Z16, Z4
	VPDPBUSD Z21, Z17, Z5
	VPDPBUSD Z21, Z18, Z6
	VPDPBUSD Z21, Z19, Z7
	VPDPBUSD Z22, Z16, Z8
	VPDPBUSD Z22, Z17, Z9
	VPDPBUSD Z22, Z18, Z10
	VPDPBUSD Z22, Z19, Z11
	VPDPBUSD Z23, Z16, Z12
	VPDPBUSD Z23, Z17, Z13
	VPDPBUSD Z23, Z18, Z14
	VPDPBUSD Z23, Z19, Z15
	ADDQ $512, SI
	ADDQ $4, AX
	CMPQ AX, R8
	JB p4loop
	P4STORE(0, Z0, Z1, Z2, Z3)
	P4STORE(64, Z4, Z5, Z6, Z7)
	P4STORE(128, Z8, Z9, Z10, Z11)
	P4STORE(192, Z12, Z13, Z14, Z15)
	ADDQ $256, R12
	// The next half: the other four groups of this panel's runs, or the
	// first four of the next panel (which starts where this one's runs
	// end, 512 bytes a run of k/4).
	TESTQ $256, R12
	JNZ p4second
	MOVQ SI, R13
	SUBQ $256, R13
	JMP p4next
p4second:
	ADDQ $256, R13
p4next:
	DECQ CX
	JMP p4half
p4done:
	VZEROUPPER
	RET

// The gate nonlinearities of 16 units at a time (lstm1 and lstm2 "Step"):
// the table lookups as VPGATHERDD, the products in int32 as in Go
// (VPMULLD keeps the low 32 bits), the shifts arithmetic, the clamps
// VPMAXSD/VPMINSD.

// GATELOOKUP sets dst to the entries of the table at tab (SIG or TANH)
// that the 16 sums at R11 select (sum + 2048).
#define GATELOOKUP(tab, k, dst) \
	VMOVDQU32 (R11), Z0; \
	VPADDD Z20, Z0, Z0; \
	VPANDD Z21, Z0, Z0; \
	KXNORW k, k, k; \
	VPGATHERDD (tab)(Z0*4), k, dst

// func gatesAVX512(h *int16, c, z, sig, tanh *int32, n int)
TEXT ·gatesAVX512(SB), NOSPLIT, $0-48
	MOVQ h+0(FP), DI
	MOVQ c+8(FP), SI
	MOVQ z+16(FP), DX
	MOVQ sig+24(FP), R8
	MOVQ tanh+32(FP), R9
	MOVQ n+40(FP), CX
	MOVQ CX, R10
	SHLQ $2, R10 // bytes from one gate's sums to the next's
	MOVL $2048, AX
	VPBROADCASTD AX, Z20
	MOVL $4095, AX
	VPBROADCASTD AX, Z21
	MOVL $-131072, AX
	VPBROADCASTD AX, Z22
	MOVL $131072, AX
	VPBROADCASTD AX, Z23
	MOVL $-2048, AX
	VPBROADCASTD AX, Z24
	MOVL $2047, AX
	VPBROADCASTD AX, Z25
	MOVL $65536, AX
	VPBROADCASTD AX, Z26
	MOVL $-127, AX
	VPBROADCASTD AX, Z27
	MOVL $127, AX
	VPBROADCASTD AX, Z28
	XORQ BX, BX
gateloop:
	LEAQ (DX)(BX*4), R11
	GATELOOKUP(R8, K1, Z1) // ig
	ADDQ R10, R11
	GATELOOKUP(R8, K2, Z2) // fg
	ADDQ R10, R11
	GATELOOKUP(R9, K3, Z3) // gg
	ADDQ R10, R11
	GATELOOKUP(R8, K4, Z4) // og
	// cv = clamp((fg*c + ig*gg + 2048) >> 12, -cellMax, cellMax)
	VMOVDQU32 (SI)(BX*4), Z5
	VPMULLD Z5, Z2, Z5
	VPMULLD Z3, Z1, Z6
	VPADDD Z6, Z5, Z5
	VPADDD Z20, Z5, Z5
	VPSRAD $12, Z5, Z5
	VPMAXSD Z22, Z5, Z5
	VPMINSD Z23, Z5, Z5
	VMOVDQU32 Z5, (SI)(BX*4)
	// tc = TANH[clamp(cv >> 4, zMin, zMax) + 2048]
	VPSRAD $4, Z5, Z6
	VPMAXSD Z24, Z6, Z6
	VPMINSD Z25, Z6, Z6
	VPADDD Z20, Z6, Z6
	VPANDD Z21, Z6, Z6
	KXNORW K5, K5, K5
	VPGATHERDD (R9)(Z6*4), K5, Z7
	// h = clamp((og*tc + 2^16) >> 17, -127, 127)
	VPMULLD Z7, Z4, Z7
	VPADDD Z26, Z7, Z7
	VPSRAD $17, Z7, Z7
	VPMAXSD Z27, Z7, Z7
	VPMINSD Z28, Z7, Z7
	VPMOVDW Z7, Y7
	VMOVDQU Y7, (DI)(BX*2)
	ADDQ $16, BX
	CMPQ BX, CX
	JB gateloop
	VZEROUPPER
	RET
