package archive

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// BenchmarkCompress measures the parallel pipeline with zstd on text-like
// data (MB/s of raw input, all cores).
func BenchmarkCompress(b *testing.B) {
	reg := testRegistry(b)
	enc := encoders(b, reg)["zstd"]
	raw := testData(8<<20, 1)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compress(context.Background(), io.Discard, bytes.NewReader(raw), enc, Options{BlockSize: 64 << 10}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecompress measures the parallel pipeline decoding zstd blocks.
func BenchmarkDecompress(b *testing.B) {
	reg := testRegistry(b)
	raw := testData(8<<20, 1)
	file := compress(b, encoders(b, reg)["zstd"], raw, 64<<10)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decompress(context.Background(), io.Discard, bytes.NewReader(file), reg, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
