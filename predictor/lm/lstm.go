package lm

import (
	"fmt"
	"sync"

	"github.com/lmfs/lmfs/predictor"
)

// Architecture 2, lstm1 (SPEC.md, "Architecture 2: lstm1"): an integer LSTM;
// architecture 3, lstm2 (SPEC.md, "Architecture 3: lstm2"): lstm1 with a
// second input of layer 0, the feature of a match model over the block's
// earlier bytes (match.go).

// Architecture ids of the integer LSTMs.
const (
	ArchLSTM1 = 2 // lstm1
	ArchLSTM2 = 3 // lstm2: lstm1 with the match-model input
)

// Limits of an lstm1 file (SPEC.md, "Model file (arch 2)").
const (
	maxLayers  = 4
	minLSTMH   = 8
	maxLSTMH   = 1024
	tableLen   = 4096 // SIG and TANH entries
	tableOne   = 4096 // 1.0 in SIG and TANH
	maxInBias  = 1 << 20
	bosSymbol  = 256
	zMin, zMax = -2048, 2047
	cellMax    = 1 << 17
)

// lstmNet is a loaded lstm1 model. Matrices are stored row-major with every
// row padded with zeros to hp columns (H rounded up to kAlign). The matrix
// W_l of a layer l >= 1, over [h_{l-1} | h_l], is kept as its two halves:
// the sums over each are computed apart and added, which gives the same
// integers (no partial sum can overflow either) and lets Score compute the
// input half for many positions in a row.
type lstmNet struct {
	nl, h, hp int // layers, hidden width, hidden width padded to kAlign
	sig, tanh *[tableLen]int32
	t0        []int32 // 257 x 4H
	t1        []int16 // NumMatchFeatures x 4H for lstm2; nil for lstm1
	zero      []int32 // max(4H, 256) zeros
	layers    []lstmLayer
	wo        *matrix // 256 x hp
	rqo       rqVec   // output requantisation and bias
	exp       []uint32
	mv        matvecFunc
	mvMany    matvecManyFunc
	rq        requantFunc
	add16     addI16Func
	gateFn    gatesFunc

	bos   lstmState      // the state after step(BOS), where every block starts
	dist0 predictor.Dist // the distribution of byte 0 of every block
	pool  sync.Pool      // *lstmScratch
	mpool sync.Pool      // *Matcher, reset (lstm2's streams)
}

type lstmLayer struct {
	wx       *matrix   // 4H x hp, the columns of W_l over h_{l-1}; nil for layer 0
	wh       *matrix   // 4H x hp, the columns over h_l
	whBlocks []*matrix // wh cut into blocks of rows (for step; see whBlocks)
	rq       rqVec
}

// whBlocks is how many blocks of rows step cuts a wh of rows rows into:
// blocks of two panels of the packed weights where they divide the rows (so
// the blocks share the packed weights: 6 for H = 384), else 8.
func whBlocks(rows int) int {
	if rows%(2*vnniPanel) == 0 {
		return rows / (2 * vnniPanel)
	}
	return 8
}

// lstmState is the state of one block: h of every layer as int16 (values in
// [-127, 127]), layer l at h[l*hp:], the hp-H padding entries always 0; and c
// of every layer, layer l at c[l*H:].
type lstmState struct {
	h []int16
	c []int32
}

type lstmScratch struct {
	acc   []int32          // 4H (and 256 for the head)
	part  []int32          // 4H: the sums over a layer's input half
	z     []int32          // 4H: the gate values of a layer
	rec   []int32          // (NL-1) x 4H: the recurrent-half sums of layers 1.. (see step)
	flip  bool             // the order of the last step (see step)
	seq   []int16          // scoreChunk x hp: one layer's h after each step of a chunk
	pre   []int32          // scoreChunk x 4H: the input-half sums of a chunk
	pre2  []int32          // scoreChunk x 4H: stepMany's input-half sums
	out   []int32          // scoreChunk x 256: the output layer's sums (distMany)
	dsts  [][]int32        // scoreChunk: the destinations of an mvMany
	xs    [][]int16        // scoreChunk: the vectors of an mvMany
	ds    []predictor.Dist // scoreChunk: a chunk's distributions
	st    *lstmState       // Score's state
	in0   []int32          // 4H: T0[x] + T1[f] (lstm2)
	fs    []uint16         // scoreChunk: the match features of a chunk (lstm2)
	match *Matcher         // Score's match model (lstm2)
	logit [256]int32
}

