package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what one method did on some input.
type Result struct {
	Method    string
	RawBytes  int64
	CompBytes int64
	Blocks    int
	EncCPU    time.Duration // summed over worker threads
	DecCPU    time.Duration
	EncWall   time.Duration
	DecWall   time.Duration
	CodecUse  map[string]int // blocks per lmfs codec, for lmfs methods
}

// Add accumulates o into r.
func (r *Result) Add(o Result) {
	r.RawBytes += o.RawBytes
	r.CompBytes += o.CompBytes
	r.Blocks += o.Blocks
	r.EncCPU += o.EncCPU
	r.DecCPU += o.DecCPU
	r.EncWall += o.EncWall
	r.DecWall += o.DecWall
	for k, v := range o.CodecUse {
		if r.CodecUse == nil {
			r.CodecUse = map[string]int{}
		}
		r.CodecUse[k] += v
	}
}

// BitsPerByte is the compressed size in bits per raw byte.
func (r Result) BitsPerByte() float64 {
	if r.RawBytes == 0 {
		return 0
	}
	return float64(r.CompBytes) * 8 / float64(r.RawBytes)
}

func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}

// EncMBps is compression speed per core: raw MB over summed worker CPU time.
func (r Result) EncMBps() float64 { return mbps(r.RawBytes, r.EncCPU) }

// DecMBps is decompression speed per core.
func (r Result) DecMBps() float64 { return mbps(r.RawBytes, r.DecCPU) }

// EncWallMBps is compression speed by the wall clock with all workers.
func (r Result) EncWallMBps() float64 { return mbps(r.RawBytes, r.EncWall) }

// DecWallMBps is decompression speed by the wall clock with all workers.
func (r Result) DecWallMBps() float64 { return mbps(r.RawBytes, r.DecWall) }

// Options tunes a measurement.
type Options struct {
	// BlockSize is the block size every method codes.
	BlockSize int
	// Workers is the number of blocks coded at once; 0 means GOMAXPROCS.
	Workers int
	// ChunkBytes bounds the raw bytes held at once (rounded up to whole
	// blocks, at least 4 blocks per worker); 0 means 32 MiB.
	ChunkBytes int
	// FirstMethod is the index of the method measured first; the others
	// follow round robin. Run varies it from file to file so that effects of
	// the position in the sequence (heap and cache state left by the method
	// before) spread evenly over the methods in the totals.
	FirstMethod int
}

func (o Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// parallel runs fn(i) for i in 0..n-1 on w goroutines locked to their OS
// threads and returns the summed CPU time the calls took and the first error.
func parallel(ctx context.Context, w, n int, fn func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var cpu atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(w, n) {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var used time.Duration
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					break
				}
				t0 := threadCPU()
				err := fn(i)
				used += threadCPU() - t0
				if err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
				}
			}
			cpu.Add(int64(used))
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return time.Duration(cpu.Load()), first
}

// Measure reads src to its end in chunks and measures every method on its
// blocks: encode all blocks of a chunk in parallel, then decode them in
// parallel and compare with the input. It returns one result per method.
func Measure(ctx context.Context, src io.Reader, methods []Method, o Options) ([]Result, error) {
	bs := o.BlockSize
	if bs < 1 {
		return nil, fmt.Errorf("block size %d: must be at least 1", bs)
	}
	w := o.workers()
	chunk := o.ChunkBytes
	if chunk <= 0 {
		chunk = 32 << 20
	}
	perChunk := max((chunk+bs-1)/bs, 4*w)
	res := make([]Result, len(methods))
	for i, m := range methods {
		res[i].Method = m.Name
	}
	buf := make([]byte, 0, min(perChunk*bs, 64<<20))
	for {
		buf = buf[:0]
		var blocks [][]byte
		eof := false
		for len(blocks) < perChunk && !eof {
			start := len(buf)
			buf = append(buf, make([]byte, bs)...)
			n, err := io.ReadFull(src, buf[start:])
			buf = buf[:start+n]
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				eof = true
			case err != nil:
				return nil, fmt.Errorf("read input: %w", err)
			}
			if n > 0 {
				blocks = append(blocks, buf[start:start+n:start+n])
			}
		}
		for k := range methods {
			i := (o.FirstMethod + k) % len(methods)
			m := methods[i]
			r, err := measureChunk(ctx, m, blocks, w)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.Name, err)
			}
			res[i].Add(r)
		}
		if eof {
			return res, nil
		}
	}
}

