package coder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lmfs/lmfs/predictor/lm"
)

func TestLockstepGroups(t *testing.T) {
	for _, c := range []struct {
		n, cores int
		want     []int
	}{
		{0, 2, nil},
		{1, 2, []int{1}},
		{2, 2, []int{1, 2}},
		{5, 2, []int{2, 5}},
		{16, 2, []int{8, 16}},
		{17, 2, []int{5, 11, 17}},
		{40, 16, []int{2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 30, 32, 35, 37, 40}},
	} {
		got := lockstepGroups(c.n, c.cores)
		if !slices.Equal(got, c.want) {
			t.Errorf("lockstepGroups(%d, %d) = %v, want %v", c.n, c.cores, got, c.want)
		}
		prev := 0
		for _, e := range got {
			if e-prev < 1 || e-prev > lockstepMax {
				t.Errorf("lockstepGroups(%d, %d): a group of %d blocks", c.n, c.cores, e-prev)
			}
			prev = e
		}
	}
}

// TestBatchOnCPUMatchesOneByOne: without an accelerator, the LM codecs'
// batch methods (blocks in lockstep groups) give the payloads of Encode
// block by block and decode them; a damaged payload in a batch gets the
// error Decode gives it alone, and the blocks beside it decode.
func TestBatchOnCPUMatchesOneByOne(t *testing.T) {
	m := defaultModel(t)
	var err error
	ctx := context.Background()
	in := lmInputs(t)
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	var blocks [][]byte
	for _, n := range names {
		b := in[n]
		if len(b) > 600 {
			b = b[:600]
		}
		blocks = append(blocks, b)
	}
	// Ten blocks: groups of several blocks on any number of cores.
	blocks = append(blocks, in["text"][100:400], in["code"][:333], in["binary"][:64])
	for _, c := range []interface {
		BatchCodec
	}{NewLM(m), NewLMCM(m, 1<<20), NewLMCM2(m, 1<<20), NewLMCM1(m, 1<<20)} {
		want := make([][]byte, len(blocks))
		lens := make([]int, len(blocks))
		for i, b := range blocks {
			if want[i], err = c.Encode(ctx, nil, b); err != nil {
				t.Fatal(err)
			}
			lens[i] = len(b)
		}
		got, err := c.EncodeBatch(ctx, blocks)
		if err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		for i := range blocks {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s: block %d (%d bytes): the batch's payload differs from Encode's", c.Name(), i, len(blocks[i]))
			}
		}
		dec, err := c.DecodeBatch(ctx, got, lens)
		if err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		for i := range blocks {
			if !bytes.Equal(dec[i], blocks[i]) {
				t.Fatalf("%s: block %d decoded wrong", c.Name(), i)
			}
		}
		// Block 3 cut short: its error is Decode's, the others decode.
		bad := slices.Clone(got)
		bad[3] = bad[3][:len(bad[3])/2]
		_, alone := c.Decode(ctx, nil, bad[3], lens[3])
		if !errors.Is(alone, ErrCorrupt) {
			t.Fatalf("%s: a payload cut in half: %v", c.Name(), alone)
		}
		inGroups(len(bad), func(start, end int) {
			out := make([][]byte, end-start)
			errs := make([]error, end-start)
			switch d := c.(type) {
			case *LMCM:
				d.decodeGroup(ctx, bad[start:end], lens[start:end], out, errs)
			case *ByteCodec:
				d.decodeGroup(ctx, bad[start:end], lens[start:end], out, errs)
			}
			for k := range out {
				i := start + k
				if i == 3 {
					if errs[k] == nil || errs[k].Error() != alone.Error() {
						t.Errorf("%s: the damaged block in a group: %v, alone: %v", c.Name(), errs[k], alone)
					}
					continue
				}
				if errs[k] != nil || !bytes.Equal(out[k], blocks[i]) {
					t.Errorf("%s: block %d beside a damaged one: %v", c.Name(), i, errs[k])
				}
			}
		})
	}
}

