package gpu_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/gpu"
	"github.com/lmfs/lmfs/predictor/lm"
)

// EnvCorpusSample names a folder of files (a sample of the public benchmark
// corpus) that TestLMCMCorpus codes on the GPU.
const EnvCorpusSample = "LMFS_CORPUS_SAMPLE"

// TestLMCMCorpus codes blocks of the files in $LMFS_CORPUS_SAMPLE with codec
// lm+cm and the built-in model on the GPU (all of it: LM, cm, mixer, coder)
// and decodes them with the Go reference, and the reverse, checking every
// payload and every byte, 2 blocks of 16 KiB ($LMFS_CORPUS_BLOCK bytes) per
// file. It needs a GPU and the folder (run.sh gets both).
func TestLMCMCorpus(t *testing.T) {
	dir := os.Getenv(EnvCorpusSample)
	if dir == "" || !onGPU() {
		t.Skip("needs a GPU (" + gpu.EnvLib + ") and a corpus sample ($" + EnvCorpusSample + ")")
	}
	l := testLib(t)
	data := lm.DefaultFile()
	m := openModel(t, l, data)
	ref, err := lm.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	size, per := 16<<10, 2
	if v, err := strconv.Atoi(os.Getenv("LMFS_CORPUS_BLOCK")); err == nil && v > 0 {
		size = v // smaller blocks for a quick run
	}
	var blocks [][]byte
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < per && k*size < len(b); k++ {
			blocks = append(blocks, b[k*size:min(len(b), (k+1)*size)])
			names = append(names, e.Name())
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("no files in %s", dir)
	}
	id := coder.ModelID(sha256.Sum256(data))
	gpuCodec := coder.NewLMCMAccel(checkOnly{ref}, id, lmcmMemory, coder.Accel{Backend: m, MaxBatch: len(blocks)})
	goCodec := coder.NewLMCMModel(ref, id, lmcmMemory)
	lens := make([]int, len(blocks))
	total := 0
	for i, b := range blocks {
		lens[i] = len(b)
		total += len(b)
	}
	ctx := context.Background()
	t0 := time.Now()
	encG, err := gpuCodec.EncodeBatch(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	decC, err := goCodec.DecodeBatch(ctx, encG, lens)
	if err != nil {
		t.Fatalf("the Go reference cannot decode what the GPU coded: %v", err)
	}
	t2 := time.Now()
	encC, err := goCodec.EncodeBatch(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	t3 := time.Now()
	decG, err := gpuCodec.DecodeBatch(ctx, encC, lens)
	if err != nil {
		t.Fatalf("the GPU cannot decode what the Go reference coded: %v", err)
	}
	t4 := time.Now()
	bits := map[string][2]int{}
	for i := range blocks {
		if !bytes.Equal(encG[i], encC[i]) {
			t.Fatalf("block %d (%s): GPU and Go payloads differ", i, names[i])
		}
		if !bytes.Equal(decC[i], blocks[i]) || !bytes.Equal(decG[i], blocks[i]) {
			t.Fatalf("block %d (%s) decoded wrong", i, names[i])
		}
		v := bits[names[i]]
		bits[names[i]] = [2]int{v[0] + 8*len(encG[i]), v[1] + len(blocks[i])}
	}
	var sum []string
	for n, v := range bits {
		sum = append(sum, fmt.Sprintf("%s %.3f", n, float64(v[0])/float64(v[1])))
	}
	sort.Strings(sum)
	t.Logf("%d blocks, %d bytes, every payload identical and every byte decoded both ways; GPU encode %v, Go decode %v, Go encode %v, GPU decode %v",
		len(blocks), total, t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), t3.Sub(t2).Round(time.Millisecond), t4.Sub(t3).Round(time.Millisecond))
	t.Logf("bits per byte (lm+cm, built-in model): %s", strings.Join(sum, ", "))
}

// lmOnly hides a backend's LMCMBackend methods: the lm+cm codec then runs
// only the LM on the GPU and cm, the mixer and the coder on the CPU cores
// (the path before cm.cu), for comparison.
type lmOnly struct{ coder.LMBackend }

// benchPlan parses $LMFS_LMCM_BENCH: "SIZE:N,N,...;SIZE:..." with SIZE in
// bytes, optionally prefixed by "cpu" (lm+cm with cm on the CPU cores),
// "lm" (codec lm: the LM alone, for comparison), "id6" (the superseded
// lm+cm.2, codec id 6, with the same model), "auto" (lm+cm as lmfs
// registers it: batches of at most coder.SmallOnCPU blocks on the CPU),
// "go" (lm+cm on the CPU cores alone, the Go reference), "lmauto" (codec lm
// as lmfs registers it) or "lmgo" (codec lm on the CPU cores alone).
func benchPlan(s string) (plan []struct {
	path     string
	size     int
	inflight []int
}, err error) {
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("%q: want SIZE:N,N", part)
		}
		path := "gpu"
		for _, p := range []string{"lmauto", "lmgo", "cpu", "lm", "id6", "auto", "go"} {
			if strings.HasPrefix(k, p) {
				path, k = p, strings.TrimPrefix(k, p)
				break
			}
		}
		size, err := strconv.Atoi(k)
		if err != nil {
			return nil, err
		}
		var ns []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, err
			}
			ns = append(ns, n)
		}
		plan = append(plan, struct {
			path     string
			size     int
			inflight []int
		}{path, size, ns})
	}
	return plan, nil
}

