package main

import (
	"testing"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/config"
)

// TestDecodeWorkers: lmfs decompress keeps coder.LockstepWidth blocks per
// worker in flight when the LM codecs run on the CPU and codec.workers is
// unset, so that their blocks decode in lockstep groups; a set
// codec.workers, or a build without the LM codecs, keeps the worker count.
func TestDecodeWorkers(t *testing.T) {
	withLM, err := coder.NewStandard(coder.Options{ZstdLevel: 3, CMMemory: 1 << 20, Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	noLM, err := coder.NewStandard(coder.Options{ZstdLevel: 3, CMMemory: 1 << 20, NoLM: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		reg     *coder.Registry
		workers int // codec.workers
		nw      int
		want    int
	}{
		{"LM on the CPU, workers unset", withLM, 0, 2, 2 * coder.LockstepWidth},
		{"LM on the CPU, workers set", withLM, 3, 3, 3},
		{"no LM codecs", noLM, 0, 2, 2},
	} {
		cfg := &config.Config{}
		cfg.Codec.Workers = c.workers
		if got := decodeWorkers(c.reg, cfg, c.nw); got != c.want {
			t.Errorf("%s: %d workers, want %d", c.name, got, c.want)
		}
	}
}
