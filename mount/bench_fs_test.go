package mount

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the whole filesystem, run against a real lmfs process
// (default configuration) and against a plain directory on the same disk in
// the same run. `make bench-fs` runs them and prints the lmfs/plain ratios.

// corpusDir is the public benchmark corpus (read in place, never copied into
// the project).
const corpusDir = "../../shared/eval/corpus"

// benchConfig is the default configuration, quieter.
const benchConfig = "log:\n  level: warn\n"

// textLike returns n bytes of text: the corpus's text-like files (text,
// code, log, json, csv) concatenated and repeated, or generated text when
// the corpus is absent.
func textLike(n int) []byte {
	out := make([]byte, 0, n)
	if f, err := os.Open(filepath.Join(corpusDir, "MANIFEST.tsv")); err == nil {
		var names []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			c := strings.Split(sc.Text(), "\t")
			if len(c) > 3 && strings.Contains(" text code log json csv ", " "+c[3]+" ") {
				names = append(names, c[0])
			}
		}
		f.Close()
		for len(out) < n && len(names) > 0 {
			for _, name := range names {
				b, err := os.ReadFile(filepath.Join(corpusDir, name))
				if err != nil {
					continue
				}
				out = append(out, b[:min(len(b), n-len(out))]...)
				if len(out) == n {
					return out
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no more out up into do any only time about")
	for len(out) < n {
		out = append(out, words[rng.IntN(len(words))]...)
		if rng.IntN(12) == 0 {
			out = append(out, ".\n"...)
		} else {
			out = append(out, ' ')
		}
	}
	return out[:n]
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// benchTargets returns the lmfs mountpoint (a separate lmfs process with the
// default configuration) and a plain directory on the same disk.
func benchTargets(b *testing.B) (lmfsDir, plainDir string, d *daemon) {
	b.Helper()
	needFuse(b)
	mnt := b.TempDir()
	d = startLmfs(b, writeConfig(b, benchConfig), b.TempDir(), mnt)
	return mnt, b.TempDir(), d
}

const benchFileSize = 128 << 20
const benchIO = 1 << 20

func writeFile(b *testing.B, p string, data []byte) {
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	for off := 0; off < len(data); off += benchIO {
		if _, err := f.Write(data[off:min(off+benchIO, len(data))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil { // lmfs stores the data on close
		b.Fatal(err)
	}
}

// dropCache asks the kernel to forget a file's cached pages, so that the
// next read reaches the filesystem (lmfs: the daemon; plain: the disk or
// what the device caches).
func dropCache(b *testing.B, p string) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	f.Sync()
	dropPageCache(f)
	f.Close()
}

// BenchmarkFSSeq measures sequential write (write(2) in 1 MiB pieces, then
// close) and sequential read (after dropping the page cache) of a 128 MiB
// file, compressible text and incompressible random bytes.
func BenchmarkFSSeq(b *testing.B) {
	lm, plain, _ := benchTargets(b)
	for _, kind := range []struct {
		name string
		data []byte
	}{{"text", textLike(benchFileSize)}, {"random", randomBytes(benchFileSize)}} {
		for _, target := range []struct{ name, dir string }{{"lmfs", lm}, {"plain", plain}} {
			p := filepath.Join(target.dir, kind.name)
			b.Run(fmt.Sprintf("write/%s/%s", kind.name, target.name), func(b *testing.B) {
				b.SetBytes(int64(len(kind.data)))
				for i := 0; i < b.N; i++ {
					os.Remove(p)
					writeFile(b, p, kind.data)
				}
			})
			b.Run(fmt.Sprintf("read/%s/%s", kind.name, target.name), func(b *testing.B) {
				buf := make([]byte, benchIO)
				b.SetBytes(int64(len(kind.data)))
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					dropCache(b, p)
					b.StartTimer()
					f, err := os.Open(p)
					if err != nil {
						b.Fatal(err)
					}
					n := 0
					for {
						k, err := f.Read(buf)
						n += k
						if err != nil || k == 0 {
							break
						}
					}
					f.Close()
					if n != len(kind.data) {
						b.Fatalf("read %d bytes, want %d", n, len(kind.data))
					}
				}
			})
		}
	}
}

// BenchmarkFSMeta measures creating (open O_CREAT, write 100 bytes, close),
// stat'ing and unlinking 10,000 small files in one directory; each op is one
// file, reported as ns/op and files/s.
func BenchmarkFSMeta(b *testing.B) {
	lm, plain, _ := benchTargets(b)
	const files = 10_000
	payload := []byte(strings.Repeat("small file\n", 9))[:100]
	for _, target := range []struct{ name, dir string }{{"lmfs", lm}, {"plain", plain}} {
		var create, stat, unlink time.Duration
		var rounds int
		b.Run("all/"+target.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				dir := filepath.Join(target.dir, fmt.Sprintf("meta%d-%d", rounds, i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				for j := 0; j < files; j++ {
					fd, err := syscall.Open(filepath.Join(dir, fmt.Sprint("f", j)), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_EXCL, 0o644)
					if err != nil {
						b.Fatal(err)
					}
					syscall.Write(fd, payload)
					syscall.Close(fd)
				}
				t1 := time.Now()
				var st syscall.Stat_t
				for j := 0; j < files; j++ {
					if err := syscall.Stat(filepath.Join(dir, fmt.Sprint("f", j)), &st); err != nil || st.Size != 100 {
						b.Fatalf("stat: %v, size %d", err, st.Size)
					}
				}
				t2 := time.Now()
				for j := 0; j < files; j++ {
					if err := syscall.Unlink(filepath.Join(dir, fmt.Sprint("f", j))); err != nil {
						b.Fatal(err)
					}
				}
				t3 := time.Now()
				os.Remove(dir)
				create += t1.Sub(t0)
				stat += t2.Sub(t1)
				unlink += t3.Sub(t2)
			}
			rounds++
			n := float64(b.N * files)
			b.ReportMetric(n/create.Seconds(), "creates/s")
			b.ReportMetric(n/stat.Seconds(), "stats/s")
			b.ReportMetric(n/unlink.Seconds(), "unlinks/s")
			b.ReportMetric(0, "ns/op")
			create, stat, unlink = 0, 0, 0
		})
	}
}