// BenchmarkLMCM measures codec lm+cm with the built-in model on the GPU
// against the blocks in flight, at 2 KiB and 64 KiB blocks: all of it on the
// GPU ("lm+cm/gpu", cm.cu) and, in the same run, the LM on the GPU with cm,
// the mixer and the coder on the CPU cores ("lm+cm/cpu-cm"), and codec lm
// alone ("lm/gpu"). $LMFS_LMCM_BENCH sets the plan (see benchPlan). Run with
// -test.benchtime 1x on a GPU machine.
func BenchmarkLMCM(b *testing.B) {
	if !onGPU() {
		b.Skip("needs a GPU: set " + gpu.EnvLib)
	}
	spec := os.Getenv("LMFS_LMCM_BENCH")
	if spec == "" {
		spec = "2048:1,8,64,512,4096;cpu2048:1,8,64,512,4096;65536:1,64,512,4096"
	}
	plan, err := benchPlan(spec)
	if err != nil {
		b.Fatal(err)
	}
	l := testLib(b)
	m, ref, id := builtinOnGPU(b, l)
	refModel := checkOnly{ref}
	src := realData(b, 32<<20)
	ctx := context.Background()
	pred := cm.New(lmcmMemory)
	for _, size := range []int{2048, 65536} {
		p := pred.Params(size)
		b.Logf("device %s: lm+cm at %d-byte blocks needs %d bytes of GPU memory per block to encode, %d to decode; %d bytes free: %d blocks fit in an encoding call, %d in a decoding call",
			m.Device(), size, m.LMCMBlockBytes(size, p, true), m.LMCMBlockBytes(size, p, false), m.FreeMemory(),
			m.MaxLMCMBlocks(size, p, true), m.MaxLMCMBlocks(size, p, false))
	}
	b.Logf("the Go reference runs on kernel %s; lmfs codes batches of up to %d blocks of lm or lm+cm on the CPU", ref.Kernel(), coder.SmallOnCPU(ref))
	for _, pl := range plan {
		for _, inflight := range pl.inflight {
			blocks := split(src, inflight, pl.size)
			lens := lensOf(blocks)
			var c coder.BatchCodec
			path := "lm+cm/gpu"
			switch pl.path {
			case "cpu":
				path = "lm+cm/cpu-cm"
				c = coder.NewLMCMAccel(refModel, id, lmcmMemory, coder.Accel{Backend: lmOnly{m}, MaxBatch: inflight})
			case "lm":
				path = "lm/gpu"
				c = coder.NewLMAccel(refModel, id, coder.Accel{Backend: m, MaxBatch: inflight})
			case "auto":
				path = "lm+cm/auto"
				c = coder.NewLMCMAccel(ref, id, lmcmMemory, coder.Accel{Backend: m, MaxBatch: inflight, SmallOnCPU: coder.SmallOnCPU(ref)})
			case "go":
				path = "lm+cm/go"
				c = coder.NewLMCMModel(ref, id, lmcmMemory)
			case "lmauto":
				path = "lm/auto"
				c = coder.NewLMAccel(ref, id, coder.Accel{Backend: m, MaxBatch: inflight, SmallOnCPU: coder.SmallOnCPU(ref)})
			case "lmgo":
				path = "lm/go"
				c = coder.NewLM(ref)
			case "id6":
				path = "lm+cm.2/gpu"
				c = coder.NewLMCM2Accel(refModel, id, lmcmMemory, coder.Accel{Backend: m, MaxBatch: inflight})
			default:
				c = coder.NewLMCMAccel(refModel, id, lmcmMemory, coder.Accel{Backend: m, MaxBatch: inflight})
			}
			var enc [][]byte
			name := fmt.Sprintf("%s/size=%d/inflight=%d", path, pl.size, inflight)
			b.Run("encode/"+name, func(b *testing.B) {
				b.SetBytes(int64(inflight * pl.size))
				for b.Loop() {
					if enc, err = c.EncodeBatch(ctx, blocks); err != nil {
						b.Fatal(err)
					}
				}
				n := 0
				for _, e := range enc {
					n += len(e)
				}
				b.ReportMetric(8*float64(n)/float64(inflight*pl.size), "bpb")
			})
			if enc == nil {
				continue
			}
			b.Run("decode/"+name, func(b *testing.B) {
				b.SetBytes(int64(inflight * pl.size))
				for b.Loop() {
					dec, err := c.DecodeBatch(ctx, enc, lens)
					if err != nil {
						b.Fatal(err)
					}
					for i := range dec {
						if !bytes.Equal(dec[i], blocks[i]) {
							b.Fatalf("block %d decoded wrong", i)
						}
					}
				}
			})
		}
	}
}
