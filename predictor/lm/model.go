// Package lm is the Go reference implementation of the lmfs neural byte
// language model, whose every step is integer arithmetic, as written down in
// SPEC.md next to this file: architecture 1 (wmlp1) is a window MLP,
// architecture 2 (lstm1) an integer LSTM, architecture 3 (lstm2) the same
// LSTM with a match-model input (MatchFeatures). Its frequency tables are the
// contract that every other implementation (the CUDA backend, the Python
// training code's integer simulation) must reproduce bit for bit.
//
// A model is loaded from its file (Load, or Default for the model built into
// lmfs) and is identified by the SHA-256 of that file (Model.ID). A *Model is
// a predictor.ByteModel: Score gives the tables for every position of whole
// blocks (encoding), Streams advances many blocks one byte at a time
// (decoding).
package lm

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Format constants of the model file (SPEC.md, "Model file").
const (
	fileMagic  = "LMFSLM\x00\x01"
	endMagic   = "LMFSEND\x00"
	FileFormat = 1 // model file format version this build reads
	ArchWMLP1  = 1 // architecture id of the window MLP
	pad        = 256
	nrow       = 257
	maxWindow  = 64
	maxHidden  = 4096
	maxOrders  = 8
	maxOrder   = 7
	maxHBits   = 24
	maxExp     = 1 << 24
	maxBias    = 1 << 30
	maxLogit   = 1 << 24
	maxExpLen  = 1 << 16
	totalBits  = 16 // frequencies sum to 1<<16 (predictor.FreqTotal)
)

// ErrBadModel is wrapped by every error about a model file that is not a
// valid lmfs LM model.
var ErrBadModel = errors.New("bad lm model file")

// Config is the shape of a model, read from its file header. Window to
// HashBits describe wmlp1 models, Layers and Hidden lstm1 and lstm2 models;
// the fields of the other architectures are zero.
type Config struct {
	Arch      int   // ArchWMLP1, ArchLSTM1 or ArchLSTM2
	Window    int   // N: bytes of context
	Hidden1   int   // H1: width of the table sum
	Hidden2   int   // H2: width of the second layer
	Orders    []int // orders of the hashed contexts
	HashBits  int   // log2 of the buckets per hashed order
	Layers    int   // NL: LSTM layers
	Hidden    int   // H: LSTM width
	LogitFrac int   // logits are in units of 2^-LogitFrac nats
}

// Model is a loaded model. It is immutable and safe for concurrent use.
type Model struct {
	cfg  Config
	id   [32]byte
	size int

	table      []int8 // rows x H1, rows = N*257 + K<<HashBits
	b1, m1, s1 []int32
	w2t        []int8 // H1 x H2 (transposed: column c of W2 is w2t[c*H2:])
	b2, m2, s2 []int32
	w3t        []int8 // H2 x 256 (transposed)
	b3, m3, s3 []int32
	// Columns packed two outputs to a uint64, table entries offset by 128
	// (see swar.go).
	w2p, w3p []uint64
	tableU   []uint8
	exp      []uint32

	pool sync.Pool // *scratch

	lstm   *lstmNet // set for lstm1 and lstm2 models, which use none of the fields above
	kernel string   // the name of the LSTM's matrix-vector kernel
}

// ID returns the model id: the SHA-256 of the model file.
func (m *Model) ID() [32]byte { return m.id }

// Arch returns the model's architecture: ArchWMLP1, ArchLSTM1 or
// ArchLSTM2 (an lstm1 whose layer 0 also takes the match feature of
// MatchFeatures).
func (m *Model) Arch() int { return m.cfg.Arch }

// Config returns the model's shape.
func (m *Model) Config() Config {
	c := m.cfg
	c.Orders = append([]int(nil), c.Orders...)
	return c
}

// FileSize returns the size of the model file in bytes.
func (m *Model) FileSize() int { return m.size }

// Kernel names the matrix-vector kernel an lstm1 or lstm2 model runs on
// ("avx512vnni", "avx2" or "go": the fastest this machine has); it is empty
// for wmlp1 models.
func (m *Model) Kernel() string { return m.kernel }

// Params returns the number of weights and biases (for lstm1 the input
// table T0 included, for lstm2 also T1).
func (m *Model) Params() int {
	if m.lstm != nil {
		return m.lstm.params()
	}
	return len(m.table) + len(m.w2t) + len(m.w3t) + len(m.b1) + len(m.b2) + len(m.b3)
}

// MACs returns the multiply-accumulates per predicted byte (wmlp1's table
// sum is additions only).
func (m *Model) MACs() int {
	if m.lstm != nil {
		return m.lstm.macs()
	}
	return len(m.w2t) + len(m.w3t)
}

//go:embed default.lmm
var defaultFile []byte

var (
	defaultOnce  sync.Once
	defaultModel *Model
	defaultErr   error
)