// BenchmarkLMBatchCPU measures lm and lm+cm on the CPU coding eight blocks
// of 4 KiB of Go source one by one (Encode, Decode) and as a batch (blocks
// in lockstep: EncodeBatch, DecodeBatch), in raw bytes per second. Run it
// with -cpu 1 for one core's figures.
func BenchmarkLMBatchCPU(b *testing.B) {
	m, err := lm.Default()
	if err != nil {
		b.Fatal(err)
	}
	var src []byte
	for _, f := range []string{"lmcm.go", "accel.go", "arith.go", "choose.go", "bytecodec.go"} {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		src = append(src, d...)
	}
	const n, size = 8, 4 << 10
	blocks := make([][]byte, n)
	lens := make([]int, n)
	for i := range blocks {
		blocks[i], lens[i] = src[i*size:(i+1)*size], size
	}
	ctx := context.Background()
	for _, c := range []BatchCodec{NewLM(m), NewLMCM(m, 64<<20)} {
		enc, err := c.EncodeBatch(ctx, blocks)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.Name()+"/encode/one-by-one", func(b *testing.B) {
			b.SetBytes(n * size)
			for b.Loop() {
				for _, blk := range blocks {
					if _, err := c.Encode(ctx, nil, blk); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(c.Name()+"/encode/batch", func(b *testing.B) {
			b.SetBytes(n * size)
			for b.Loop() {
				if _, err := c.EncodeBatch(ctx, blocks); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.Name()+"/decode/one-by-one", func(b *testing.B) {
			b.SetBytes(n * size)
			for b.Loop() {
				for i, p := range enc {
					if _, err := c.Decode(ctx, nil, p, lens[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(c.Name()+"/decode/batch", func(b *testing.B) {
			b.SetBytes(n * size)
			for b.Loop() {
				if _, err := c.DecodeBatch(ctx, enc, lens); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestGathererGroupsWaitingCalls: calls that wait while a group runs are
// decoded together, at most LockstepWidth at a time, in order; a call whose
// context ends while it waits gets its context's error.
func TestGathererGroupsWaitingCalls(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one runner
	started, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var groups [][]int
	g := &gatherer{run: func(ctx context.Context, pays [][]byte, lens []int, out [][]byte, errs []error) {
		if len(groups) == 0 {
			close(started)
			<-release
		}
		mu.Lock()
		var ids []int
		for i, p := range pays {
			ids = append(ids, int(p[0]))
			out[i] = []byte{p[0] + 100}
		}
		groups = append(groups, ids)
		mu.Unlock()
	}}
	var wg sync.WaitGroup
	results := make([][]byte, 7)
	errs := make([]error, 7)
	call := func(i int, ctx context.Context) {
		defer wg.Done()
		results[i], errs[i] = g.decode(ctx, nil, []byte{byte(i)}, 1)
	}
	wg.Add(1)
	go call(0, context.Background())
	waitQueue := func(n int) {
		for {
			g.mu.Lock()
			q := len(g.queue)
			g.mu.Unlock()
			if q == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	<-started // call 0 runs (and waits for release)
	cancelled, cancel := context.WithCancel(context.Background())
	for i := 1; i < 7; i++ {
		ctx := context.Background()
		if i == 3 {
			ctx = cancelled
		}
		wg.Add(1)
		go call(i, ctx)
		waitQueue(i)
	}
	cancel()
	close(release)
	wg.Wait()
	if got := fmt.Sprint(groups); got != "[[0] [1 2 4] [5 6]]" {
		t.Errorf("groups %s, want [[0] [1 2 4] [5 6]] (call 3 cancelled)", got)
	}
	for i := range 7 {
		if i == 3 {
			if !errors.Is(errs[i], context.Canceled) {
				t.Errorf("cancelled call: %v", errs[i])
			}
			continue
		}
		if errs[i] != nil || len(results[i]) != 1 || results[i][0] != byte(i+100) {
			t.Errorf("call %d: %v %v", i, results[i], errs[i])
		}
	}
}

// TestConcurrentDecodeOnCPU: many concurrent Decode calls of the LM codecs
// (gathered into groups) decode every block, and a damaged payload among
// them gets the error it gets alone.
func TestConcurrentDecodeOnCPU(t *testing.T) {
	m := defaultModel(t)
	var err error
	ctx := context.Background()
	in := lmInputs(t)
	var blocks [][]byte
	for _, n := range []string{"text", "code", "binary", "zeros", "one", "two"} {
		b := in[n]
		blocks = append(blocks, b[:min(len(b), 400)])
	}
	blocks = append(blocks, in["text"][50:300], in["code"][100:350])
	for _, c := range []Codec{NewLM(m), NewLMCM(m, 1<<20)} {
		pays := make([][]byte, len(blocks))
		for i, b := range blocks {
			if pays[i], err = c.Encode(ctx, nil, b); err != nil {
				t.Fatal(err)
			}
		}
		bad := len(blocks) - 1
		cut := pays[bad][:len(pays[bad])/3]
		_, alone := c.Decode(ctx, nil, cut, len(blocks[bad]))
		if alone == nil {
			t.Fatalf("%s: a payload cut to a third decoded", c.Name())
		}
		var wg sync.WaitGroup
		for i := range blocks {
			wg.Go(func() {
				p := pays[i]
				if i == bad {
					p = cut
				}
				got, err := c.Decode(ctx, []byte("x"), p, len(blocks[i]))
				if i == bad {
					if err == nil || err.Error() != alone.Error() {
						t.Errorf("%s: the damaged block among others: %v, alone: %v", c.Name(), err, alone)
					}
					return
				}
				if err != nil || !bytes.Equal(got, append([]byte("x"), blocks[i]...)) {
					t.Errorf("%s: block %d decoded wrong: %v", c.Name(), i, err)
				}
			})
		}
		wg.Wait()
	}
}

// TestLockstepOnCPU: a registry with the LM codecs on the CPU decodes in
// lockstep groups; one without them does not.
func TestLockstepOnCPU(t *testing.T) {
	for _, c := range []struct {
		noLM bool
		want bool
	}{{false, true}, {true, false}} {
		reg, err := NewStandard(Options{ZstdLevel: 3, CMMemory: 1 << 20, Device: "cpu", NoLM: c.noLM})
		if err != nil {
			t.Fatal(err)
		}
		if got := LockstepOnCPU(reg); got != c.want {
			t.Errorf("NoLM %v: LockstepOnCPU %v, want %v", c.noLM, got, c.want)
		}
	}
}
