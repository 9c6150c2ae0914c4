// Package gpu runs the lmfs neural byte model (architectures lstm1 and lstm2
// of predictor/lm/SPEC.md) on an NVIDIA GPU through the CUDA library built from
// lstm1.cu (make cuda), loaded at run time with purego: the Go build never
// needs CUDA or cgo. The library computes the frequency tables of the spec bit
// for bit (integer arithmetic only), for many blocks at once:
//
//   - Model.PathProbs scores whole blocks (encoding) and returns, for every
//     byte, the eight bit-tree probabilities along that byte that the
//     arithmetic coder codes it with (coder/arith.go's symbolP), so the CPU
//     only runs the binary coder, or a mixer (lm+cm) over them.
//   - Model.DecodeLM decodes blocks of codec lm entirely on the GPU (model and
//     arithmetic decoder), one byte of every block per step.
//   - Model.EncodeLMCM and Model.DecodeLMCM code blocks of codec lm+cm
//     entirely on the GPU (cm.cu): the LM, cm (predictor/cm), the lm+cm
//     mixer and the arithmetic coder, one block per GPU thread for cm.
//   - Model.Streams advances many blocks one byte at a time
//     (predictor.ByteStreams), for decoders that mix the LM with other models.
//
// Load fails with a clear error when the library is missing, is not a shared
// library, lacks the symbols or finds no GPU; callers then use the Go
// reference (predictor/lm).
//
// The library's kernels (Model.Device names the ones in use): by default,
// where cuBLAS loads at run time (libcublas.so.13 or .12, or the file
// $LMFS_CUBLAS_LIB) and its int8 GEMMs pass a check against sums computed on
// the host at Open, each layer's gate products are one int8 GEMM with int32
// sums (exact) followed by a gate kernel; else the int8 tensor-core kernels.
// LMFS_CUDA_KERNEL=gemm, mma or dp4a forces one set (gemm fails Open where it
// is not available); LMFS_GEMM_CAT=0 and LMFS_GEMM_CHUNK=N are variants of
// the GEMM path for measurements (predictor/gpu/RESULTS.md). All give the
// same tables bit for bit.
//
// For lstm2 the library runs each block's match model on the GPU (SPEC.md,
// "Match model": a 256 KiB table per block in flight, counted in
// BytesPerStream), updated after every byte by a small kernel, so encoding
// and decoding need no extra round trip; Streams, whose bytes come from the
// host one at a time, compute the features on the host (lm.Matcher) and send
// them with the bytes.
package gpu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/lm"
)

// ABI is the version of the library's C ABI this package calls.
const ABI = 2

// LibName is the file name of the library that make cuda builds.
const LibName = "liblmfs_cuda.so"

// EnvLib names the environment variable that overrides the library path.
const EnvLib = "LMFS_CUDA_LIB"

// ErrUnavailable is wrapped by Load's errors: no usable GPU library or GPU.
var ErrUnavailable = errors.New("CUDA backend unavailable")

// ErrNoDevice is wrapped by Load's error when the library loads but finds no
// usable GPU.
var ErrNoDevice = errors.New("no usable GPU")

// Lib is a loaded CUDA library. It is safe for concurrent use.
type Lib struct {
	path string

	abi          func() int32
	lastError    func() string
	devices      func() int32
	open         func(model unsafe.Pointer, n int64, device int32) uintptr
	free         func(h uintptr)
	name         func(h uintptr, buf unsafe.Pointer, n int32)
	perStream    func(h uintptr) int64
	freeMem      func(h uintptr) int64
	cancel       func(h uintptr, token int64)
	encode       func(h uintptr, nb int32, data, lens, probs unsafe.Pointer, token int64) int32
	tables       func(h uintptr, nb int32, data, lens, tables unsafe.Pointer, token int64) int32
	decode       func(h uintptr, nb int32, pay, payoff, lens, out, bad unsafe.Pointer, token int64) int32
	streamsOpen  func(h uintptr, n int32) uintptr
	streamsPred  func(s uintptr, k int32, ids, tables unsafe.Pointer) int32
	streamsPush  func(s uintptr, k int32, ids, syms, feats unsafe.Pointer) int32
	streamsStep  func(s uintptr, k int32, ids, syms, feats, tables unsafe.Pointer) int32
	streamsClose func(s uintptr)
	lmcmBytes    func(n int64, params, encode int32) int64
	lmcmEncode   func(h uintptr, rule, nb int32, data, lens, params, out, outoff, outlen unsafe.Pointer, sample int32, sprobs unsafe.Pointer, token int64) int32
	lmcmDecode   func(h uintptr, rule, nb int32, pay, payoff, lens, params, out, bad unsafe.Pointer, token int64) int32
	errMu        sync.Mutex // last error is per library: read it under the call's lock
}