// Default returns the model built into lmfs (default.lmm). It is loaded once.
func Default() (*Model, error) {
	defaultOnce.Do(func() { defaultModel, defaultErr = Load(defaultFile) })
	return defaultModel, defaultErr
}

// DefaultFile returns the bytes of the built-in model file (for stores that
// keep a copy of every model their blocks use).
func DefaultFile() []byte { return bytes.Clone(defaultFile) }

// Models that were built into an earlier lmfs release as its default. They
// stay in the binary so that blocks and archives coded with them decode
// without a model file; nothing new is coded with them.
//
//go:embed retired/*.lmm
var retired embed.FS

var (
	builtinOnce sync.Once
	builtinIDs  map[[32]byte]string // model id -> file in retired; "" is the default
)

// BuiltinFile returns a copy of the model file built into lmfs whose model id
// (SHA-256) is id: the default model or a retired earlier default. The ids
// are hashed once.
func BuiltinFile(id [32]byte) ([]byte, bool) {
	builtinOnce.Do(func() {
		builtinIDs = map[[32]byte]string{sha256.Sum256(defaultFile): ""}
		ents, _ := retired.ReadDir("retired")
		for _, e := range ents {
			if b, err := retired.ReadFile("retired/" + e.Name()); err == nil {
				builtinIDs[sha256.Sum256(b)] = "retired/" + e.Name()
			}
		}
	})
	name, ok := builtinIDs[id]
	switch {
	case !ok:
		return nil, false
	case name == "":
		return DefaultFile(), true
	}
	b, err := retired.ReadFile(name)
	return b, err == nil
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("%w: file ends at byte %d, %d more bytes needed (truncated or not a model file)", ErrBadModel, len(r.b), n)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u32() int {
	s := r.take(4)
	if s == nil {
		return 0
	}
	v := binary.LittleEndian.Uint32(s)
	if v > 1<<30 {
		r.err = fmt.Errorf("%w: header value %d at byte %d is out of range", ErrBadModel, v, r.off-4)
		return 0
	}
	return int(v)
}

// end reads the end marker and checks that nothing follows it.
func (r *reader) end() error {
	if string(r.take(len(endMagic))) != endMagic && r.err == nil {
		return fmt.Errorf("%w: end marker missing: the file is damaged", ErrBadModel)
	}
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%w: %d unexpected bytes after the end marker", ErrBadModel, len(r.b)-r.off)
	}
	return nil
}

func (r *reader) i8s(n int) []int8 {
	s := r.take(n)
	if s == nil {
		return nil
	}
	out := make([]int8, n)
	for i, v := range s {
		out[i] = int8(v)
	}
	return out
}

func (r *reader) i16s(n int) []int16 {
	s := r.take(2 * n)
	if s == nil {
		return nil
	}
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(s[2*i:]))
	}
	return out
}

func (r *reader) i32s(n int) []int32 {
	s := r.take(4 * n)
	if s == nil {
		return nil
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(s[4*i:]))
	}
	return out
}

