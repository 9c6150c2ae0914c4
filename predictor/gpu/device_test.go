package gpu_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/gpu"
	"github.com/lmfs/lmfs/predictor/lm"
)

// The tests and benchmarks in this file check the library at the default
// model's size (H = 512, two layers) against the Go reference: on a GPU
// (LMFS_CUDA_LIB set, make test-gpu) they run in full; elsewhere (the CPU
// emulation) the tests use small samples and the benchmarks skip.

// repoRoot is the repository's root: $LMFS_REPO_ROOT (run.sh sets it on a
// GPU machine), else two levels up from this package.
func repoRoot() string {
	if r := os.Getenv("LMFS_REPO_ROOT"); r != "" {
		return r
	}
	return filepath.Join("..", "..")
}

// realData returns n bytes of real text and code: the repository's own
// source and documentation files, concatenated in path order.
func realData(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	root := repoRoot()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != root || d.Name() == "testdata" || d.Name() == "build") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".cu") || strings.HasSuffix(p, ".py")) {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			buf.Write(b)
		}
		if buf.Len() >= n {
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len() == 0 {
		t.Fatal("no source files found to use as data")
	}
	for buf.Len() < n {
		buf.Write(buf.Bytes()[:min(buf.Len(), n-buf.Len())])
	}
	return buf.Bytes()[:n]
}

// split cuts data into count blocks of size bytes (reusing data cyclically).
func split(data []byte, count, size int) [][]byte {
	out := make([][]byte, count)
	for i := range out {
		off := (i * size) % max(1, len(data)-size)
		out[i] = data[off : off+size : off+size]
	}
	return out
}

// goReference returns the Go reference of model file data: predictor/lm
// when it runs this architecture, else the spec transcription of this
// package's tests (slow: only for small samples).
func goReference(t testing.TB, data []byte, spec *specModel) (predictor.ByteModel, string) {
	m, err := lm.Load(data)
	if err == nil {
		return m, "predictor/lm"
	}
	if spec == nil {
		t.Fatalf("predictor/lm does not load the model: %v", err)
	}
	t.Logf("predictor/lm does not load the model (%v): checking against the spec transcription", err)
	return spec, "spec transcription"
}

// TestDefaultShape checks the library at the default model's shape (H = 512,
// two layers; H = 32 in the emulation) against the Go reference, table by table on a sample, and
// codes real data with the GPU and decodes it with the Go reference and the
// reverse, checking every byte.
func TestDefaultShape(t *testing.T) {
	l := testLib(t)
	type model struct {
		name string
		data []byte
		spec *specModel
	}
	var models []model
	if onGPU() {
		models = append(models, model{name: "trained default", data: lm.DefaultFile()})
		data, spec := genModel(42, 2, 512, false)
		models = append(models, model{"random H=512", data, spec})
	} else {
		data, spec := genModel(42, 2, 32, false) // the emulation at full size is too slow for CI
		models = append(models, model{"random H=32", data, spec})
	}
	for _, md := range models {
		t.Run(md.name, func(t *testing.T) { checkModel(t, l, md.data, md.spec) })
	}
}