func measureChunk(ctx context.Context, m Method, blocks [][]byte, w int) (Result, error) {
	r := Result{Method: m.Name, Blocks: len(blocks)}
	if m.EncodeBatch != nil && m.DecodeBatch != nil {
		return measureBatch(ctx, m, blocks)
	}
	enc := make([][]byte, len(blocks))
	t0 := time.Now()
	cpu, err := parallel(ctx, w, len(blocks), func(i int) error {
		var err error
		enc[i], err = m.Encode(ctx, nil, blocks[i])
		if err != nil {
			return fmt.Errorf("encode block %d: %w", i, err)
		}
		return nil
	})
	r.EncWall, r.EncCPU = time.Since(t0), cpu
	if err != nil {
		return r, err
	}
	dec := make([][]byte, len(blocks))
	t0 = time.Now()
	cpu, err = parallel(ctx, w, len(blocks), func(i int) error {
		var err error
		dec[i], err = m.Decode(ctx, make([]byte, 0, len(blocks[i])), enc[i], len(blocks[i]))
		if err != nil {
			return fmt.Errorf("decode block %d: %w", i, err)
		}
		return nil
	})
	r.DecWall, r.DecCPU = time.Since(t0), cpu
	if err != nil {
		return r, err
	}
	return r, r.tally(m, blocks, enc, dec)
}

// measureBatch measures a method that codes all blocks in one call; CPU time
// is the whole process's over the call.
func measureBatch(ctx context.Context, m Method, blocks [][]byte) (Result, error) {
	r, enc, dec, err := measureBatchBlocks(ctx, m, blocks)
	if err != nil {
		return r, err
	}
	r.RawBytes = 0
	return r, r.tally(m, blocks, enc, dec)
}

// measureBatchBlocks codes blocks with m's batch calls and returns the times
// (and the raw bytes) in r with the coded and decoded blocks, unchecked.
func measureBatchBlocks(ctx context.Context, m Method, blocks [][]byte) (r Result, enc, dec [][]byte, err error) {
	r = Result{Method: m.Name, Blocks: len(blocks)}
	lens := make([]int, len(blocks))
	for i, b := range blocks {
		lens[i] = len(b)
		r.RawBytes += int64(len(b))
	}
	t0, c0 := time.Now(), processCPU()
	enc, err = m.EncodeBatch(ctx, blocks)
	r.EncWall, r.EncCPU = time.Since(t0), processCPU()-c0
	if err != nil {
		return r, nil, nil, fmt.Errorf("encode: %w", err)
	}
	t0, c0 = time.Now(), processCPU()
	dec, err = m.DecodeBatch(ctx, enc, lens)
	r.DecWall, r.DecCPU = time.Since(t0), processCPU()-c0
	if err != nil {
		return r, nil, nil, fmt.Errorf("decode: %w", err)
	}
	return r, enc, dec, nil
}

// tally checks that every block decoded to itself and adds the blocks' raw
// and coded sizes (and, where m names them, the codecs used) to r.
func (r *Result) tally(m Method, blocks, enc, dec [][]byte) error {
	for i, b := range blocks {
		if !bytes.Equal(dec[i], b) {
			return fmt.Errorf("block %d of %d bytes decoded to %d different bytes: the codec is broken", i, len(b), len(dec[i]))
		}
		r.RawBytes += int64(len(b))
		r.CompBytes += int64(len(enc[i]))
		if m.Codec != nil {
			if r.CodecUse == nil {
				r.CodecUse = map[string]int{}
			}
			r.CodecUse[m.Codec(enc[i])]++
		}
	}
	return nil
}