// Load parses a model file of any architecture. It checks the format, the
// version and every value the arithmetic depends on, so a model that loads
// can never overflow or divide by zero; a bad file gives an error wrapping
// ErrBadModel. lstm1 and lstm2 models run on the fastest matrix-vector
// kernel of the machine (see Kernel).
func Load(data []byte) (*Model, error) {
	r := &reader{b: data}
	if string(r.take(len(fileMagic))) != fileMagic {
		return nil, fmt.Errorf("%w: the file does not start with the lmfs model magic", ErrBadModel)
	}
	version, arch := r.u32(), r.u32()
	if r.err == nil && version != FileFormat {
		return nil, fmt.Errorf("%w: model file format %d, this build reads format %d: use the lmfs release that wrote it", ErrBadModel, version, FileFormat)
	}
	if r.err == nil && arch != ArchWMLP1 && arch != ArchLSTM1 && arch != ArchLSTM2 {
		return nil, fmt.Errorf("%w: unknown architecture %d (this build knows %d, wmlp1, %d, lstm1, and %d, lstm2): use a newer lmfs", ErrBadModel, arch, ArchWMLP1, ArchLSTM1, ArchLSTM2)
	}
	if r.err == nil && (arch == ArchLSTM1 || arch == ArchLSTM2) {
		m := &Model{size: len(data)}
		if err := loadLSTM(r, m, arch); err != nil {
			return nil, err
		}
		m.id = sha256.Sum256(data)
		return m, nil
	}
	c := Config{Arch: ArchWMLP1, Window: r.u32(), Hidden1: r.u32(), Hidden2: r.u32()}
	k := r.u32()
	c.HashBits = r.u32()
	c.LogitFrac = r.u32()
	expLen := r.u32()
	tb := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	switch {
	case c.Window < 1 || c.Window > maxWindow:
		return nil, fmt.Errorf("%w: window %d not in [1, %d]", ErrBadModel, c.Window, maxWindow)
	case c.Hidden1 < 1 || c.Hidden1 > maxHidden || c.Hidden2 < 1 || c.Hidden2 > maxHidden:
		return nil, fmt.Errorf("%w: hidden sizes %d, %d not in [1, %d]", ErrBadModel, c.Hidden1, c.Hidden2, maxHidden)
	case k > maxOrders:
		return nil, fmt.Errorf("%w: %d hashed orders, at most %d", ErrBadModel, k, maxOrders)
	case k > 0 && (c.HashBits < 1 || c.HashBits > maxHBits):
		return nil, fmt.Errorf("%w: hash bits %d not in [1, %d]", ErrBadModel, c.HashBits, maxHBits)
	case c.LogitFrac > 16:
		return nil, fmt.Errorf("%w: logit fraction bits %d above 16", ErrBadModel, c.LogitFrac)
	case expLen < 1 || expLen > maxExpLen:
		return nil, fmt.Errorf("%w: exp table length %d not in [1, %d]", ErrBadModel, expLen, maxExpLen)
	case tb != totalBits:
		return nil, fmt.Errorf("%w: frequency total 2^%d, this build codes with 2^%d", ErrBadModel, tb, totalBits)
	}
	for range k {
		o := r.u32()
		if r.err == nil && (o < 1 || o > maxOrder || o > c.Window) {
			return nil, fmt.Errorf("%w: hashed order %d not in [1, min(%d, window)]", ErrBadModel, o, maxOrder)
		}
		c.Orders = append(c.Orders, o)
	}
	if k == 0 {
		c.HashBits = 0
	}
	if r.err != nil {
		return nil, r.err
	}
	H1, H2 := c.Hidden1, c.Hidden2
	rows := c.Window*nrow + k<<c.HashBits
	if rows*H1 > 256<<20 {
		return nil, fmt.Errorf("%w: first-layer table of %d x %d entries is too large", ErrBadModel, rows, H1)
	}
	m := &Model{cfg: c, size: len(data)}
	m.table = r.i8s(rows * H1)
	m.b1, m.m1, m.s1 = r.i32s(H1), r.i32s(H1), r.i32s(H1)
	w2 := r.i8s(H2 * H1)
	m.b2, m.m2, m.s2 = r.i32s(H2), r.i32s(H2), r.i32s(H2)
	w3 := r.i8s(256 * H2)
	m.b3, m.m3, m.s3 = r.i32s(256), r.i32s(256), r.i32s(256)
	e := r.i32s(expLen)
	if err := r.end(); err != nil {
		return nil, err
	}
	for _, v := range m.table {
		if v == -128 {
			return nil, fmt.Errorf("%w: table weight -128 (weights are in [-127, 127])", ErrBadModel)
		}
	}
	for _, l := range [][]int8{w2, w3} {
		for _, v := range l {
			if v == -128 {
				return nil, fmt.Errorf("%w: weight -128 (weights are in [-127, 127])", ErrBadModel)
			}
		}
	}
	for _, g := range []struct {
		name    string
		b, M, S []int32
	}{{"layer 1", m.b1, m.m1, m.s1}, {"layer 2", m.b2, m.m2, m.s2}, {"layer 3", m.b3, m.m3, m.s3}} {
		for i := range g.b {
			if g.b[i] < -maxBias || g.b[i] > maxBias {
				return nil, fmt.Errorf("%w: %s bias %d out of [-2^30, 2^30]", ErrBadModel, g.name, g.b[i])
			}
			if g.M[i] < 0 || g.S[i] < 1 || g.S[i] > 62 {
				return nil, fmt.Errorf("%w: %s requantisation (%d, %d) out of range", ErrBadModel, g.name, g.M[i], g.S[i])
			}
		}
	}
	var err error
	if m.exp, err = checkExp(e); err != nil {
		return nil, err
	}
	m.w2t = transpose(w2, H2, H1)
	m.w3t = transpose(w3, 256, H2)
	m.tableU = make([]uint8, len(m.table))
	for i, v := range m.table {
		m.tableU[i] = uint8(int32(v) + 128)
	}
	m.w2p = pack(m.w2t, H1, H2)
	m.w3p = pack(m.w3t, H2, 256)
	m.id = sha256.Sum256(data)
	return m, nil
}

// transpose turns a rows x cols matrix into cols x rows.
func transpose(w []int8, rows, cols int) []int8 {
	t := make([]int8, len(w))
	for r := range rows {
		for c := range cols {
			t[c*rows+r] = w[r*cols+c]
		}
	}
	return t
}

// LoadVerified loads a model file that is expected to have model id want (for
// example a copy kept in a store under its id). A file whose SHA-256 is not
// want is rejected: it is damaged, or it is another model.
func LoadVerified(data []byte, want [32]byte) (*Model, error) {
	if got := sha256.Sum256(data); got != want {
		return nil, fmt.Errorf("%w: model file hashes to %x, expected model id %x: the copy is damaged or is another model", ErrBadModel, got[:6], want[:6])
	}
	return Load(data)
}