// DefaultPath returns where the library is looked for when no path is
// configured: $LMFS_CUDA_LIB if set, else liblmfs_cuda.so next to the
// running binary.
func DefaultPath() string {
	if p := os.Getenv(EnvLib); p != "" {
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return LibName
	}
	return filepath.Join(filepath.Dir(exe), LibName)
}

// Load opens the CUDA library at path and checks its ABI version and that it
// sees at least one GPU. Errors wrap ErrUnavailable and say why.
func Load(path string) (*Lib, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: library %s: %w (build it with make cuda on a machine with nvcc)", ErrUnavailable, path, err)
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a loadable shared library: %v", ErrUnavailable, path, err)
	}
	l := &Lib{path: path}
	syms := []struct {
		name string
		fn   any
	}{
		{"lmfs_cuda_abi", &l.abi}, {"lmfs_cuda_last_error", &l.lastError}, {"lmfs_cuda_devices", &l.devices},
		{"lmfs_cuda_open", &l.open}, {"lmfs_cuda_free", &l.free}, {"lmfs_cuda_name", &l.name},
		{"lmfs_cuda_bytes_per_stream", &l.perStream}, {"lmfs_cuda_free_memory", &l.freeMem}, {"lmfs_cuda_cancel", &l.cancel},
		{"lmfs_cuda_encode", &l.encode}, {"lmfs_cuda_tables", &l.tables}, {"lmfs_cuda_decode", &l.decode},
		{"lmfs_cuda_streams_open", &l.streamsOpen}, {"lmfs_cuda_streams_predict", &l.streamsPred},
		{"lmfs_cuda_streams_push", &l.streamsPush}, {"lmfs_cuda_streams_push_predict", &l.streamsStep},
		{"lmfs_cuda_streams_free", &l.streamsClose},
		{"lmfs_cuda_lmcm_block_bytes", &l.lmcmBytes}, {"lmfs_cuda_lmcm_encode", &l.lmcmEncode}, {"lmfs_cuda_lmcm_decode", &l.lmcmDecode},
	}
	for _, s := range syms {
		p, err := purego.Dlsym(h, s.name)
		if err != nil || p == 0 {
			_ = purego.Dlclose(h)
			return nil, fmt.Errorf("%w: %s has no symbol %s: it is not the lmfs CUDA library (rebuild it with make cuda)", ErrUnavailable, path, s.name)
		}
		purego.RegisterFunc(s.fn, p)
	}
	if v := l.abi(); v != ABI {
		return nil, fmt.Errorf("%w: %s has C ABI %d, this lmfs needs %d (rebuild it with make cuda from this source)", ErrUnavailable, path, v, ABI)
	}
	n := l.devices()
	if n < 0 {
		return nil, fmt.Errorf("%w: %w: %s", ErrUnavailable, ErrNoDevice, l.lastError())
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ErrNoDevice)
	}
	return l, nil
}

// Path returns the file the library was loaded from.
func (l *Lib) Path() string { return l.path }

// Devices returns the number of GPUs the library sees.
func (l *Lib) Devices() int { return int(l.devices()) }

