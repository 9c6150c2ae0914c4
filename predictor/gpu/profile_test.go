package gpu_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmfs/lmfs/predictor/lm"
)

// TestProfileSteps times the library's step with the built-in model for
// several numbers of streams (a short encoding call each), for profiling on a
// GPU machine: it runs only with LMFS_GPU_PROFILE set (to a comma-separated
// list of stream counts, e.g. "4096" or "512,16384", or to "all").
func TestProfileSteps(t *testing.T) {
	spec := os.Getenv("LMFS_GPU_PROFILE")
	if spec == "" {
		t.Skip("set LMFS_GPU_PROFILE to profile")
	}
	l := testLib(t)
	m := openModel(t, l, lm.DefaultFile())
	t.Logf("device %s, %d bytes of state per stream", m.Device(), m.BytesPerStream())
	counts := []int{1, 8, 64, 512, 2048, 4096}
	if spec != "all" {
		var err error
		if counts, err = intList(spec); err != nil {
			t.Fatalf("LMFS_GPU_PROFILE=%q: %v (want \"all\" or stream counts such as 512,4096)", spec, err)
		}
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

// intList parses a comma-separated list of positive integers.
func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if n < 1 {
			return nil, fmt.Errorf("%d is not a positive count", n)
		}
		out = append(out, n)
	}
	return out, nil
}