// loadLSTM reads the part of an lstm1 or lstm2 (arch) file after the arch
// field and checks it (SPEC.md: "Load-time checks").
func loadLSTM(r *reader, m *Model, arch int) error {
	name := "lstm1"
	if arch == ArchLSTM2 {
		name = "lstm2"
	}
	nl, h, lf, expLen, tb := r.u32(), r.u32(), r.u32(), r.u32(), r.u32()
	if r.err != nil {
		return r.err
	}
	switch {
	case nl < 1 || nl > maxLayers:
		return fmt.Errorf("%w: %s with %d layers, want 1 to %d", ErrBadModel, name, nl, maxLayers)
	case h < minLSTMH || h > maxLSTMH || h%8 != 0:
		return fmt.Errorf("%w: %s hidden width %d, want a multiple of 8 in [%d, %d]", ErrBadModel, name, h, minLSTMH, maxLSTMH)
	case lf > 16:
		return fmt.Errorf("%w: logit fraction bits %d above 16", ErrBadModel, lf)
	case expLen < 1 || expLen > maxExpLen:
		return fmt.Errorf("%w: exp table length %d not in [1, %d]", ErrBadModel, expLen, maxExpLen)
	case tb != totalBits:
		return fmt.Errorf("%w: frequency total 2^%d, this build codes with 2^%d", ErrBadModel, tb, totalBits)
	}
	if want := lstmFileSize(arch, nl, h, expLen); len(r.b) != want {
		return fmt.Errorf("%w: file of %d bytes, an %s model with %d layers of width %d and %d exp entries has %d: the file is truncated, damaged or of another architecture", ErrBadModel, len(r.b), name, nl, h, expLen, want)
	}
	m.cfg = Config{Arch: arch, Layers: nl, Hidden: h, LogitFrac: lf}
	hp := (h + kAlign - 1) / kAlign * kAlign
	n := &lstmNet{nl: nl, h: h, hp: hp}
	// Read every field first, so that a short file reports truncation before
	// any value check.
	sig, tanh := r.i32s(tableLen), r.i32s(tableLen)
	n.t0 = r.i32s(257 * 4 * h)
	if arch == ArchLSTM2 {
		// T1 has no bound but the i16 range (SPEC.md, "Model file (arch 3)").
		n.t1 = r.i16s(NumMatchFeatures * 4 * h)
	}
	type rawLayer struct {
		w       []int8
		b, m, s []int32
	}
	raw := make([]rawLayer, nl)
	for l := range raw {
		k := h
		if l > 0 {
			k = 2 * h
		}
		raw[l].w = r.i8s(4 * h * k)
		raw[l].b, raw[l].m, raw[l].s = r.i32s(4*h), r.i32s(4*h), r.i32s(4*h)
	}
	wo := r.i8s(256 * h)
	bo, mo, so := r.i32s(256), r.i32s(256), r.i32s(256)
	e := r.i32s(expLen)
	if err := r.end(); err != nil {
		return err
	}

	if err := checkTable("SIG", sig, 0, tableOne); err != nil {
		return err
	}
	if err := checkTable("TANH", tanh, -tableOne, tableOne); err != nil {
		return err
	}
	if err := checkRange("layer-0 input table T0", n.t0, -maxInBias, maxInBias); err != nil {
		return err
	}
	for l, rl := range raw {
		name := fmt.Sprintf("layer %d", l)
		if err := checkWeights(name, rl.w); err != nil {
			return err
		}
		if err := checkRange(name+" bias", rl.b, -maxInBias, maxInBias); err != nil {
			return err
		}
		if err := checkRequant(name, rl.m, rl.s); err != nil {
			return err
		}
	}
	if err := checkWeights("output layer", wo); err != nil {
		return err
	}
	if err := checkRange("output bias", bo, -maxBias, maxBias); err != nil {
		return err
	}
	if err := checkRequant("output layer", mo, so); err != nil {
		return err
	}
	var err error
	if n.exp, err = checkExp(e); err != nil {
		return err
	}

	n.layers = make([]lstmLayer, nl)
	for l, rl := range raw {
		ly := &n.layers[l]
		ly.rq = newRQ(rl.b, rl.m, rl.s)
		if l == 0 {
			ly.wh = newMatrix(padCols(rl.w, 4*h, h, 0, h, hp), 4*h, hp)
		} else {
			ly.wx = newMatrix(padCols(rl.w, 4*h, 2*h, 0, h, hp), 4*h, hp)
			ly.wh = newMatrix(padCols(rl.w, 4*h, 2*h, h, h, hp), 4*h, hp)
			ly.whBlocks = ly.wh.blocks(whBlocks(4 * h))
		}
	}
	n.wo = newMatrix(padCols(wo, 256, h, 0, h, hp), 256, hp)
	n.rqo = newRQ(bo, mo, so)
	n.sig, n.tanh = (*[tableLen]int32)(sig), (*[tableLen]int32)(tanh)
	n.zero = make([]int32, max(4*h, 256))
	k := kernels()[0]
	n.useKernel(&k)
	m.kernel = k.name
	n.initBOS()
	m.lstm = n
	return nil
}