// Model is an lstm1 or lstm2 model resident on one GPU. Its methods are
// safe for concurrent use; the library runs one call at a time per model.
type Model struct {
	lib  *Lib
	h    uintptr
	name string
	arch uint32 // the model file's architecture (2: lstm1, 3: lstm2)
	// matchers holds *lm.Matcher at a block start for lstm2's Streams (a
	// new one is 260 KiB of fresh memory); closed streams give theirs back.
	matchers sync.Pool
	mu       sync.Mutex
	closed   bool
	token    atomic.Int64
	// lmcmCap is the room for an lm+cm stream of an n-byte block (nil:
	// lmcmStreamCap); tests set it lower.
	lmcmCap func(n int64) int64
}

// archLSTM2 is the architecture id of lstm2 (predictor/lm/SPEC.md).
const archLSTM2 = 3

// Open parses the model file data (it must be an lstm1 or lstm2 model) and
// puts it on GPU device.
func (l *Lib) Open(data []byte, device int) (*Model, error) {
	if len(data) == 0 {
		return nil, errors.New("empty model file")
	}
	l.errMu.Lock()
	h := l.open(unsafe.Pointer(&data[0]), int64(len(data)), int32(device))
	var msg string
	if h == 0 {
		msg = l.lastError()
	}
	l.errMu.Unlock()
	if h == 0 {
		return nil, fmt.Errorf("CUDA backend: %s", msg)
	}
	buf := make([]byte, 256)
	l.name(h, unsafe.Pointer(&buf[0]), int32(len(buf)))
	n := 0
	for n < len(buf) && buf[n] != 0 {
		n++
	}
	// The library has checked the header: the architecture is at bytes 12..15.
	return &Model{lib: l, h: h, name: string(buf[:n]), arch: binary.LittleEndian.Uint32(data[12:16])}, nil
}

// Device names the GPU, e.g. "cuda:0 NVIDIA H200".
func (m *Model) Device() string { return m.name }

// BytesPerStream is the GPU memory one block in flight needs for its state
// (for lstm2 with its match model's 256 KiB table); the data of a call needs
// 1 byte per byte more (17 for PathProbs).
func (m *Model) BytesPerStream() int64 { return m.lib.perStream(m.h) }

// FreeMemory returns the free memory of the model's GPU in bytes, or -1
// where the library cannot tell.
func (m *Model) FreeMemory() int64 { return m.lib.freeMem(m.h) }

// MaxBlocks returns how many blocks of blockLen bytes fit on the GPU in one
// encoding call (state, data and bit probabilities) with the memory free now,
// or -1 where unknown.
func (m *Model) MaxBlocks(blockLen int) int64 {
	free := m.FreeMemory()
	if free < 0 {
		return -1
	}
	return free / (m.BytesPerStream() + 17*int64(blockLen))
}

// Close releases the model's GPU memory.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.lib.free(m.h)
	}
	return nil
}

// call runs f (one library call) with cancellation by ctx, and turns its
// return code into an error.
func (m *Model) call(ctx context.Context, what string, f func(token int64) int32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("CUDA model is closed")
	}
	token := m.token.Add(1)
	stop := context.AfterFunc(ctx, func() { m.lib.cancel(m.h, token) })
	m.lib.errMu.Lock()
	rc := f(token)
	var msg string
	if rc != 0 {
		msg = m.lib.lastError()
	}
	m.lib.errMu.Unlock()
	stop()
	switch rc {
	case 0:
		return nil
	case -2:
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.Canceled
	default:
		return fmt.Errorf("CUDA %s on %s: %s", what, m.name, msg)
	}
}

func lens(blocks [][]byte) ([]int64, int64) {
	l := make([]int64, len(blocks))
	var total int64
	for i, b := range blocks {
		l[i] = int64(len(b))
		total += l[i]
	}
	return l, total
}

func concat(blocks [][]byte, total int64) []byte {
	buf := make([]byte, 0, total+1)
	for _, b := range blocks {
		buf = append(buf, b...)
	}
	return buf[: total : total+1]
}

func ptr[T any](s []T) unsafe.Pointer {
	if len(s) == 0 {
		s = s[:cap(s)]
		if len(s) == 0 {
			return nil
		}
	}
	return unsafe.Pointer(&s[0])
}

