package gpu_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/gpu"
)

const lmcmMemory = 64 << 20

// lmcmRules are the lm+cm codecs the library runs: rule (codec id), the Go
// codec, and the codec with a backend.
var lmcmRules = []struct {
	rule  int
	goC   func(m predictor.ByteModel, id coder.ModelID, mem int64) *coder.LMCM
	accel func(m predictor.ByteModel, id coder.ModelID, mem int64, a coder.Accel) *coder.LMCM
}{
	{gpu.RuleLMCM1, coder.NewLMCM1Model, coder.NewLMCM1Accel},
	{gpu.RuleLMCM2, coder.NewLMCM2Model, coder.NewLMCM2Accel},
	{gpu.RuleLMCM, coder.NewLMCMModel, coder.NewLMCMAccel},
}

// lmcmBlocks returns blocks that exercise every part of cm: text (word
// model), source code and repeats (match model), random bytes, zeros, and
// lengths around the match model's 8 bytes, 1 byte and a few hundred.
func lmcmBlocks(t testing.TB, many int) [][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	real := realData(t, 1<<16)
	rnd := make([]byte, 700)
	for i := range rnd {
		rnd[i] = byte(rng.Uint32())
	}
	blocks := [][]byte{
		real[:600],
		[]byte(strings.Repeat("abcdefghij", 40)),
		rnd,
		make([]byte, 333),
		{'x'}, {0xff, 0}, []byte("12345678"), []byte("123456789"), []byte("Hello, Hello, Hello, Hello"),
		[]byte(strings.Repeat("The Quick brown fox; ÄÖÜ äöü 日本語. ", 12)),
	}
	for i := 0; len(blocks) < many; i++ {
		n := 1 + rng.IntN(500)
		off := rng.IntN(len(real) - n)
		blocks = append(blocks, real[off:off+n])
	}
	return blocks
}

// TestLMCMMatchesGo codes blocks with codec lm+cm on the library (the GPU,
// or its emulation in CI) and with the Go reference, payload for payload,
// and decodes each side's payloads on the other.
func TestLMCMMatchesGo(t *testing.T) {
	l := testLib(t)
	data, spec := genModel(11, 2, 32, false)
	checkLMCMMatchesGo(t, l, data, spec, lmcmBlocks(t, 40), 2)
}

// checkLMCMMatchesGo codes blocks (of at least one byte each) with lm+cm,
// every rule, on the library with model data and with the Go codec on the
// reference, payload for payload; checks that the probabilities the library
// returns for block sample are PathProbs'; and decodes Go's payloads on the
// library.
func checkLMCMMatchesGo(t *testing.T, l *gpu.Lib, data []byte, spec *specModel, blocks [][]byte, sample int) {
	t.Helper()
	m := openModel(t, l, data)
	ref, refName := goReference(t, data, spec)
	ctx := context.Background()
	pred := cm.New(lmcmMemory)
	params := make([]byte, len(blocks))
	lens := lensOf(blocks)
	for i, b := range blocks {
		params[i] = pred.Params(len(b))
	}
	id := coder.ModelID(sha256.Sum256(data))
	for _, r := range lmcmRules {
		t.Run(fmt.Sprint("rule", r.rule), func(t *testing.T) {
			want, err := r.goC(ref, id, lmcmMemory).EncodeBatch(ctx, blocks)
			if err != nil {
				t.Fatal(err)
			}
			streams, sp, err := m.EncodeLMCM(ctx, r.rule, blocks, params, sample)
			if err != nil {
				t.Fatal(err)
			}
			probs, err := m.PathProbs(ctx, blocks[sample:sample+1])
			if err != nil {
				t.Fatal(err)
			}
			if len(sp) != len(probs[0]) || !equalU16(sp, probs[0]) {
				t.Fatalf("sample block's probabilities differ from PathProbs'")
			}
			goStreams := make([][]byte, len(want))
			for i := range blocks {
				if streams[i] == nil {
					t.Fatalf("block %d (%d bytes): no stream from the library", i, len(blocks[i]))
				}
				if want[i][0] != params[i] || !bytes.Equal(want[i][1:], streams[i]) {
					t.Fatalf("block %d (%d bytes): the library's lm+cm stream (%d bytes) differs from Go's (%d bytes, reference %s)",
						i, len(blocks[i]), len(streams[i]), len(want[i])-1, refName)
				}
				goStreams[i] = want[i][1:]
			}
			got, bad, err := m.DecodeLMCM(ctx, r.rule, goStreams, lens, params)
			if err != nil {
				t.Fatal(err)
			}
			for i := range blocks {
				if bad[i] || !bytes.Equal(got[i], blocks[i]) {
					t.Fatalf("block %d: the library decoded Go's payload wrong (bad %v)", i, bad[i])
				}
			}
			t.Logf("%d blocks, %d bytes: payloads identical, decoded (reference %s, %s)", len(blocks), sum(lens), refName, m.Device())
		})
	}
}

