package gpu_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor/gpu"
	"github.com/lmfs/lmfs/predictor/lm"
)

// TestKernelVariantOption checks LMFS_CUDA_KERNEL: an unknown name is
// refused at open, and in a build without the GEMM path (the emulation)
// asking for gemm is refused with the reason.
func TestKernelVariantOption(t *testing.T) {
	l := testLib(t)
	data, _ := genModel(3, 1, 32, false)
	t.Setenv("LMFS_CUDA_KERNEL", "fastest")
	if m, err := l.Open(data, 0); err == nil {
		m.Close()
		t.Fatal("LMFS_CUDA_KERNEL=fastest: open succeeded, want an error")
	} else if !strings.Contains(err.Error(), "gemm, mma or dp4a") {
		t.Fatalf("LMFS_CUDA_KERNEL=fastest: error %q does not name the choices", err)
	}
	if onGPU() {
		return
	}
	t.Setenv("LMFS_CUDA_KERNEL", "gemm")
	if m, err := l.Open(data, 0); err == nil {
		m.Close()
		t.Fatal("emulation with LMFS_CUDA_KERNEL=gemm: open succeeded, want an error")
	} else if !strings.Contains(err.Error(), "no GEMM path") {
		t.Fatalf("emulation with LMFS_CUDA_KERNEL=gemm: error %q does not say why", err)
	}
}

// TestKernelsAgree runs the built-in model with every kernel variant (gemm
// with and without LMFS_GEMM_CAT and LMFS_GEMM_CHUNK, mma, dp4a) on a GPU over thousands of streams of varied lengths, so that
// the active streams shrink step by step, and checks that encoding
// probabilities, batch decoding and stepwise decoding (Streams, whose ids
// stop being a prefix as blocks end) agree with the plain dp4a kernels
// position by position. (The variants against the Go reference: the other
// tests, run once per variant by run.sh.)
func TestKernelsAgree(t *testing.T) {
	if !onGPU() {
		t.Skip("needs a GPU: set " + gpu.EnvLib)
	}
	l := testLib(t)
	data := lm.DefaultFile()
	ref, err := lm.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	src := realData(t, 1<<20)
	const nb = 3001
	blocks := make([][]byte, nb)
	lens := make([]int, nb)
	for i := range blocks {
		n := (i * 7) % 45
		off := (i * 977) % (len(src) - 64)
		blocks[i] = src[off : off+n : off+n]
		lens[i] = n
	}
	ctx := context.Background()
	// kernel: a variant name, with the GEMM path's options: "+cat" (one GEMM
	// per layer), "+chunk=N" (N streams per GEMM; default: none).
	open := func(kernel string) *gpu.Model {
		parts := strings.Split(kernel, "+")
		t.Setenv("LMFS_CUDA_KERNEL", parts[0])
		t.Setenv("LMFS_GEMM_CAT", "0")
		t.Setenv("LMFS_GEMM_CHUNK", "0")
		for _, o := range parts[1:] {
			if o == "cat" {
				t.Setenv("LMFS_GEMM_CAT", "1")
			} else if n, ok := strings.CutPrefix(o, "chunk="); ok {
				t.Setenv("LMFS_GEMM_CHUNK", n)
			}
		}
		m := openModel(t, l, data)
		t.Logf("%s: device %s", kernel, m.Device())
		return m
	}
	base := open("dp4a")
	want, err := base.PathProbs(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	id := coder.ModelID([32]byte{1})
	encB, err := coder.NewLMAccel(checkOnly{ref}, id, coder.Accel{Backend: base, MaxBatch: nb}).EncodeBatch(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	few := 300
	streams, err := coder.EncodeBytes(ctx, base, blocks[:few])
	if err != nil {
		t.Fatal(err)
	}
	for _, kernel := range []string{"mma", "gemm", "gemm+cat", "gemm+cat+chunk=512", "gemm+chunk=1000"} {
		m := open(kernel)
		got, err := m.PathProbs(ctx, blocks)
		if err != nil {
			t.Fatalf("%s: %v", kernel, err)
		}
		for b := range blocks {
			if !slices.Equal(got[b], want[b]) {
				t.Fatalf("%s: block %d (%d bytes): encoding probabilities differ from dp4a's", kernel, b, lens[b])
			}
		}
		c := coder.NewLMAccel(checkOnly{ref}, id, coder.Accel{Backend: m, MaxBatch: nb})
		dec, err := c.DecodeBatch(ctx, encB, lens)
		if err != nil {
			t.Fatalf("%s: batch decoding: %v", kernel, err)
		}
		for b := range blocks {
			if !bytes.Equal(dec[b], blocks[b]) {
				t.Fatalf("%s: block %d decoded wrong (batch)", kernel, b)
			}
		}
		dec, err = coder.DecodeBytes(ctx, m, streams, lens[:few])
		if err != nil {
			t.Fatalf("%s: stepwise decoding: %v", kernel, err)
		}
		for b := range dec {
			if !bytes.Equal(dec[b], blocks[b]) {
				t.Fatalf("%s: block %d decoded wrong (streams)", kernel, b)
			}
		}
	}
}