// PathProbs scores every byte of every block and returns, per block, 8
// probabilities per byte: probs[b][8*t+k] is the probability (scaled by
// 2^16) that bit k (0 = most significant) of byte t of block b is 1, given
// its higher bits, as coder/arith.go's EncodeSymbol computes it from the
// byte's frequency table.
func (m *Model) PathProbs(ctx context.Context, blocks [][]byte) ([][]uint16, error) {
	if len(blocks) == 0 {
		return nil, nil
	}
	l, total := lens(blocks)
	data := concat(blocks, total)
	probs := make([]uint16, 8*total+1)
	err := m.call(ctx, "encode", func(token int64) int32 {
		return m.lib.encode(m.h, int32(len(blocks)), ptr(data), ptr(l), ptr(probs), token)
	})
	if err != nil {
		return nil, err
	}
	out := make([][]uint16, len(blocks))
	var off int64
	for i := range blocks {
		out[i] = probs[8*off : 8*(off+l[i]) : 8*(off+l[i])]
		off += l[i]
	}
	return out, nil
}

// Tables returns the frequency table of every position of every block
// (256 entries per byte: for tests and samples, not for coding).
func (m *Model) Tables(ctx context.Context, blocks [][]byte) ([][]predictor.Dist, error) {
	if len(blocks) == 0 {
		return nil, nil
	}
	l, total := lens(blocks)
	data := concat(blocks, total)
	tabs := make([]predictor.Dist, total+1)
	err := m.call(ctx, "scoring", func(token int64) int32 {
		return m.lib.tables(m.h, int32(len(blocks)), ptr(data), ptr(l), ptr(tabs), token)
	})
	if err != nil {
		return nil, err
	}
	out := make([][]predictor.Dist, len(blocks))
	var off int64
	for i := range blocks {
		out[i] = tabs[off : off+l[i] : off+l[i]]
		off += l[i]
	}
	return out, nil
}

