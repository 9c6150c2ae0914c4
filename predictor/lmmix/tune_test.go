package lmmix

import (
	"encoding/gob"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/mix"
)

// tuneBlock is a block of the tuning sample with the LM's bit-path
// probabilities (written by coder's TestMixTuneDump).
type tuneBlock struct {
	Kind  string
	Src   []byte
	Probs []uint16
}

func bitCost(p int, bit int) float64 {
	q := float64(min(max(p, 1), 65535)) / 65536
	if bit == 0 {
		q = 1 - q
	}
	return -math.Log2(q)
}

// replay returns the coded bits of blk for the cm alone, the lm+cm id 5
// mixer and mixer configurations cfgs.
func replay(blk *tuneBlock, cfgs []config) []float64 {
	pred := cm.New(64 << 20)
	out := make([]float64, 3+len(cfgs))
	run := func(slot int, p func(k int, pl int32, c *cm.Model) int, up func(bit int)) {
		out[slot], _ = replayRun(pred, blk, p, up)
	}
	run(0, func(k int, pl int32, c *cm.Model) int { return c.P() }, func(int) {})
	// id 5
	mx := mix.New(2, 32, []int32{32768, 32768}, 11)
	ap := mix.NewAPM(1024, 7)
	var in [2]int32
	run(1, func(k int, pl int32, c *cm.Model) int {
		in[0], in[1] = pl, int32(c.P())
		cf := mix.Confidence(pl)
		p := mx.P(in[:], k*4+cf)
		var v cm.View
		c.View(&v)
		return (p + 3*ap.Refine(p, int(v.C0)*4+cf)) / 4
	}, func(bit int) { mx.Update(bit); ap.Update(bit) })
	fm := New()
	run(2, func(k int, pl int32, c *cm.Model) int { return fm.P(pl, c) }, fm.Update)
	for i, cf := range cfgs {
		m := newCfg(cf)
		run(3+i, func(k int, pl int32, c *cm.Model) int { return m.P(pl, c) }, m.Update)
	}
	return out
}

func TestTune(t *testing.T) {
	blocks := loadTuneBlocks(t)
	names, cfgs := tuneConfigs()
	res, _ := replayBlocks(blocks, func(blk *tuneBlock) ([]float64, []float64) { return replay(blk, cfgs), nil })
	cols := append([]string{"cm", "id5", "id6"}, names...)
	var sb strings.Builder
	sb.WriteString(tuneTable(blocks, res, cols, -1, nil))
	// blocks where a mixer is worse than cm
	sb.WriteString("\nworse than cm (block: % of cm):")
	for i := range blocks {
		for j := 1; j < len(cols); j++ {
			if res[i][j] > res[i][0] {
				fmt.Fprintf(&sb, " %s#%d/%s:%+.2f%%", blocks[i].Kind, i, cols[j], 100*(res[i][j]/res[i][0]-1))
			}
		}
	}
	t.Log("\n" + sb.String())
}

// loadTuneBlocks reads the tuning sample that LMFS_MIXTUNE names, or skips
// the test when it is not set.
func loadTuneBlocks(t *testing.T) []tuneBlock {
	path := os.Getenv("LMFS_MIXTUNE")
	if path == "" {
		t.Skip("set LMFS_MIXTUNE=file written by coder's TestMixTuneDump")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []tuneBlock
	if err := gob.NewDecoder(f).Decode(&blocks); err != nil {
		t.Fatalf("%s is not a tuning sample (coder's TestMixTuneDump writes one): %v", path, err)
	}
	return blocks
}

// replayBlocks runs replay on every block, two at a time, and returns each
// block's coded bits per column and the seconds per column summed over the
// blocks (replay may return nil seconds).
func replayBlocks(blocks []tuneBlock, replay func(*tuneBlock) (bits, secs []float64)) ([][]float64, []float64) {
	res := make([][]float64, len(blocks))
	var secs []float64
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, s := replay(&blocks[i])
				res[i] = r
				mu.Lock()
				if secs == nil {
					secs = make([]float64, len(s))
				}
				for j := range s {
					secs[j] += s[j]
				}
				mu.Unlock()
			}
		}()
	}
	for i := range blocks {
		next <- i
	}
	close(next)
	wg.Wait()
	return res, secs
}

// replayRun codes blk's bits with predictor p (given the bit position, the
// LM's probability and a fresh cm model of pred) and update up, and returns
// the coded bits and the seconds it took.
func replayRun(pred *cm.Predictor, blk *tuneBlock, p func(k int, pl int32, c *cm.Model) int, up func(bit int)) (float64, float64) {
	bm, err := pred.New(len(blk.Src), pred.Params(len(blk.Src)))
	if err != nil {
		panic(err)
	}
	c := bm.(*cm.Model)
	cost := 0.0
	t0 := time.Now()
	for t, b := range blk.Src {
		for k := range 8 {
			bit := int(b>>(7-k)) & 1
			pr := p(k, int32(blk.Probs[8*t+k]), c)
			cost += bitCost(pr, bit)
			up(bit)
			c.Update(bit)
		}
	}
	secs := time.Since(t0).Seconds()
	pred.Release(c)
	return cost, secs
}

// tuneTable formats the bits per byte of each column (res: per block and
// column) by kind of block, over the text-like kinds (TEXT) and over all.
// With vs >= 0 it adds TEXT relative to column vs, with secs the
// microseconds per byte of each column.
func tuneTable(blocks []tuneBlock, res [][]float64, cols []string, vs int, secs []float64) string {
	kinds := map[string][]int{}
	for i, b := range blocks {
		kinds[b.Kind] = append(kinds[b.Kind], i)
	}
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-16s %8s", "kind", "bytes")
	for _, c := range cols {
		fmt.Fprintf(&sb, " %9s", c)
	}
	sb.WriteString("\n")
	total := make([]float64, len(cols))
	textTotal := make([]float64, len(cols))
	var tn, ttn int
	for _, k := range ks {
		sum := make([]float64, len(cols))
		n := 0
		for _, i := range kinds[k] {
			n += len(blocks[i].Src)
			for j := range cols {
				sum[j] += res[i][j]
			}
		}
		tn += n
		media := strings.Contains(k, "audio") || strings.Contains(k, "wav") || strings.Contains(k, "ppm")
		if !media {
			ttn += n
		}
		fmt.Fprintf(&sb, "%-16s %8d", k, n)
		for j := range cols {
			total[j] += sum[j]
			if !media {
				textTotal[j] += sum[j]
			}
			fmt.Fprintf(&sb, " %9.4f", sum[j]/float64(n))
		}
		sb.WriteString("\n")
	}
	fmt.Fprintf(&sb, "%-16s %8d", "TEXT", ttn)
	for j := range cols {
		fmt.Fprintf(&sb, " %9.4f", textTotal[j]/float64(ttn))
	}
	if vs >= 0 {
		fmt.Fprintf(&sb, "\n%-16s %8s", "TEXT vs "+cols[vs]+" %", "")
		for j := range cols {
			fmt.Fprintf(&sb, " %+9.2f", 100*(textTotal[j]/textTotal[vs]-1))
		}
	}
	fmt.Fprintf(&sb, "\n%-16s %8d", "ALL", tn)
	for j := range cols {
		fmt.Fprintf(&sb, " %9.4f", total[j]/float64(tn))
	}
	if secs != nil {
		fmt.Fprintf(&sb, "\n%-16s %8s", "us/byte", "")
		for j := range cols {
			fmt.Fprintf(&sb, " %9.3f", 1e6*secs[j]/float64(tn))
		}
	}
	return sb.String()
}
