package fs

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor/lm"
)

// A block coded with a model the binary does not ship decodes through the
// copy the store keeps, and cannot be decoded without it.
func TestStoreModelsDecodeBlocksOfOtherModels(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := blockstore.Open(ctx, blockstore.Options{Dir: t.TempDir(), BlockSize: 4096, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// Another model: the built-in one with one weight changed (a valid file
	// with another SHA-256), as a future default model would be.
	file := coder.DefaultModelFile()
	file[len(file)/2] ^= 0x01
	other, err := lm.Load(file)
	if err != nil {
		t.Fatalf("changed model does not load: %v", err)
	}
	oreg := coder.NewRegistry(coder.NewLM(other))
	raw := []byte(strings.Repeat("a block coded with a model this binary does not ship. ", 20))
	rec, err := oreg.EncodeWith(ctx, nil, coder.NewLM(other), raw)
	if err != nil {
		t.Fatal(err)
	}

	reg, err := coder.NewStandard(coder.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Decode(ctx, nil, rec); err == nil || !strings.Contains(err.Error(), "needs model") {
		t.Fatalf("without the store's copy: %v", err)
	}
	if _, err := st.PutModel(file); err != nil {
		t.Fatal(err)
	}
	if err := PrepareModels(st, reg, 1<<20, false, log); err != nil {
		t.Fatal(err)
	}
	got, _, err := reg.Decode(ctx, nil, rec)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("with the store's copy: %v", err)
	}
}

// A policy that codes with models copies the built-in model into the store;
// one that does not leaves the store as it is.
func TestPrepareModelsCopiesTheBuiltInModel(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := blockstore.Open(ctx, blockstore.Options{Dir: t.TempDir(), BlockSize: 4096, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := coder.NewStandard(coder.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := PrepareModels(st, reg, 1<<20, false, log); err != nil {
		t.Fatal(err)
	}
	if m, _ := st.Models(); len(m) != 0 {
		t.Fatalf("%d models stored without a model policy", len(m))
	}
	if err := PrepareModels(st, reg, 1<<20, true, log); err != nil {
		t.Fatal(err)
	}
	m, err := st.Models()
	def, _ := lm.Default()
	if err != nil || len(m) != 1 || !bytes.Equal(m[def.ID()], coder.DefaultModelFile()) {
		t.Fatalf("after a model policy: %d models, %v", len(m), err)
	}
}