// TestLMCMDamaged checks that the library's decoder agrees with Go's on
// damaged payloads: where Go reports an error the library flags the block;
// where Go decodes (damage the coder cannot see), the same bytes.
func TestLMCMDamaged(t *testing.T) {
	l := testLib(t)
	data, spec := genModel(12, 1, 16, false)
	m := openModel(t, l, data)
	ref, _ := goReference(t, data, spec)
	ctx := context.Background()
	var streams [][]byte
	var params []byte
	var lens []int
	for _, r := range lmcmRules {
		goCodec := r.goC(ref, coder.ModelID(sha256.Sum256(data)), lmcmMemory)
		streams, params, lens = nil, nil, nil
		src := lmcmBlocks(t, 0)[:4]
		enc, err := goCodec.EncodeBatch(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(5, 6))
		for i, p := range enc {
			s := p[1:]
			flip := append([]byte(nil), s...)
			flip[rng.IntN(len(flip))] ^= 0x10
			garbage := make([]byte, len(s))
			for j := range garbage {
				garbage[j] = byte(rng.Uint32())
			}
			for _, d := range [][]byte{s[:len(s)/2], s[:0], append(append([]byte(nil), s...), 7, 7), flip, garbage, {0xff}} {
				streams, params, lens = append(streams, d), append(params, p[0]), append(lens, len(src[i]))
			}
			// a longer block than coded
			streams, params, lens = append(streams, s), append(params, p[0]), append(lens, len(src[i])+9)
		}
		got, bad, err := m.DecodeLMCM(ctx, r.rule, streams, lens, params)
		if err != nil {
			t.Fatal(err)
		}
		nbad := 0
		for i := range streams {
			payload := append([]byte{params[i]}, streams[i]...)
			goOut, goErr := goCodec.Decode(ctx, nil, payload, lens[i])
			if (goErr != nil) != bad[i] {
				t.Fatalf("damaged stream %d: Go's error %v, library flags it %v", i, goErr, bad[i])
			}
			if goErr == nil && !bytes.Equal(goOut, got[i]) {
				t.Fatalf("damaged stream %d: Go and the library decode it to different bytes", i)
			}
			if bad[i] {
				nbad++
			}
		}
		if nbad < len(src) {
			t.Fatalf("only %d of %d damaged streams flagged", nbad, len(streams))
		}
	}
	// Calls the library refuses are errors, not crashes.
	if _, _, err := m.DecodeLMCM(ctx, gpu.RuleLMCM2, streams[:1], lens[:1], []byte{9}); err == nil {
		t.Fatal("parameter byte 9 accepted")
	}
	if _, _, err := m.DecodeLMCM(ctx, 8, streams[:1], lens[:1], params[:1]); err == nil {
		t.Fatal("rule 8 accepted")
	}
	if _, _, err := m.EncodeLMCM(ctx, gpu.RuleLMCM2, [][]byte{{}}, []byte{10}, 0); err == nil {
		t.Fatal("empty block accepted")
	}
}

// TestLMCMCodec checks the lm+cm codec with the library as its backend:
// payloads as the Go codec's, decoded both ways, a damaged payload an error
// naming its block.
func TestLMCMCodec(t *testing.T) {
	l := testLib(t)
	data, spec := genModel(13, 2, 16, false)
	m := openModel(t, l, data)
	ref, _ := goReference(t, data, spec)
	id := coder.ModelID(sha256.Sum256(data))
	for _, r := range lmcmRules {
		goCodec := r.goC(ref, id, lmcmMemory)
		gpuCodec := r.accel(ref, id, lmcmMemory, coder.Accel{Backend: m, MaxBatch: 16})
		ctx := context.Background()
		blocks := lmcmBlocks(t, 24)
		blocks = append(blocks, []byte{}, bytes.Repeat([]byte{0x55, 0xaa}, 8))
		lens := lensOf(blocks)
		want, err := goCodec.EncodeBatch(ctx, blocks)
		if err != nil {
			t.Fatal(err)
		}
		got, err := gpuCodec.EncodeBatch(ctx, blocks)
		if err != nil {
			t.Fatal(err)
		}
		for i := range blocks {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("block %d: payloads differ", i)
			}
		}
		dec, err := gpuCodec.DecodeBatch(ctx, want, lens)
		if err != nil {
			t.Fatal(err)
		}
		for i := range blocks {
			if !bytes.Equal(dec[i], blocks[i]) {
				t.Fatalf("block %d decoded wrong", i)
			}
		}
		bad := append([][]byte(nil), want...)
		bad[0] = bad[0][:len(bad[0])/2]
		if _, err := gpuCodec.DecodeBatch(ctx, bad, lens); !errors.Is(err, coder.ErrCorrupt) || !strings.Contains(err.Error(), "block 0 ") {
			t.Fatalf("truncated payload of block 0: %v, want ErrCorrupt naming block 0", err)
		}
	}
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sum(v []int) int {
	s := 0
	for _, x := range v {
		s += x
	}
	return s
}

