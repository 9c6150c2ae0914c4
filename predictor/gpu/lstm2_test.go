package gpu_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/gpu"
	"github.com/lmfs/lmfs/predictor/lm"
)

// The tests of architecture 3, lstm2 (predictor/lm/SPEC.md): the library's
// tables, path probabilities, lm and lm+cm payloads and decoders against the
// Go reference (predictor/lm where it loads the model, else the spec
// transcription of ref_test.go with predictor/lm's match features), on
// blocks whose long repeats drive the match model through every length
// bucket, and on short and empty blocks.

// lstm2Blocks returns blocks for the match model: long exact repeats (a
// period-10 pattern: every length bucket up to 256 and beyond), a text that
// repeats a passage far back, zeros, random bytes (no matches), real text
// and code, and the short lengths around the model's 5-byte context.
func lstm2Blocks(t testing.TB, n int) [][]byte {
	rng := rand.New(rand.NewPCG(21, 22))
	real := realData(t, 1<<16)
	rnd := make([]byte, n)
	for i := range rnd {
		rnd[i] = byte(rng.Uint32())
	}
	passage := real[1000 : 1000+n/3]
	far := append(append(append([]byte(nil), passage...), rnd[:n/4]...), passage...)
	mixed := append(append([]byte(nil), real[5000:5000+n/2]...), real[5000:5000+n/2]...)
	return [][]byte{
		[]byte(strings.Repeat("abcdefghij", n/10)),
		far,
		make([]byte, n/2),
		rnd,
		real[20000 : 20000+n],
		mixed,
		{}, {'x'}, []byte("abcd"), []byte("abcde"), []byte("abcdeabcde"), []byte("Hello, Hello, Hello, Hello"),
	}
}

// checkFeatures fails unless the blocks' match features (predictor/lm's)
// include matches, and every length bucket, so that T1 is exercised.
func checkFeatures(t *testing.T, blocks [][]byte) {
	t.Helper()
	var nonzero int
	var buckets [8]int
	for _, b := range blocks {
		for _, f := range lm.MatchFeatures(nil, b) {
			if f != 0 {
				nonzero++
				buckets[(f-1)%8]++
			}
		}
	}
	for k, c := range buckets {
		if c == 0 {
			t.Fatalf("no match feature in length bucket %d (features: %d nonzero, buckets %v): the blocks do not exercise T1", k, nonzero, buckets)
		}
	}
	t.Logf("%d nonzero match features, by length bucket %v", nonzero, buckets)
}

// TestLSTM2TablesMatchSpec compares every table and path probability of the
// library with the Go reference for lstm2 models of several shapes.
func TestLSTM2TablesMatchSpec(t *testing.T) {
	l := testLib(t)
	blocks := lstm2Blocks(t, 700)
	checkFeatures(t, blocks)
	for _, tc := range []struct {
		name string
		nl   int
		h    int
		hot  bool
	}{
		{"nl1_h8", 1, 8, false},
		{"nl2_h16_hot", 2, 16, true},
		{"nl2_h32", 2, 32, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, spec := genModel2(uint64(tc.h*10+tc.nl), tc.nl, tc.h, tc.hot)
			m := openModel(t, l, data)
			if !strings.Contains(m.Device(), "lstm2") {
				t.Errorf("device %q does not say it runs lstm2", m.Device())
			}
			ref, refName := goReference(t, data, spec)
			ctx := context.Background()
			got, err := m.Tables(ctx, blocks)
			if err != nil {
				t.Fatal(err)
			}
			probs, err := m.PathProbs(ctx, blocks)
			if err != nil {
				t.Fatal(err)
			}
			checked := 0
			err = ref.Score(ctx, blocks, func(b, pos int, d *predictor.Dist) error {
				if got[b][pos] != *d {
					return fmt.Errorf("block %d position %d: the library's table differs from the reference (%s)", b, pos, refName)
				}
				if want := symbolPath(d, blocks[b][pos]); [8]uint16(probs[b][8*pos:8*pos+8]) != want {
					return fmt.Errorf("block %d position %d: path probabilities %v, reference %v", b, pos, probs[b][8*pos:8*pos+8], want)
				}
				checked++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if checked != sum(lensOf(blocks)) {
				t.Fatalf("%d positions compared, want %d", checked, sum(lensOf(blocks)))
			}
			t.Logf("%d positions identical (reference %s, %s)", checked, refName, m.Device())
		})
	}
}

// lstm2RefStreams opens a random lstm2 model (2 layers of 16, from seed) on
// the library and in the Go reference, and returns them with lstm2Blocks(t,
// many) and the reference's codec lm streams of those blocks.
func lstm2RefStreams(t *testing.T, seed uint64, many int) (*gpu.Model, predictor.ByteModel, [][]byte, [][]byte) {
	t.Helper()
	l := testLib(t)
	data, spec := genModel2(seed, 2, 16, false)
	m := openModel(t, l, data)
	ref, _ := goReference(t, data, spec)
	blocks := lstm2Blocks(t, many)
	streams, err := coder.EncodeBytes(context.Background(), ref, blocks)
	if err != nil {
		t.Fatal(err)
	}
	return m, ref, blocks, streams
}

// sameBlocks fails t at the first block that what decoded (got) differently
// from the original (want).
func sameBlocks(t *testing.T, got, want [][]byte, what string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s decoded %d blocks, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("block %d (%d bytes) decoded wrong through %s", i, len(want[i]), what)
		}
	}
}

