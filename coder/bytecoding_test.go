package coder

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/lmfs/lmfs/predictor/order0"
)

func TestByteModelRoundTrip(t *testing.T) {
	ctx := context.Background()
	in := propertyInputs()
	var blocks [][]byte
	for _, k := range []string{"empty", "one", "two", "text", "random", "zeros", "binary", "mixed-257"} {
		blocks = append(blocks, in[k])
	}
	streams, err := EncodeBytes(ctx, order0.Model{}, blocks)
	if err != nil {
		t.Fatal(err)
	}
	lens := make([]int, len(blocks))
	for i, b := range blocks {
		lens[i] = len(b)
	}
	got, err := DecodeBytes(ctx, order0.Model{}, streams, lens)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blocks {
		if !bytes.Equal(got[i], blocks[i]) {
			t.Fatalf("block %d differs", i)
		}
	}
	// order 0 codes zeros to almost nothing and text below 5 bits per byte
	if n := len(streams[5]); n > len(blocks[5])/50 {
		t.Errorf("zeros: %d bytes coded to %d", len(blocks[5]), n)
	}
	if n := len(streams[3]); n*8 > len(blocks[3])*5 {
		t.Errorf("text: %d bytes coded to %d", len(blocks[3]), n)
	}
	// a truncated stream is caught
	bad := append([][]byte(nil), streams...)
	bad[3] = bad[3][:len(bad[3])/2]
	if _, err := DecodeBytes(ctx, order0.Model{}, bad, lens); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated stream: want ErrCorrupt, got %v", err)
	}
}