// TestLMCMOverflow checks blocks whose stream outgrows the room the library
// is given (set to half the block here: random bytes). The library reports
// them (no stream), and the codec codes them as the Go codec does.
func TestLMCMOverflow(t *testing.T) {
	l := testLib(t)
	data, spec := genModel(14, 1, 16, false)
	m, err := l.Open(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gpu.SetLMCMStreamCap(m, func(n int64) int64 { return n / 2 })
	ref, _ := goReference(t, data, spec)
	id := coder.ModelID(sha256.Sum256(data))
	rng := rand.New(rand.NewPCG(7, 8))
	blocks := lmcmBlocks(t, 0)[1:2] // repeats: they fit
	for range 3 {
		b := make([]byte, 100)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		blocks = append(blocks, b)
	}
	ctx := context.Background()
	pred := cm.New(lmcmMemory)
	params := make([]byte, len(blocks))
	for i, b := range blocks {
		params[i] = pred.Params(len(b))
	}
	streams, _, err := m.EncodeLMCM(ctx, gpu.RuleLMCM2, blocks, params, -1)
	if err != nil {
		t.Fatal(err)
	}
	if streams[0] == nil {
		t.Fatal("the compressible block got no stream")
	}
	for i := 1; i < len(blocks); i++ {
		if streams[i] != nil {
			t.Fatalf("random block %d: a stream of %d bytes in a room of %d", i, len(streams[i]), len(blocks[i])/2)
		}
	}
	want, err := coder.NewLMCMModel(ref, id, lmcmMemory).EncodeBatch(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	got, err := coder.NewLMCMAccel(ref, id, lmcmMemory, coder.Accel{Backend: m}).EncodeBatch(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blocks {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("block %d: payloads differ", i)
		}
	}
}

// FuzzLMCMDecode decodes arbitrary lm+cm streams with the library (its
// emulation in CI) and with Go: both must agree, the library flagging exactly
// the streams Go rejects and decoding the others to Go's bytes, and never
// crash.
func FuzzLMCMDecode(f *testing.F) {
	l := testLib(f)
	data, spec := genModel(15, 1, 8, false)
	m := openModel(f, l, data)
	ref, _ := goReference(f, data, spec)
	id := coder.ModelID(sha256.Sum256(data))
	pred := cm.New(lmcmMemory)
	for _, r := range lmcmRules {
		for _, src := range [][]byte{[]byte("hello, hello, hello"), {0}, []byte("0123456789abcdef0123456789")} {
			p, err := r.goC(ref, id, lmcmMemory).Encode(context.Background(), nil, src)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(byte(r.rule), p, uint8(len(src)))
		}
	}
	f.Fuzz(func(t *testing.T, rule byte, payload []byte, n uint8) {
		if len(payload) < 1 || n == 0 || n > 48 {
			return
		}
		r := lmcmRules[int(rule)%len(lmcmRules)]
		goC := r.goC(ref, id, lmcmMemory)
		want, goErr := goC.Decode(context.Background(), nil, payload, int(n))
		if pred.Check(payload[0]) != nil {
			return // the codec rejects the parameter byte before the library sees it
		}
		got, bad, err := m.DecodeLMCM(context.Background(), r.rule, [][]byte{payload[1:]}, []int{int(n)}, payload[:1])
		if err != nil {
			t.Fatal(err)
		}
		if (goErr != nil) != bad[0] {
			t.Fatalf("Go's error %v, library flags the stream %v", goErr, bad[0])
		}
		if goErr == nil && !bytes.Equal(got[0], want) {
			t.Fatal("Go and the library decode the stream to different bytes")
		}
	})
}