// TestLSTM2DecodeLM decodes, with the library, codec lm streams that the
// reference coded, and reports damaged ones.
func TestLSTM2DecodeLM(t *testing.T) {
	m, _, blocks, streams := lstm2RefStreams(t, 5, 600)
	ctx := context.Background()
	lens := lensOf(blocks)
	got, err := m.DecodeLM(ctx, streams, lens)
	if err != nil {
		t.Fatal(err)
	}
	sameBlocks(t, got, blocks, "DecodeLM")
	bad := append([][]byte(nil), streams...)
	bad[0] = streams[0][:len(streams[0])/2]
	if _, err := m.DecodeLM(ctx, bad, lens); !errors.Is(err, gpu.ErrBadStream) {
		t.Fatalf("truncated stream: error %v, want ErrBadStream", err)
	}
}

// TestLSTM2Streams decodes through the library's streams (the match
// features computed on the host) and encodes with its tables, both against
// the reference's streams.
func TestLSTM2Streams(t *testing.T) {
	m, ref, blocks, streams := lstm2RefStreams(t, 9, 400)
	ctx := context.Background()
	got, err := coder.DecodeBytes(ctx, m, streams, lensOf(blocks))
	if err != nil {
		t.Fatal(err)
	}
	sameBlocks(t, got, blocks, "the library's streams")
	enc, err := coder.EncodeBytes(ctx, m, blocks)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		if !bytes.Equal(enc[i], streams[i]) {
			t.Fatalf("block %d: the library's tables code differently from the reference's", i)
		}
	}
	// PushPredict (one round trip per byte, as lm+cm's decoder uses it),
	// the blocks ending one after another, against the reference's tables.
	want := make([][]predictor.Dist, len(blocks))
	err = ref.Score(ctx, blocks, func(b, pos int, d *predictor.Dist) error {
		want[b] = append(want[b], *d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Streams(ctx, len(blocks))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pp, ok := st.(interface {
		PushPredict(ctx context.Context, ids []int, syms []byte, dst []predictor.Dist) error
	})
	if !ok {
		t.Fatal("the library's streams have no PushPredict")
	}
	var ids []int
	for i, b := range blocks {
		if len(b) > 0 {
			ids = append(ids, i)
		}
	}
	dst := make([]predictor.Dist, len(ids))
	if err := st.Predict(ctx, ids, dst); err != nil {
		t.Fatal(err)
	}
	compared := 0
	for pos := 0; len(ids) > 0; pos++ {
		for j, id := range ids {
			if dst[j] != want[id][pos] {
				t.Fatalf("block %d position %d: the streams' table differs from the reference's", id, pos)
			}
			compared++
		}
		var next []int
		var syms []byte
		for _, id := range ids {
			if pos+1 < len(blocks[id]) {
				next, syms = append(next, id), append(syms, blocks[id][pos])
			}
		}
		ids, dst = next, dst[:len(next)]
		if len(ids) > 0 {
			if err := pp.PushPredict(ctx, ids, syms, dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	if compared != sum(lensOf(blocks)) {
		t.Fatalf("%d tables compared, want %d", compared, sum(lensOf(blocks)))
	}
}

// TestLSTM2LMCM codes blocks with lm+cm (rules 5 and 6) on the library and
// with the Go codec, payload for payload, and decodes each side's payloads
// on the other.
func TestLSTM2LMCM(t *testing.T) {
	l := testLib(t)
	data, spec := genModel2(11, 2, 32, false)
	var blocks [][]byte
	for _, b := range lstm2Blocks(t, 600) {
		if len(b) > 0 { // lm+cm on the GPU codes blocks of at least one byte
			blocks = append(blocks, b)
		}
	}
	checkLMCMMatchesGo(t, l, data, spec, blocks, 1)
}

// TestLSTM2Codecs runs the lm and lm+cm codecs with the library as their
// backend on an lstm2 model against the CPU codecs (checkModel).
func TestLSTM2Codecs(t *testing.T) {
	l := testLib(t)
	h := 32
	if onGPU() {
		h = 512
	}
	data, spec := genModel2(42, 2, h, false)
	checkModel(t, l, data, spec)
}

// TestLSTM2Open checks what Open refuses for architecture 3, and that an
// lstm2 model's memory per block counts its match model.
func TestLSTM2Open(t *testing.T) {
	l := testLib(t)
	good, _ := genModel2(1, 1, 8, false)
	lstm1, _ := genModel(1, 1, 8, false)
	withArch := func(b []byte, arch uint32) []byte {
		c := append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(c[12:], arch)
		return c
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"lstm1 file marked lstm2", withArch(lstm1, 3), "truncated"},
		{"lstm2 file marked lstm1", withArch(good, 2), "bad lm model file"},
		{"truncated T1", good[:len(lstm1)], "truncated"},
		{"trailing", append(append([]byte(nil), good...), 0), "unexpected bytes"},
		{"architecture 4", withArch(good, 4), "architecture 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := l.Open(tc.data, 0)
			if err == nil {
				m.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	m2 := openModel(t, l, good)
	m1 := openModel(t, l, lstm1)
	if d := m2.BytesPerStream() - m1.BytesPerStream(); d != 1<<18+10 {
		t.Fatalf("an lstm2 block in flight takes %d bytes more than an lstm1 one, want %d (match table, pointer, length, feature)", d, 1<<18+10)
	}
}

// TestTinyLSTM2Vectors checks the library against the test vectors of the
// tiny lstm2 model of predictor/lm/testdata (computed by the Python integer
// simulation), where the tree has them.
func TestTinyLSTM2Vectors(t *testing.T) {
	dir := filepath.Join(repoRoot(), "predictor", "lm")
	checkVectors(t, filepath.Join(dir, "testdata", "tiny_lstm2.lmm"), filepath.Join(dir, "testdata", "vectors_lstm2_tiny.json"))
}

// TestLSTM2Cost measures on a GPU what lstm2's match model costs: the same
// random model with and without T1 (2 layers of 384, the shape of the
// built-in lstm1) codes the same blocks (LMFS_LSTM2_COST_BLOCKS of
// LMFS_LSTM2_COST_LEN bytes of real text and code; default 4096 of 1024)
// with lm (PathProbs, then DecodeLM of the streams coded with those
// probabilities) and lm+cm (rule 6), every block decoded back and compared.
// It logs the times; it runs only on a GPU.
func TestLSTM2Cost(t *testing.T) {
	if !onGPU() {
		t.Skip("needs a GPU: set " + gpu.EnvLib)
	}
	l := testLib(t)
	nb, size := 4096, 1024
	if n, err := strconv.Atoi(os.Getenv("LMFS_LSTM2_COST_BLOCKS")); err == nil && n > 0 {
		nb = n
	}
	if n, err := strconv.Atoi(os.Getenv("LMFS_LSTM2_COST_LEN")); err == nil && n > 0 {
		size = n
	}
	blocks := split(realData(t, 4<<20), nb, size)
	lens := lensOf(blocks)
	params := make([]byte, nb)
	pred := cm.New(lmcmMemory)
	for i, b := range blocks {
		params[i] = pred.Params(len(b))
	}
	ctx := context.Background()
	var nonzero int
	for _, b := range blocks {
		for _, f := range lm.MatchFeatures(nil, b) {
			if f != 0 {
				nonzero++
			}
		}
	}
	t.Logf("%d blocks of %d bytes, %.1f%% of the positions with a match", nb, size, 100*float64(nonzero)/float64(nb*(size+1)))
	for _, arch := range []int32{2, 3} {
		data, _ := genModelArch(7, 2, 384, false, arch)
		m := openModel(t, l, data)
		if _, err := m.PathProbs(ctx, blocks[:min(64, nb)]); err != nil { // warm-up
			t.Fatal(err)
		}
		t0 := time.Now()
		probs, err := m.PathProbs(ctx, blocks)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		streams := make([][]byte, nb)
		for i, b := range blocks {
			e := coder.NewEncoder(nil)
			for pos, x := range b {
				for k := range 8 {
					e.EncodeBit(int(x>>(7-k))&1, int(probs[i][8*pos+k]))
				}
			}
			streams[i] = e.Finish()
		}
		t2 := time.Now()
		dec, err := m.DecodeLM(ctx, streams, lens)
		if err != nil {
			t.Fatalf("arch %d: decoding the GPU's own lm streams: %v", arch, err)
		}
		t3 := time.Now()
		for i := range blocks {
			if !bytes.Equal(dec[i], blocks[i]) {
				t.Fatalf("arch %d: block %d decoded wrong", arch, i)
			}
		}
		t4 := time.Now()
		lmcm, _, err := m.EncodeLMCM(ctx, gpu.RuleLMCM, blocks, params, -1)
		if err != nil {
			t.Fatal(err)
		}
		t5 := time.Now()
		dec, bad, err := m.DecodeLMCM(ctx, gpu.RuleLMCM, lmcm, lens, params)
		if err != nil {
			t.Fatal(err)
		}
		t6 := time.Now()
		for i := range blocks {
			if bad[i] || !bytes.Equal(dec[i], blocks[i]) {
				t.Fatalf("arch %d: lm+cm block %d decoded wrong (bad %v)", arch, i, bad[i])
			}
		}
		mb := func(d time.Duration) float64 { return float64(nb*size) / d.Seconds() / 1e6 }
		t.Logf("arch %d (%s): %d bytes per block in flight, %d blocks of 64 KiB fit; lm encode (PathProbs) %v %.2f MB/s, decode %v %.2f MB/s; lm+cm encode %v %.2f MB/s, decode %v %.2f MB/s",
			arch, m.Device(), m.BytesPerStream(), m.MaxBlocks(64<<10), t1.Sub(t0).Round(time.Millisecond), mb(t1.Sub(t0)),
			t3.Sub(t2).Round(time.Millisecond), mb(t3.Sub(t2)), t5.Sub(t4).Round(time.Millisecond), mb(t5.Sub(t4)),
			t6.Sub(t5).Round(time.Millisecond), mb(t6.Sub(t5)))
	}
}

// FuzzLSTM2Open opens damaged lstm2 model files (bytes overwritten at an
// offset, the file cut short): the library must refuse them with an error
// or, where the file is still valid, give valid tables for a block with
// repeats, never crash.
func FuzzLSTM2Open(f *testing.F) {
	good, _ := genModel2(17, 1, 8, false)
	f.Add(uint32(12), []byte{3, 0, 0, 0}, uint32(0))
	f.Add(uint32(12), []byte{2, 0, 0, 0}, uint32(0))
	f.Add(uint32(16), []byte{2, 0, 0, 0}, uint32(0))
	f.Add(uint32(20), []byte{8, 1, 0, 0}, uint32(0))
	f.Add(uint32(40+2*4096*4+257*32*4), []byte{0x00, 0x80, 0xff, 0x7f}, uint32(0))
	f.Add(uint32(0), []byte{}, uint32(len(good)-3))
	f.Fuzz(func(t *testing.T, off uint32, val []byte, cut uint32) {
		l := testLib(t)
		data := append([]byte(nil), good...)
		if int(off) < len(data) {
			copy(data[off:], val)
		}
		if cut > 0 && int(cut) < len(data) {
			data = data[:cut]
		}
		m, err := l.Open(data, 0)
		if err != nil {
			if !strings.Contains(err.Error(), "CUDA backend: ") || len(err.Error()) < 20 {
				t.Fatalf("unclear error %q", err)
			}
			return
		}
		defer m.Close()
		tabs, err := m.Tables(context.Background(), [][]byte{[]byte("abcdefabcdefabcdefabcdef")})
		if err != nil {
			t.Fatal(err)
		}
		for pos, d := range tabs[0] {
			var s uint32
			for _, v := range d {
				if v == 0 {
					t.Fatalf("position %d: a zero frequency", pos)
				}
				s += v
			}
			if s != predictor.FreqTotal {
				t.Fatalf("position %d: frequencies sum to %d", pos, s)
			}
		}
	})
}

// TestLSTM2Trained checks a trained lstm2 model, the file
// $LMFS_LSTM2_MODEL (else the built-in model where it is lstm2), against
// its Python vectors (predictor/lm/testdata/vectors_lstm2.json) and against
// predictor/lm (checkModel: tables, and lm and lm+cm payloads both ways).
// On a GPU only: the emulation is too slow for a trained model.
func TestLSTM2Trained(t *testing.T) {
	if !onGPU() {
		t.Skip("needs a GPU: set " + gpu.EnvLib)
	}
	l := testLib(t)
	dir := filepath.Join(repoRoot(), "predictor", "lm")
	path := os.Getenv("LMFS_LSTM2_MODEL")
	if path == "" {
		path = filepath.Join(dir, "default.lmm")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no model: %v", err)
	}
	if len(data) < 16 || binary.LittleEndian.Uint32(data[12:]) != 3 {
		t.Skipf("%s is not an lstm2 model", path)
	}
	t.Run("vectors", func(t *testing.T) {
		checkVectors(t, path, filepath.Join(dir, "testdata", "vectors_lstm2.json"))
	})
	t.Run("codecs", func(t *testing.T) { checkModel(t, l, data, nil) })
}
