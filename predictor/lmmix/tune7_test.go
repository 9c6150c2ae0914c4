package lmmix

import (
	"os"
	"strings"
	"testing"

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
	blocks := loadTuneBlocks(t)
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
	res, secs := replayBlocks(blocks, func(blk *tuneBlock) ([]float64, []float64) { return replay7(blk, cfgs) })
	t.Log("\n" + tuneTable(blocks, res, cols, 1, secs))
}

// replay7 returns the coded bits of blk for cm alone, id 6 and the id 7
// variants, and the seconds each took (cm included).
func replay7(blk *tuneBlock, cfgs []opts7) ([]float64, []float64) {
	pred := cm.New(64 << 20)
	out := make([]float64, 2+len(cfgs))
	secs := make([]float64, 2+len(cfgs))
	run := func(slot int, p func(pl int32, c *cm.Model) int, up func(bit int)) {
		out[slot], secs[slot] = replayRun(pred, blk, func(_ int, pl int32, c *cm.Model) int { return p(pl, c) }, up)
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
