package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/lmfs/lmfs/coder"
)

// Options tunes Compress and Decompress.
type Options struct {
	// BlockSize is the raw block size Compress cuts the input into.
	BlockSize int
	// Workers is the number of blocks coded at once; 0 means GOMAXPROCS.
	Workers int
	// Window bounds the blocks in flight (read but not yet written); 0 means
	// 4 per worker. Memory use is about Window times two blocks.
	Window int
	// Progress, if set, is called from one goroutine with the raw bytes of
	// each block as it is written, in order.
	Progress func(rawBytes int)
}

func (o Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

func (o Options) window() int {
	if o.Window > 0 {
		return o.Window
	}
	return 4 * o.workers()
}

// Stats describes a finished Compress or Decompress.
type Stats struct {
	// Blocks is the number of blocks.
	Blocks int
	// RawBytes is the uncompressed size.
	RawBytes int64
	// FileBytes is the compressed file's size.
	FileBytes int64
	// ByCodec counts the blocks stored with each codec id.
	ByCodec map[coder.ID]int
}

// job is one block travelling through the pipeline.
type job struct {
	block int
	off   int64
	raw   int // raw length, known to Decompress before decoding
	in    []byte
	out   []byte
	err   error
	done  chan struct{}
}

// ordered runs produce on a helper goroutine, work on workers goroutines, and
// consume on the caller's, in production order, with at most window jobs
// between produce and consume. produce returns io.EOF at the end. The first
// error in block order wins. On success every goroutine has ended when it
// returns; on error or cancellation the workers have, but a produce call
// blocked in a read is not waited for: it ends when its read returns.
func ordered(ctx context.Context, workers, window int, produce func() (*job, error), work func(context.Context, *job), consume func(*job) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	workCh := make(chan *job)
	order := make(chan *job, window)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case j, ok := <-workCh:
					if !ok {
						return
					}
					if ctx.Err() == nil {
						work(ctx, j)
					}
					close(j.done)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		defer close(workCh)
		defer close(order)
		for ctx.Err() == nil {
			j, err := produce()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				j = &job{err: err, done: make(chan struct{})}
				close(j.done)
				select {
				case order <- j:
				case <-ctx.Done():
				}
				return
			}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			select {
			case workCh <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	err := func() error {
		for {
			var j *job
			select {
			case next, ok := <-order:
				if !ok {
					return ctx.Err()
				}
				j = next
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			select {
			case <-j.done:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			if j.err != nil {
				return j.err
			}
			if err := consume(j); err != nil {
				return err
			}
		}
	}()
	if err != nil {
		cancel(err)
		wg.Wait()
		return err
	}
	// order was closed and drained: the producer is done.
	<-producerDone
	wg.Wait()
	return nil
}

type bufPool struct{ p sync.Pool }

func (b *bufPool) get(n int) []byte {
	if v, ok := b.p.Get().(*[]byte); ok && cap(*v) >= n {
		return (*v)[:n]
	}
	return make([]byte, n)
}

func (b *bufPool) put(s []byte) {
	s = s[:0]
	b.p.Put(&s)
}

// Compress reads src to its end, cuts it into blocks of o.BlockSize, codes
// them with enc on o.Workers goroutines and writes an lmfs compressed file to
// dst. Memory is bounded by o.Window blocks whatever the input size. On
// cancellation it returns at once, even while a read of src is blocked (that
// read's goroutine ends when the read returns, and drops its data).
func Compress(ctx context.Context, dst io.Writer, src io.Reader, enc coder.BlockEncoder, o Options) (Stats, error) {
	st := Stats{ByCodec: map[coder.ID]int{}}
	w, err := NewWriter(dst, o.BlockSize)
	if err != nil {
		return st, err
	}
	bs := o.BlockSize
	var raws, recs bufPool
	blk, eof := 0, false
	produce := func() (*job, error) {
		if eof {
			return nil, io.EOF
		}
		buf := raws.get(bs)
		n, err := io.ReadFull(src, buf)
		switch {
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			eof = true
		case err != nil:
			return nil, fmt.Errorf("read input: %w", err)
		}
		j := &job{block: blk, in: buf[:n], done: make(chan struct{})}
		blk++
		return j, nil
	}
	work := func(ctx context.Context, j *job) {
		j.out, j.err = enc.Encode(ctx, recs.get(coder.RawRecordSize(len(j.in)))[:0], j.in)
		if j.err != nil {
			j.err = fmt.Errorf("block %d: %w", j.block, j.err)
		}
	}
	consume := func(j *job) error {
		if err := w.WriteRecord(j.out); err != nil {
			return err
		}
		st.Blocks++
		st.RawBytes += int64(len(j.in))
		st.ByCodec[coder.ID(j.out[1])]++
		if o.Progress != nil {
			o.Progress(len(j.in))
		}
		raws.put(j.in)
		recs.put(j.out)
		return nil
	}
	if err := ordered(ctx, o.workers(), o.window(), produce, work, consume); err != nil {
		return st, err
	}
	err = w.Close()
	st.FileBytes = w.Offset()
	return st, err
}

// Decompress reads an lmfs compressed file from src, decodes its blocks with
// reg on o.Workers goroutines, verifies every block's CRC32C and the file's
// structure, and writes the raw bytes to dst in order. On a bad block it
// returns a *BlockError naming it, after writing every block before it.
func Decompress(ctx context.Context, dst io.Writer, src io.Reader, reg *coder.Registry, o Options) (Stats, error) {
	st := Stats{ByCodec: map[coder.ID]int{}}
	rd, err := NewReader(src)
	if err != nil {
		return st, err
	}
	var recs, raws bufPool
	produce := func() (*job, error) {
		fr, err := rd.Next(recs.get(0))
		if err != nil {
			return nil, err
		}
		return &job{block: fr.Block, off: fr.Offset, raw: fr.RawLen, in: fr.Record, done: make(chan struct{})}, nil
	}
	work := func(ctx context.Context, j *job) {
		out, _, err := reg.Decode(ctx, raws.get(j.raw)[:0], j.in)
		j.out = out
		if err != nil {
			j.err = &BlockError{Block: j.block, Offset: j.off, Err: err}
		}
	}
	consume := func(j *job) error {
		if _, err := dst.Write(j.out); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		st.Blocks++
		st.RawBytes += int64(len(j.out))
		st.ByCodec[coder.ID(j.in[1])]++
		if o.Progress != nil {
			o.Progress(len(j.out))
		}
		recs.put(j.in)
		raws.put(j.out)
		return nil
	}
	if err := ordered(ctx, o.workers(), o.window(), produce, work, consume); err != nil {
		return st, err
	}
	st.FileBytes = rd.Offset()
	return st, nil
}
