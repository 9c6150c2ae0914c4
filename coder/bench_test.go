package coder

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// benchBlocks returns up to n 64 KiB blocks spread over the text-like corpus
// files (skipping when the corpus is absent).
func benchBlocks(b *testing.B, n int) [][]byte {
	files := loadCorpus(b, func(k string) bool { return textLike[k] })
	var all [][]byte
	for _, f := range files {
		all = append(all, blocksOf(f.data, 64<<10)...)
	}
	var out [][]byte
	step := max(1, len(all)/n)
	for i := 0; i < len(all) && len(out) < n; i += step {
		out = append(out, all[i])
	}
	return out
}

// BenchmarkCorpusCodecs measures one-core compress and decompress speed of
// cm, order2 and zstd -19 (the baseline, measured in the same run) on 64 KiB
// blocks of the text-like corpus.
func BenchmarkCorpusCodecs(b *testing.B) {
	blocks := benchBlocks(b, 16)
	z19, err := NewZstd(19)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []Codec{NewCM(DefaultOptions().CMMemory), NewOrder2(), z19} {
		payloads := make([][]byte, len(blocks))
		total := 0
		for i, blk := range blocks {
			payloads[i], _ = c.Encode(ctx, nil, blk)
			total += len(blk)
		}
		b.Run(c.Name()+"/compress", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			n := 0
			cpu := cpuTime()
			for i := 0; b.Loop(); i++ {
				blk := blocks[i%len(blocks)]
				buf, _ = c.Encode(ctx, buf[:0], blk)
				n += len(blk)
			}
			reportCPU(b, n, cpu)
			b.SetBytes(int64(n / max(b.N, 1)))
		})
		b.Run(c.Name()+"/decompress", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			n := 0
			cpu := cpuTime()
			for i := 0; b.Loop(); i++ {
				k := i % len(blocks)
				var err error
				buf, err = c.Decode(ctx, buf[:0], payloads[k], len(blocks[k]))
				if err != nil {
					b.Fatal(err)
				}
				n += len(blocks[k])
			}
			reportCPU(b, n, cpu)
			b.SetBytes(int64(n / max(b.N, 1)))
		})
	}
}

// BenchmarkArithBits measures the binary coder alone on skewed random bits.
func BenchmarkArithBits(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	bits := make([]uint8, 1<<16)
	for i := range bits {
		if rng.IntN(10) == 0 {
			bits[i] = 1
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(bits)) / 8)
	var out []byte
	for b.Loop() {
		e := Encoder{}
		e.Reset(out[:0])
		for _, y := range bits {
			e.EncodeBit(int(y), 6554)
		}
		out = e.Finish()
	}
}

// cpuTime returns the CPU time this process has used. On a shared machine it
// measures a single-threaded loop better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports n bytes per CPU second since start as "cpuMB/s".
func reportCPU(b *testing.B, n int, start time.Duration) {
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(n)/d.Seconds()/1e6, "cpuMB/s")
	}
}

// BenchmarkCMBlock codes one 64 KiB text block with cm per op (compress then
// decompress); small enough to run under valgrind for instruction counts.
func BenchmarkCMBlock(b *testing.B) {
	blocks := benchBlocks(b, 16)
	blk := blocks[len(blocks)/2]
	c := NewCM(DefaultOptions().CMMemory)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(blk)))
	var p, out []byte
	for b.Loop() {
		var err error
		p, _ = c.Encode(ctx, p[:0], blk)
		if out, err = c.Decode(ctx, out[:0], p, len(blk)); err != nil {
			b.Fatal(err)
		}
	}
}