// Score implements predictor.ByteModel with whole tables from the GPU (1 KiB
// per byte to the host: coding uses PathProbs).
func (m *Model) Score(ctx context.Context, blocks [][]byte, emit func(b, pos int, d *predictor.Dist) error) error {
	tabs, err := m.Tables(ctx, blocks)
	if err != nil {
		return err
	}
	for b := range tabs {
		for pos := range tabs[b] {
			if err := emit(b, pos, &tabs[b][pos]); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrBadStream is returned (wrapped, with the block) by DecodeLM for a
// payload that is not a valid stream of its length: the block is corrupt.
var ErrBadStream = errors.New("arithmetic-coded stream is damaged or truncated")

// DecodeLM decodes blocks of codec lm: streams[i] is block i's arithmetic
// coder stream (coder/arith.go) and rawLens[i] its length. A stream that
// does not decode as a valid one of its length gives an error wrapping
// ErrBadStream naming the first such block.
func (m *Model) DecodeLM(ctx context.Context, streams [][]byte, rawLens []int) ([][]byte, error) {
	if len(streams) != len(rawLens) {
		return nil, fmt.Errorf("%d streams but %d lengths", len(streams), len(rawLens))
	}
	if len(streams) == 0 {
		return nil, nil
	}
	l := make([]int64, len(rawLens))
	var total int64
	for i, n := range rawLens {
		if n < 0 || n > 1<<30 {
			return nil, fmt.Errorf("block length %d out of range", n)
		}
		l[i] = int64(n)
		total += l[i]
	}
	pl, ptotal := lens(streams)
	pay := concat(streams, ptotal)
	payoff := make([]int64, len(streams)+1)
	for i, n := range pl {
		payoff[i+1] = payoff[i] + n
	}
	out := make([]byte, total+1)
	bad := make([]int32, len(streams))
	err := m.call(ctx, "decode", func(token int64) int32 {
		return m.lib.decode(m.h, int32(len(streams)), ptr(pay), ptr(payoff), ptr(l), ptr(out), ptr(bad), token)
	})
	if err != nil {
		return nil, err
	}
	res := make([][]byte, len(streams))
	var off int64
	for i := range streams {
		if bad[i] >= 0 {
			return nil, fmt.Errorf("%w: block %d of the batch (%d bytes) goes wrong at byte %d", ErrBadStream, i, rawLens[i], bad[i])
		}
		res[i] = out[off : off+l[i] : off+l[i]]
		off += l[i]
	}
	return res, nil
}

// Streams starts n cold block streams on the GPU (predictor.ByteStreams):
// each Predict and Push is one round trip.
func (m *Model) Streams(ctx context.Context, n int) (predictor.ByteStreams, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("CUDA model is closed")
	}
	m.lib.errMu.Lock()
	s := m.lib.streamsOpen(m.h, int32(n))
	var msg string
	if s == 0 {
		msg = m.lib.lastError()
	}
	m.lib.errMu.Unlock()
	if s == 0 {
		return nil, fmt.Errorf("CUDA streams on %s: %s", m.name, msg)
	}
	st := &streams{m: m, s: s, n: n}
	if m.arch == archLSTM2 {
		st.match = make([]*lm.Matcher, n)
	}
	return st, nil
}

type streams struct {
	m   *Model
	s   uintptr
	n   int
	ids []int32
	// lstm2: each stream's match model (made at its first byte) and the
	// features of the bytes being pushed. A failed push leaves them ahead
	// of the GPU: the streams are then not to be used further.
	match []*lm.Matcher
	feats []uint16
}

// features runs the pushed bytes through their streams' match models
// (lstm2) and returns the features for the library, or nil (lstm1).
func (s *streams) features(syms []byte) unsafe.Pointer {
	if s.match == nil {
		return nil
	}
	s.feats = s.feats[:0]
	for i, id := range s.ids {
		mm := s.match[id]
		if mm == nil {
			if mm, _ = s.m.matchers.Get().(*lm.Matcher); mm == nil {
				mm = lm.NewMatcher()
			}
			s.match[id] = mm
		}
		s.feats = append(s.feats, mm.Push(syms[i]))
	}
	return ptr(s.feats)
}

func (s *streams) setIDs(ids []int) error {
	s.ids = s.ids[:0]
	for _, id := range ids {
		if id < 0 || id >= s.n {
			return fmt.Errorf("stream id %d out of range [0, %d)", id, s.n)
		}
		s.ids = append(s.ids, int32(id))
	}
	return nil
}

func (s *streams) Predict(ctx context.Context, ids []int, dst []predictor.Dist) error {
	if len(dst) != len(ids) {
		return fmt.Errorf("%d ids but %d tables", len(ids), len(dst))
	}
	if err := s.setIDs(ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return s.m.call(ctx, "predict", func(int64) int32 {
		return s.m.lib.streamsPred(s.s, int32(len(ids)), ptr(s.ids), ptr(dst))
	})
}

func (s *streams) Push(ids []int, syms []byte) error {
	if len(syms) != len(ids) {
		return fmt.Errorf("%d ids but %d symbols", len(ids), len(syms))
	}
	if err := s.setIDs(ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	feats := s.features(syms)
	return s.m.call(context.Background(), "step", func(int64) int32 {
		return s.m.lib.streamsPush(s.s, int32(len(ids)), ptr(s.ids), ptr(syms), feats)
	})
}

// PushPredict pushes syms[i] to streams ids[i] and then predicts their next
// byte into dst[i], in one round trip to the GPU (predictor.PushPredicter).
func (s *streams) PushPredict(ctx context.Context, ids []int, syms []byte, dst []predictor.Dist) error {
	if len(syms) != len(ids) || len(dst) != len(ids) {
		return fmt.Errorf("%d ids, %d symbols, %d tables", len(ids), len(syms), len(dst))
	}
	if err := s.setIDs(ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	feats := s.features(syms)
	return s.m.call(ctx, "step", func(int64) int32 {
		return s.m.lib.streamsStep(s.s, int32(len(ids)), ptr(s.ids), ptr(syms), feats, ptr(dst))
	})
}

func (s *streams) Close() error {
	for i, mm := range s.match {
		if mm != nil {
			mm.Reset()
			s.m.matchers.Put(mm)
			s.match[i] = nil
		}
	}
	if s.s != 0 {
		s.m.mu.Lock()
		s.m.lib.streamsClose(s.s)
		s.m.mu.Unlock()
		s.s = 0
	}
	return nil
}
