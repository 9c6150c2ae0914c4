package lm

import "fmt"

// The cost of lstm1 is in its matrix-vector products: int8 weights times a
// hidden state in [-127, 127], summed in int32. Every row of a matrix is
// stored padded with zeros to a multiple of kAlign columns and the input
// vector, extended to int16, is padded likewise, so the kernels need no tail
// code. The sums are exact whatever the order of the additions (SPEC.md:
// no row can reach 2^31), so every kernel gives identical results.

// kAlign is the column padding of the stored matrices: one 64-byte vector of
// int8 weights.
const kAlign = 64

// maxCols is the most columns a matrix can have: 2H for the largest H.
const maxCols = 2 * maxLSTMH

// matrix is an int8 matrix as the kernels read it.
type matrix struct {
	w      []int8  // rows x k, row-major
	rows   int     // a multiple of 4
	k      int     // columns, a multiple of kAlign, at most maxCols
	rowsum []int32 // the sum of each row (for kernels that offset the input)
	vnni   []int8  // the weights packed for the panel kernel (packVNNI), or nil
	swar   swarMatrix
}

func newMatrix(w []int8, rows, k int) *matrix {
	if rows%4 != 0 || k%kAlign != 0 || k > maxCols || len(w) != rows*k {
		panic(fmt.Sprintf("lm: matrix of %d x %d from %d weights", rows, k, len(w)))
	}
	m := &matrix{w: w, rows: rows, k: k, rowsum: make([]int32, rows)}
	for r := range rows {
		var s int32
		for _, v := range w[r*k : r*k+k] {
			s += int32(v)
		}
		m.rowsum[r] = s
	}
	if hasVNNIPanel() && rows%vnniGroup == 0 {
		m.vnni = packVNNI(w, rows, k)
	}
	return m
}

// The panel kernel's packing: rows in groups of vnniGroup, groups in panels
// of vnniPanel rows. Within a group, each run of four columns is 64 bytes:
// the four weights of each of the 16 rows, row by row (what one VPDPBUSD
// multiplies by four broadcast inputs). A panel holds its 8 groups' runs
// interleaved (run q of groups 0 to 7, then run q+1, ...), so that the
// kernel reads it in order; the groups after the last whole panel follow,
// one after the other.
const (
	vnniGroup = 16
	vnniPanel = 8 * vnniGroup
)

// packVNNI packs a rows x k matrix (rows a multiple of vnniGroup, k of 4)
// for the panel kernel.
func packVNNI(w []int8, rows, k int) []int8 {
	p := make([]int8, rows*k)
	runs := k / 4
	full := rows / vnniPanel * vnniPanel
	for r := range rows {
		lane := r % vnniGroup
		for c := range k {
			q, b := c/4, c%4
			var off int
			if r < full {
				panel, g := r/vnniPanel, r%vnniPanel/vnniGroup
				off = ((panel*runs+q)*8+g)*64 + lane*4 + b
			} else {
				g := (r - full) / vnniGroup
				off = full*k + (g*runs+q)*64 + lane*4 + b
			}
			p[off] = w[r*k+c]
		}
	}
	return p
}

// blocks cuts m into nb matrices of rows/nb rows each (rows/nb a multiple
// of 4), sharing m's weights.
func (m *matrix) blocks(nb int) []*matrix {
	rb := m.rows / nb
	if rb%4 != 0 || rb*nb != m.rows {
		panic(fmt.Sprintf("lm: %d rows cut into %d blocks", m.rows, nb))
	}
	out := make([]*matrix, nb)
	for i := range out {
		out[i] = &matrix{w: m.w[i*rb*m.k : (i+1)*rb*m.k], rows: rb, k: m.k, rowsum: m.rowsum[i*rb : (i+1)*rb]}
		if m.vnni != nil && rb%vnniPanel == 0 {
			// Whole panels: the block's packed weights are a slice of m's.
			out[i].vnni = m.vnni[i*rb*m.k : (i+1)*rb*m.k]
		}
	}
	return out
}

// matvecFunc sets dst[r] = sum over i < m.k of m.w[r*m.k+i] * x[i] for every
// r < m.rows = len(dst); len(x) >= m.k and every x[i] lies in [-127, 127].
type matvecFunc func(dst []int32, m *matrix, x []int16)

// checkMatvec panics when the arguments break matvecFunc's rules (a bug in
// this package, never a bad model file: the loader pads every matrix).
func checkMatvec(dst []int32, m *matrix, x []int16) {
	if len(dst) != m.rows || len(x) < m.k || len(m.w) < m.rows*m.k || len(m.rowsum) < m.rows {
		panic(fmt.Sprintf("lm: matvec of %d x %d into %d rows from %d inputs", m.rows, m.k, len(dst), len(x)))
	}
}

// matvecGo is the pure-Go kernel: four rows at a time, so each input value
// loaded serves four products.
func matvecGo(dst []int32, m *matrix, x []int16) {
	checkMatvec(dst, m, x)
	k, w := m.k, m.w
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

// addI16Func sets dst[j] = a[j] + b[j] for j < len(dst), a multiple of 8
// (lstm2's T0[x] + T1[f]); len(a) and len(b) are at least len(dst).
type addI16Func func(dst, a []int32, b []int16)

func addI16Go(dst, a []int32, b []int16) {
	a, b = a[:len(dst)], b[:len(dst)]
	for j := range dst {
		dst[j] = a[j] + int32(b[j])
	}
}

// matvecManyFunc sets dst[i] to m times x[i] for every i (as matvecFunc),
// faster than one by one where a kernel reuses each weight it loads.
type matvecManyFunc func(dst [][]int32, m *matrix, x [][]int16)

// many returns k's matvecManyFunc: its own, or mv vector by vector.
func (k *kernel) many() matvecManyFunc {
	if k.mvMany != nil {
		return k.mvMany
	}
	mv := k.mv
	return func(dst [][]int32, m *matrix, x [][]int16) {
		for i := range dst {
			mv(dst[i], m, x[i])
		}
	}
}

// kernel is a named set of the routines that lstm1 and lstm2 run per byte.
type kernel struct {
	name   string
	mv     matvecFunc
	mvMany matvecManyFunc // nil: mv for each vector
	rq     requantFunc
	add16  addI16Func
	gates  gatesFunc
}