// checkModel checks the library on one model file against the Go reference.
func checkModel(t *testing.T, l *gpu.Lib, data []byte, spec *specModel) {
	m := openModel(t, l, data)
	ref, refName := goReference(t, data, spec)
	nblk, size := 3, 200 // the spec transcription is slow
	if refName == "predictor/lm" {
		nblk, size = 4, 512
		if onGPU() {
			nblk, size = 16, 4096
		}
	}
	blocks := split(realData(t, 1<<20), nblk, size)
	blocks = append(blocks, []byte{0}, []byte("\r\n\x00\xff"))
	ctx := context.Background()
	t.Logf("reference %s, %d blocks of %d bytes, device %s", refName, nblk, size, m.Device())

	sample := blocks[:2]
	tabs, err := m.Tables(ctx, sample)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = ref.Score(ctx, sample, func(b, pos int, d *predictor.Dist) error {
		if tabs[b][pos] != *d {
			return fmt.Errorf("block %d position %d: the GPU's table differs from the reference", b, pos)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tables identical", n)

	id := coder.ModelID(sha256.Sum256(data))
	gpuLM := coder.NewLMAccel(ref, id, coder.Accel{Backend: m})
	cpuLM := coder.NewByteCodec(coder.IDLM, "lm", id, ref)
	gpuMix := coder.NewLMCMAccel(ref, id, 64<<20, coder.Accel{Backend: m})
	cpuMix := coder.NewLMCMModel(ref, id, 64<<20)
	lens := lensOf(blocks)
	for _, pair := range []struct {
		name     string
		gpu, cpu coder.BatchCodec
	}{{"lm", gpuLM, cpuLM}, {"lm+cm", gpuMix, cpuMix}} {
		t0 := time.Now()
		encG, err := pair.gpu.EncodeBatch(ctx, blocks)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		decC, err := pair.cpu.DecodeBatch(ctx, encG, lens)
		if err != nil {
			t.Fatalf("%s: the reference cannot decode what the GPU coded: %v", pair.name, err)
		}
		t2 := time.Now()
		encC, err := pair.cpu.EncodeBatch(ctx, blocks)
		if err != nil {
			t.Fatal(err)
		}
		t3 := time.Now()
		decG, err := pair.gpu.DecodeBatch(ctx, encC, lens)
		if err != nil {
			t.Fatalf("%s: the GPU cannot decode what the reference coded: %v", pair.name, err)
		}
		t4 := time.Now()
		for i := range blocks {
			if !bytes.Equal(encG[i], encC[i]) {
				t.Fatalf("%s block %d: GPU and reference payloads differ", pair.name, i)
			}
			if !bytes.Equal(decC[i], blocks[i]) || !bytes.Equal(decG[i], blocks[i]) {
				t.Fatalf("%s block %d decoded wrong", pair.name, i)
			}
		}
		t.Logf("%s: GPU encode %v, reference decode %v, reference encode %v, GPU decode %v", pair.name,
			t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), t3.Sub(t2).Round(time.Millisecond), t4.Sub(t3).Round(time.Millisecond))
	}
}

// BenchmarkGPU measures coding throughput on the GPU with the built-in model
// against the number of blocks in flight. Run it on a GPU machine with
// -test.benchtime=1x (make test-gpu does). LMFS_GPU_INFLIGHT (e.g.
// "512,4096,16384") and LMFS_GPU_CODECS (e.g. "lm") choose what it runs. Block length is 2 KiB: the work
// per step grows with the blocks in flight, not with their length, so
// throughput does not depend on it.
func BenchmarkGPU(b *testing.B) {
	if !onGPU() {
		b.Skip("needs a GPU: set " + gpu.EnvLib)
	}
	l := testLib(b)
	m, ref, id := builtinOnGPU(b, l)
	// The codecs measured have no CPU fallback: a GPU failure fails the
	// benchmark at once instead of timing the CPU. The Go model only checks
	// the codecs' sample of each batch.
	refModel := checkOnly{ref}
	var err error
	src := realData(b, 8<<20)
	size := 2048
	ctx := context.Background()
	b.Logf("device %s, %d bytes of GPU state per block in flight (plus 17 bytes per byte of data when encoding); %d bytes free: %d blocks of 64 KiB fit in one encoding call",
		m.Device(), m.BytesPerStream(), m.FreeMemory(), m.MaxBlocks(64<<10))
	inflights := []int{1, 8, 64, 512, 4096}
	if s := os.Getenv("LMFS_GPU_INFLIGHT"); s != "" {
		if inflights, err = intList(s); err != nil {
			b.Fatalf("LMFS_GPU_INFLIGHT=%q: %v", s, err)
		}
	}
	codecs := []string{"lm", "lm+cm"}
	if s := os.Getenv("LMFS_GPU_CODECS"); s != "" {
		codecs = strings.Split(s, ",")
	}
	for _, inflight := range inflights {
		blocks := split(src, inflight, size)
		lens := lensOf(blocks)
		for _, codec := range codecs {
			var c coder.BatchCodec
			a := coder.Accel{Backend: m, MaxBatch: inflight}
			if codec == "lm" {
				c = coder.NewLMAccel(refModel, id, a)
			} else {
				c = coder.NewLMCMAccel(refModel, id, 64<<20, a)
			}
			var enc [][]byte
			b.Run(fmt.Sprintf("encode/%s/inflight=%d", codec, inflight), func(b *testing.B) {
				b.SetBytes(int64(inflight * size))
				for b.Loop() {
					enc, err = c.EncodeBatch(ctx, blocks)
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			if enc == nil {
				continue
			}
			b.Run(fmt.Sprintf("decode/%s/inflight=%d", codec, inflight), func(b *testing.B) {
				b.SetBytes(int64(inflight * size))
				for b.Loop() {
					dec, err := c.DecodeBatch(ctx, enc, lens)
					if err != nil {
						b.Fatal(err)
					}
					if !bytes.Equal(dec[inflight-1], blocks[inflight-1]) {
						b.Fatal("decoded wrong")
					}
				}
			})
		}
	}
	// The Go reference on one core, same model, same data.
	blk := src[:size]
	for _, cpu := range []coder.Codec{coder.NewLM(ref), coder.NewLMCM(ref, 64<<20)} {
		var enc []byte
		b.Run("encode/"+cpu.Name()+"/go-reference-1-core", func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if enc, err = cpu.Encode(ctx, nil, blk); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode/"+cpu.Name()+"/go-reference-1-core", func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := cpu.Decode(ctx, nil, enc, size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// checkOnly is a Go model that scores only the short samples the codecs
// check the GPU's results with: the CPU side of codecs whose every block must
// be coded on the GPU.
type checkOnly struct{ m predictor.ByteModel }

// builtinOnGPU opens the built-in model on l and returns it with its Go
// reference and its model id.
func builtinOnGPU(b *testing.B, l *gpu.Lib) (*gpu.Model, *lm.Model, coder.ModelID) {
	data := lm.DefaultFile()
	m := openModel(b, l, data)
	ref, err := lm.Load(data)
	if err != nil {
		b.Fatal(err)
	}
	return m, ref, coder.ModelID(sha256.Sum256(data))
}

var errNoCPU = errors.New("the GPU failed and the benchmark has no CPU fallback")

func (c checkOnly) Score(ctx context.Context, blocks [][]byte, emit func(b, pos int, d *predictor.Dist) error) error {
	for _, b := range blocks {
		if len(b) > 64 {
			return errNoCPU
		}
	}
	return c.m.Score(ctx, blocks, emit)
}

func (checkOnly) Streams(context.Context, int) (predictor.ByteStreams, error) { return nil, errNoCPU }
