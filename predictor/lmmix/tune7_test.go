package lmmix

import (
	"encoding/gob"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmfs/lmfs/predictor/cm"
)

// cxNames are short names of the contexts, for tables.
var cxNames = [nCx]string{"word2", "col", "sp23", "sp13", "ind", "o8", "above", "sp24", "w12", "w02", "o12", "ind2"}

// tune7Configs lists the id 7 variants TestTune7 compares with cm and id 6.
// LMFS_MIXTUNE7=name,name selects some of them.
func tune7Configs() ([]string, []opts7) {
	var names []string
	var os7 []opts7
	add := func(n string, o opts7) { names = append(names, n); os7 = append(os7, o) }
	add("final", final7)
	for i := range nCx {
		if final7.ctx>>i&1 != 0 {
			add("-"+cxNames[i], opts7{ctx: final7.ctx &^ (1 << i), slotShift: final7.slotShift})
		}
	}
	add("E0", opts7{}) // no contexts: id 6's bits
	add("final/2", opts7{ctx: final7.ctx, slotShift: 1})
	add("final*4", opts7{ctx: final7.ctx, slotShift: 4})
	C7 := uint32(1<<cxWord2 | 1<<cxCol | 1<<cxInd | 1<<cxAbove | 1<<cxSp24 | 1<<cxW02 | 1<<cxO12)
	add("C7", opts7{ctx: C7, slotShift: 2})
	C5 := uint32(1<<cxWord2 | 1<<cxCol | 1<<cxInd | 1<<cxW02 | 1<<cxSp24)
	add("C5", opts7{ctx: C5, slotShift: 2})
	return names, os7
}

// TestTune7 replays the cached LM probabilities (LMFS_MIXTUNE) through cm,
// id 6 and id 7 variants and prints bits per byte per kind.
func TestTune7(t *testing.T) {
	path := os.Getenv("LMFS_MIXTUNE")
	if path == "" {
		t.Skip("set LMFS_MIXTUNE=file written by coder's TestMixTuneDump")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []tuneBlock
	if err := gob.NewDecoder(f).Decode(&blocks); err != nil {
		t.Fatal(err)
	}
	f.Close()
	names, cfgs := tune7Configs()
	if sel := os.Getenv("LMFS_MIXTUNE7"); sel != "" {
		want := map[string]bool{}
		for _, s := range strings.Split(sel, ",") {
			want[s] = true
		}
		var n2 []string
		var c2 []opts7
		for i, n := range names {
			if want[n] {
				n2 = append(n2, n)
				c2 = append(c2, cfgs[i])
			}
		}
		names, cfgs = n2, c2
	}
	cols := append([]string{"cm", "id6"}, names...)
	res := make([][]float64, len(blocks))
	secs := make([]float64, len(cols))
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, s := replay7(&blocks[i], cfgs)
				res[i] = r
				mu.Lock()
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
	fmt.Fprintf(&sb, "\n%-16s %8s", "TEXT vs id6 %", "")
	for j := range cols {
		fmt.Fprintf(&sb, " %+9.2f", 100*(textTotal[j]/textTotal[1]-1))
	}
	fmt.Fprintf(&sb, "\n%-16s %8d", "ALL", tn)
	for j := range cols {
		fmt.Fprintf(&sb, " %9.4f", total[j]/float64(tn))
	}
	fmt.Fprintf(&sb, "\n%-16s %8s", "us/byte", "")
	for j := range cols {
		fmt.Fprintf(&sb, " %9.3f", 1e6*secs[j]/float64(tn))
	}
	t.Log("\n" + sb.String())
}

// replay7 returns the coded bits of blk for cm alone, id 6 and the id 7
// variants, and the seconds each took (cm included).
func replay7(blk *tuneBlock, cfgs []opts7) ([]float64, []float64) {
	pred := cm.New(64 << 20)
	out := make([]float64, 2+len(cfgs))
	secs := make([]float64, 2+len(cfgs))
	run := func(slot int, p func(pl int32, c *cm.Model) int, up func(bit int)) {
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
				pr := p(int32(blk.Probs[8*t+k]), c)
				cost += bitCost(pr, bit)
				up(bit)
				c.Update(bit)
			}
		}
		secs[slot] = time.Since(t0).Seconds()
		out[slot] = cost
		pred.Release(c)
	}
	run(0, func(pl int32, c *cm.Model) int { return c.P() }, func(int) {})
	fm := New()
	run(1, fm.P, fm.Update)
	for i, o := range cfgs {
		m := newMixer7(o, len(blk.Src))
		run(2+i, m.P, m.Update)
	}
	return out, secs
}

// TestCost7 codes 32 KiB once with the configuration LMFS_COST names (a
// tune7Configs name, "id6", "cm" or "none"): for counting instructions
// under valgrind, which contention on a shared machine does not disturb.
func TestCost7(t *testing.T) {
	name := os.Getenv("LMFS_COST")
	if name == "" {
		t.Skip("set LMFS_COST")
	}
	src := goldenInput(32 << 10)
	pl := order2P(t, src)
	lmP := func(i, k int) int32 { return pl[8*i+k] }
	pred := cm.New(64 << 20)
	switch name {
	case "none":
	case "cm":
		bm, _ := pred.New(len(src), pred.Params(len(src)))
		for _, b := range src {
			for k := range 8 {
				bm.P()
				bm.Update(int(b>>(7-k)) & 1)
			}
		}
	case "id6":
		probs(t, src, lmP)
	default:
		names, cfgs := tune7Configs()
		for i, n := range names {
			if n == name {
				probs7(t, newMixer7(cfgs[i], len(src)), src, lmP)
			}
		}
	}
}
