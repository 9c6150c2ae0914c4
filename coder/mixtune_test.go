package coder

// A harness for tuning lm+cm mixers on cached LM probabilities (not part of
// the default test run). LMFS_MIXTUNE_DUMP=file computes the LM's bit-path
// probabilities of a stratified sample of the LM's validation split and of
// media blocks of its training data once; LMFS_MIXTUNE=file replays them
// through cm and the mixers and prints bits per byte per kind.

import (
	"bufio"
	"context"
	"encoding/gob"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lmfs/lmfs/predictor"
)

type tuneBlock struct {
	Kind  string
	Src   []byte
	Probs []uint16 // 8 per byte: the LM's P(bit = 1) along the coded path
}

func tuneSample(t *testing.T) []tuneBlock {
	const dir = "/tmp/corpus/out/"
	val, err := os.ReadFile(dir + "val.bin")
	if err != nil {
		t.Skip(err)
	}
	f, err := os.Open(dir + "val_index.tsv")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	type doc struct{ off, n int }
	docs := map[string][]doc{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		off, err1 := strconv.Atoi(c[1])
		n, err2 := strconv.Atoi(c[2])
		if err1 != nil || err2 != nil {
			continue
		}
		docs[c[0]] = append(docs[c[0]], doc{off, n})
	}
	per := map[string]int{"prose": 10, "prose-l10n": 10, "code-python": 10, "html": 8, "html-l10n": 4, "xml": 10, "audio": 5}
	rng := rand.New(rand.NewSource(1))
	var out []tuneBlock
	kinds := make([]string, 0, len(per))
	for k := range per {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ds := docs[k]
		seen := map[string]bool{}
		for tries := 0; tries < 1000 && per[k] > 0; tries++ {
			// a byte of the kind at random: long documents weigh more, as
			// they do in a file system
			tot := 0
			for _, d := range ds {
				tot += d.n
			}
			r := rng.Intn(tot)
			var d doc
			for _, d = range ds {
				if r < d.n {
					break
				}
				r -= d.n
			}
			b := r / 65536
			key := fmt.Sprint(d.off, b)
			if seen[key] {
				continue
			}
			seen[key] = true
			s := d.off + b*65536
			e := min(s+65536, d.off+d.n)
			out = append(out, tuneBlock{Kind: "val-" + k, Src: val[s:e]})
			per[k]--
		}
	}
	tr, err := os.ReadFile(dir + "trainA.bin")
	if err != nil {
		t.Skip(err)
	}
	for _, off := range []int{248180362, 255188677 + 65536, 256499415, 263315267 + 65536} {
		out = append(out, tuneBlock{Kind: "train-ppm", Src: tr[off : off+65536]})
	}
	for _, off := range []int{250241208 + 65536, 254383784, 255063254 + 65536} {
		out = append(out, tuneBlock{Kind: "train-wav", Src: tr[off : off+65536]})
	}
	for i := 0; i < 5; i++ {
		off := rng.Intn(len(tr)/65536-1) * 65536
		out = append(out, tuneBlock{Kind: "train-rnd", Src: tr[off : off+65536]})
	}
	return out
}

