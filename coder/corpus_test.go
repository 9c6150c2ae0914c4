package coder

import (
	"bufio"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	corpusFlag   = flag.Bool("corpus", false, "measure bits per byte of cm and zstd -19 over the text-like files of the benchmark corpus (slow)")
	corpusSample = flag.Int("corpus.sample", 1, "with -corpus, code only every Nth block (quick estimates; the target is checked only for N=1)")
)

// corpusDir finds the public benchmark corpus: $LMFS_CORPUS, or
// ../shared/eval/corpus relative to the repository root.
func corpusDir() string {
	if d := os.Getenv("LMFS_CORPUS"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "eval", "corpus")
}

type corpusFile struct {
	name, kind string
	data       []byte
}

// textLike are the MANIFEST kinds the cm target is measured on.
var textLike = map[string]bool{"text": true, "code": true, "log": true, "json": true, "csv": true}

// loadCorpus reads the corpus files whose kind passes keep, skipping the test
// when the corpus is absent.
func loadCorpus(tb testing.TB, keep func(kind string) bool) []corpusFile {
	tb.Helper()
	dir := corpusDir()
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		tb.Skipf("benchmark corpus not found (%v): set LMFS_CORPUS or check out ../shared", err)
	}
	defer f.Close()
	var files []corpusFile
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		col := strings.Split(sc.Text(), "\t")
		if first || len(col) < 4 || !keep(col[3]) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, col[0]))
		if err != nil {
			tb.Fatalf("corpus file listed in MANIFEST.tsv: %v", err)
		}
		files = append(files, corpusFile{name: col[0], kind: col[3], data: data})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return files
}

// blocksOf cuts b into independent blocks of size bs, the last one short.
func blocksOf(b []byte, bs int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(bs, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// codedSize returns the total payload size of blocks coded with c, using
// workers goroutines.
func codedSize(tb testing.TB, c Codec, blocks [][]byte, workers int) int {
	tb.Helper()
	sizes := make([]int, len(blocks))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for i := range next {
				var err error
				buf, err = c.Encode(context.Background(), buf[:0], blocks[i])
				if err != nil {
					tb.Error(err)
					continue
				}
				sizes[i] = len(buf)
			}
		}()
	}
	for i := range blocks {
		next <- i
	}
	close(next)
	wg.Wait()
	total := 0
	for _, s := range sizes {
		total += s
	}
	return total
}

// TestCorpusBPB reports bits per byte over the text-like corpus files cut
// into 64 KiB blocks, for cm and zstd -19, and fails if cm misses its target
// of 1.75. Run with -corpus.
func TestCorpusBPB(t *testing.T) {
	if !*corpusFlag {
		t.Skip("run with -corpus to measure the corpus")
	}
	files := loadCorpus(t, func(k string) bool { return textLike[k] })
	z, err := NewZstd(19)
	if err != nil {
		t.Fatal(err)
	}
	codecs := []Codec{NewCM(DefaultOptions().CMMemory), z}
	raw := 0
	tot := make([]int, len(codecs))
	for _, f := range files {
		blocks := blocksOf(f.data, 64<<10)
		if *corpusSample > 1 {
			var keep [][]byte
			for i := 0; i < len(blocks); i += *corpusSample {
				keep = append(keep, blocks[i])
			}
			blocks = keep
		}
		n := 0
		for _, b := range blocks {
			n += len(b)
		}
		raw += n
		line := ""
		for i, c := range codecs {
			size := codedSize(t, c, blocks, 2)
			tot[i] += size
			line += " " + c.Name() + "=" + bpbString(size, n)
		}
		t.Logf("%-24s %-5s %9d%s", f.name, f.kind, n, line)
	}
	line := ""
	for i, c := range codecs {
		line += " " + c.Name() + "=" + bpbString(tot[i], raw)
	}
	t.Logf("%-24s %-5s %9d%s", "TOTAL", "", raw, line)
	if got := float64(tot[0]) * 8 / float64(raw); got > 1.75 && *corpusSample <= 1 {
		t.Errorf("cm: %.4f bits per byte over the text-like corpus, target 1.75", got)
	}
}

func bpbString(n, raw int) string {
	return strings.TrimRight(strings.TrimRight(formatFloat(float64(n)*8/float64(raw)), "0"), ".")
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', 4, 64) }
