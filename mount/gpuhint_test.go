package mount

import (
	"runtime"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/coder"
)

// TestGPUHint: a max-policy mount whose LM runs on a GPU says so when it
// keeps too few blocks in flight to fill GPU batches, and names the keys
// to raise; CPU-only or non-max mounts, and mounts with enough workers, say
// nothing.
func TestGPUHint(t *testing.T) {
	const gpu = "cuda:0 NVIDIA H200"
	for _, tc := range []struct {
		name        string
		device      string
		pol         coder.Policy
		workers, bg int
		want        []string // substrings; none: no hint
	}{
		{"cpu", "cpu", coder.PolicyMax, 4, 1, nil},
		{"fast policy", gpu, coder.PolicyFast, 4, 1, nil},
		{"balanced policy", gpu, coder.PolicyBalanced, 4, 1, nil},
		{"few workers", gpu, coder.PolicyMax, 16, 1, []string{"codec.workers is 16", "recompress.workers is 1", "512"}},
		{"background only", gpu, coder.PolicyMax, 512, 1, []string{"recompress.workers is 1"}},
		{"no background", gpu, coder.PolicyMax, 512, 0, nil},
		{"enough", gpu, coder.PolicyMax, 512, 512, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := gpuHint(tc.device, tc.pol, tc.workers, tc.bg)
			if (got == "") != (tc.want == nil) {
				t.Fatalf("hint %q, want one with %q", got, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("hint %q lacks %q", got, w)
				}
			}
		})
	}
	if runtime.NumCPU() < gpuMinInFlight {
		if got := gpuHint(gpu, coder.PolicyMax, 0, 0); !strings.Contains(got, "codec.workers is") {
			t.Errorf("codec.workers 0 (one per core) on a GPU: hint %q", got)
		}
	}
	reg, err := coder.NewStandard(coder.Options{ZstdLevel: 3, CMMemory: 1 << 20, Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	if d := lmDevice(reg); d != "cpu" {
		t.Errorf("a CPU registry's lm+cm runs on %q", d)
	}
}