// lstmFileSize is the size of an lstm1 or lstm2 (arch) file with nl layers
// of width h and an exp table of expLen entries.
func lstmFileSize(arch, nl, h, expLen int) int {
	n := len(fileMagic) + 7*4 + 2*tableLen*4 + 257*4*h*4
	if arch == ArchLSTM2 {
		n += NumMatchFeatures * 4 * h * 2
	}
	for l := range nl {
		k := h
		if l > 0 {
			k = 2 * h
		}
		n += 4*h*k + 3*4*h*4
	}
	return n + 256*h + 3*256*4 + expLen*4 + len(endMagic)
}

// padCols returns columns from..from+n-1 of a rows x k matrix as rows of hp
// columns, zero padded.
func padCols(w []int8, rows, k, from, n, hp int) []int8 {
	p := make([]int8, rows*hp)
	for r := range rows {
		copy(p[r*hp:r*hp+n], w[r*k+from:r*k+from+n])
	}
	return p
}

func checkTable(name string, t []int32, lo, hi int32) error {
	for k, v := range t {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %s[%d] = %d, out of [%d, %d]", ErrBadModel, name, k, v, lo, hi)
		}
		if k > 0 && v < t[k-1] {
			return fmt.Errorf("%w: %s[%d] = %d is below %s[%d] = %d (the table must never fall)", ErrBadModel, name, k, v, name, k-1, t[k-1])
		}
	}
	return nil
}

func checkRange(name string, s []int32, lo, hi int32) error {
	for i, v := range s {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %s entry %d = %d, out of [%d, %d]", ErrBadModel, name, i, v, lo, hi)
		}
	}
	return nil
}

func checkWeights(name string, w []int8) error {
	for i, v := range w {
		if v == -128 {
			return fmt.Errorf("%w: %s weight %d is -128 (weights are in [-127, 127])", ErrBadModel, name, i)
		}
	}
	return nil
}

func checkRequant(name string, mul, shift []int32) error {
	for i := range mul {
		if mul[i] < 0 || shift[i] < 1 || shift[i] > 62 {
			return fmt.Errorf("%w: %s row %d requantisation (M %d, S %d) out of range (M in [0, 2^31), S in [1, 62])", ErrBadModel, name, i, mul[i], shift[i])
		}
	}
	return nil
}

// checkExp checks the exp table as SPEC.md asks of both architectures.
func checkExp(e []int32) ([]uint32, error) {
	out := make([]uint32, len(e))
	for i, v := range e {
		if v < 0 || v > maxExp || (i > 0 && uint32(v) > out[i-1]) || (i == 0 && v == 0) {
			return nil, fmt.Errorf("%w: exp table entry %d = %d (entries lie in [0, 2^24], start above 0 and never grow)", ErrBadModel, i, v)
		}
		out[i] = uint32(v)
	}
	return out, nil
}

func (n *lstmNet) params() int {
	p := len(n.t0) + len(n.t1) + 256*n.h + 256
	for l := range n.layers {
		p += n.layerMACs(l) + 4*n.h
	}
	return p
}

func (n *lstmNet) macs() int {
	c := 256 * n.h
	for l := range n.layers {
		c += n.layerMACs(l)
	}
	return c
}

// layerMACs is the size of W_l: 4H x H for layer 0, 4H x 2H above.
func (n *lstmNet) layerMACs(l int) int {
	if l == 0 {
		return 4 * n.h * n.h
	}
	return 8 * n.h * n.h
}
