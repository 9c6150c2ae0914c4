package coder

import (
	"bytes"
	"context"
	"testing"
)

func TestFixed(t *testing.T) {
	reg := testRegistry(t)
	ctx := context.Background()
	in := testInputs()
	tests := []struct {
		codec, input string
		want         ID
	}{
		{"zstd", "text", IDZstd},
		{"zstd", "zeros", IDZstd},
		{"zstd", "random", IDRaw}, // zstd would enlarge it
		{"zstd", "empty", IDRaw},  // an empty frame is larger than nothing
		{"raw", "text", IDRaw},
	}
	for _, tc := range tests {
		t.Run(tc.codec+"/"+tc.input, func(t *testing.T) {
			f, err := NewFixed(reg, tc.codec)
			if err != nil {
				t.Fatal(err)
			}
			raw := in[tc.input]
			rec, err := f.Encode(ctx, []byte("prefix"), raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(rec, []byte("prefix")) {
				t.Fatal("Encode did not append to dst")
			}
			rec = rec[len("prefix"):]
			if ID(rec[1]) != tc.want {
				t.Errorf("stored with codec %d, want %d", rec[1], tc.want)
			}
			if len(rec) > RawRecordSize(len(raw)) {
				t.Errorf("record of %d bytes exceeds the raw record (%d)", len(rec), RawRecordSize(len(raw)))
			}
			got, _, err := reg.Decode(ctx, nil, rec)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("round trip: %v", err)
			}
		})
	}
	if _, err := NewFixed(reg, "nope"); err == nil {
		t.Error("unknown codec accepted")
	}
}

func TestRawRecordSize(t *testing.T) {
	reg := testRegistry(t)
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 65536, MaxBlockSize} {
		rec, err := reg.EncodeWith(context.Background(), nil, Raw{}, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		if RawRecordSize(n) != len(rec) {
			t.Errorf("RawRecordSize(%d) = %d, raw record is %d bytes", n, RawRecordSize(n), len(rec))
		}
	}
}