// TestMixTuneDump writes the sample with the default LM's probabilities.
func TestMixTuneDump(t *testing.T) {
	path := os.Getenv("LMFS_MIXTUNE_DUMP")
	if path == "" {
		t.Skip("set LMFS_MIXTUNE_DUMP=file")
	}
	m := defaultModel(t)
	blocks := tuneSample(t)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b := &blocks[i]
				b.Probs = make([]uint16, 8*len(b.Src))
				var cum [257]uint32
				err := m.Score(context.Background(), [][]byte{b.Src}, func(_, pos int, d *predictor.Dist) error {
					if err := cumulate(d, &cum); err != nil {
						return err
					}
					pathProbs(&cum, b.Src[pos], b.Probs[8*pos:8*pos+8])
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range blocks {
		next <- i
	}
	close(next)
	wg.Wait()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := gob.NewEncoder(f).Encode(blocks); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range blocks {
		n += len(b.Src)
	}
	t.Logf("%d blocks, %d bytes", len(blocks), n)
}

// TestMixEval reports cm, lm+cm.1 (id 5) and lm+cm (id 6) payload sizes at
// 64 KiB blocks over the benchmark corpus's text-like files and its three
// media files, with the LM run once per block (LMFS_MIXEVAL=1; slow). For
// reporting only: nothing is tuned on this corpus.
func TestMixEval(t *testing.T) {
	if os.Getenv("LMFS_MIXEVAL") == "" {
		t.Skip("set LMFS_MIXEVAL=1")
	}
	media := map[string]bool{"english.wav": true, "testorig.ppm": true, "cmx3g8_mcidas.tiff": true}
	files := loadCorpus(t, func(string) bool { return true })
	m := defaultModel(t)
	type blk struct {
		file, kind string
		src        []byte
		size       [3]int
	}
	var blocks []*blk
	for _, f := range files {
		if !textLike[f.kind] && !media[f.name] {
			continue
		}
		for _, b := range blocksOf(f.data, 64<<10) {
			blocks = append(blocks, &blk{file: f.name, kind: f.kind, src: b})
		}
	}
	c5, c6, cmc := NewLMCM1(m, 64<<20), NewLMCM(m, 64<<20), NewCM(64<<20)
	var wg sync.WaitGroup
	next := make(chan *blk)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range next {
				probs := make([]uint16, 8*len(b.src))
				var cum [257]uint32
				err := m.Score(context.Background(), [][]byte{b.src}, func(_, pos int, d *predictor.Dist) error {
					if err := cumulate(d, &cum); err != nil {
						return err
					}
					pathProbs(&cum, b.src[pos], probs[8*pos:8*pos+8])
					return nil
				})
				if err != nil {
					t.Error(err)
					continue
				}
				p, err := cmc.Encode(context.Background(), nil, b.src)
				b.size[0] = len(p)
				if err == nil {
					p, err = c5.encodeProbs(nil, b.src, probs)
					b.size[1] = len(p)
				}
				if err == nil {
					p, err = c6.encodeProbs(nil, b.src, probs)
					b.size[2] = len(p)
				}
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for _, b := range blocks {
		next <- b
	}
	close(next)
	wg.Wait()
	type tot struct {
		n    int
		size [3]int
	}
	byFile, byKind := map[string]*tot{}, map[string]*tot{}
	var text tot
	var names []string
	for _, b := range blocks {
		if byFile[b.file] == nil {
			names = append(names, b.file)
		}
		for _, tt := range []struct {
			m map[string]*tot
			k string
		}{{byFile, b.file}, {byKind, b.kind}} {
			if tt.m[tt.k] == nil {
				tt.m[tt.k] = &tot{}
			}
			x := tt.m[tt.k]
			x.n += len(b.src)
			for i := range 3 {
				x.size[i] += b.size[i]
			}
		}
		if textLike[b.kind] {
			text.n += len(b.src)
			for i := range 3 {
				text.size[i] += b.size[i]
			}
		}
	}
	var sb strings.Builder
	line := func(name string, x *tot) {
		fmt.Fprintf(&sb, "%-28s %9d", name, x.n)
		for i := range 3 {
			fmt.Fprintf(&sb, " %8.4f", 8*float64(x.size[i])/float64(x.n))
		}
		fmt.Fprintf(&sb, "  id6/cm %+6.2f%%  id6/id5 %+6.2f%%\n", 100*(float64(x.size[2])/float64(x.size[0])-1), 100*(float64(x.size[2])/float64(x.size[1])-1))
	}
	fmt.Fprintf(&sb, "%-28s %9s %8s %8s %8s (bits per byte, payloads at 64 KiB blocks)\n", "file", "bytes", "cm", "id5", "id6")
	for _, n := range names {
		line(n, byFile[n])
	}
	var kinds []string
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		line("kind "+k, byKind[k])
	}
	line("TEXT-LIKE", &text)
	t.Log("\n" + sb.String())
}
