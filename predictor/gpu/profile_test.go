package gpu_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/lmfs/lmfs/predictor/lm"
)

// TestProfileSteps times the library's step with the built-in model for
// several numbers of streams (a short encoding call each), for profiling on a
// GPU machine: it runs only with LMFS_GPU_PROFILE set (to a comma-free list
// of stream counts, e.g. "4096", or "all").
func TestProfileSteps(t *testing.T) {
	spec := os.Getenv("LMFS_GPU_PROFILE")
	if spec == "" {
		t.Skip("set LMFS_GPU_PROFILE to profile")
	}
	l := testLib(t)
	m := openModel(t, l, lm.DefaultFile())
	counts := []int{1, 8, 64, 512, 2048, 4096}
	if n, err := strconv.Atoi(spec); err == nil {
		counts = []int{n}
	}
	src := realData(t, 1<<20)
	steps := 64
	if s, err := strconv.Atoi(os.Getenv("LMFS_GPU_PROFILE_STEPS")); err == nil {
		steps = s
	}
	for _, n := range counts {
		blocks := split(src, n, steps)
		if _, err := m.PathProbs(context.Background(), blocks); err != nil { // warm-up
			t.Fatal(err)
		}
		t0 := time.Now()
		if _, err := m.PathProbs(context.Background(), blocks); err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		t.Logf("streams %5d: %8.1f us per step, %8.1f ns per stream-step, %7.2f MB/s", n,
			float64(d.Microseconds())/float64(steps), float64(d.Nanoseconds())/float64(steps*n), float64(n*steps)/d.Seconds()/1e6)
	}
}
