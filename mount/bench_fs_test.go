package mount

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lmfs/lmfs/blockstore"
	lfs "github.com/lmfs/lmfs/fs"
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

// BenchmarkFSReadCM measures the target of read-ahead: a sequential read
// (cat) of a cm-coded file through the mount (policy balanced, written fast
// and recompressed to cm in the background, then remounted so nothing is
// cached) against `lmfs decompress` of an archive of the same file made with
// `lmfs compress --codec cm`, with all cores, in the same run. It reports
// both rates and their ratio (mount/decompress; the target is at least 0.8).
func BenchmarkFSReadCM(b *testing.B) {
	needFuse(b)
	const size = 4 << 20
	data := textLike(size)
	bin := lmfsBinary(b)
	work := b.TempDir()
	in := filepath.Join(work, "in")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		b.Fatal(err)
	}
	arc := filepath.Join(work, "in.lmfs")
	if out, err := exec.Command(bin, "compress", "--codec", "cm", "--block-size", "64KiB", in, arc).CombinedOutput(); err != nil {
		b.Fatalf("lmfs compress: %v\n%s", err, out)
	}
	cfg := writeConfig(b, fmt.Sprintf("log:\n  level: warn\ncodec:\n  policy: balanced\nrecompress:\n  enabled: true\n  idle: 100ms\n  workers: %d\n", runtime.NumCPU()))
	store, mnt := b.TempDir(), b.TempDir()
	d := startLmfs(b, cfg, store, mnt)
	p := filepath.Join(mnt, "f")
	writeFile(b, p, data)
	// Wait until recompression has coded every block with cm.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		raw, err := getxattr(mnt, lfs.StatsXattr)
		if err != nil {
			b.Fatal(err)
		}
		var st blockstore.Stats
		if err := json.Unmarshal(raw, &st); err != nil {
			b.Fatal(err)
		}
		var waiting uint64
		for _, n := range st.Waiting {
			waiting += n
		}
		if waiting == 0 {
			if st.Blocks[3] == 0 {
				b.Fatalf("recompressed, but no block is cm-coded: %+v", st)
			}
			b.Logf("store: %d cm blocks of %d, %d stored bytes", st.Blocks[3], blocksIn(st), st.StoredBytes)
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d blocks still wait for recompression", waiting)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(b)
	var mountTime, decTime time.Duration
	for i := 0; i < b.N; i++ {
		d = startLmfs(b, cfg, store, mnt) // nothing cached
		t0 := time.Now()
		cat := exec.Command("cat", p)
		out, err := cat.Output()
		mountTime += time.Since(t0)
		if err != nil || len(out) != size {
			b.Fatalf("cat through the mount: %v, %d bytes", err, len(out))
		}
		d.stop(b)
		if !bytes.Equal(out, data) {
			b.Fatal("cat through the mount returned wrong bytes")
		}
		dst := filepath.Join(work, "out")
		t0 = time.Now()
		if out, err := exec.Command(bin, "decompress", "-f", arc, dst).CombinedOutput(); err != nil {
			b.Fatalf("lmfs decompress: %v\n%s", err, out)
		}
		decTime += time.Since(t0)
	}
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/mountTime.Seconds(), "mount-MB/s")
	b.ReportMetric(mb/decTime.Seconds(), "decompress-MB/s")
	b.ReportMetric(decTime.Seconds()/mountTime.Seconds(), "mount/decompress")
	b.ReportMetric(0, "ns/op")
}

func blocksIn(st blockstore.Stats) uint64 {
	var n uint64
	for _, c := range st.Blocks {
		n += c
	}
	return n
}

func getxattr(path, name string) ([]byte, error) {
	buf := make([]byte, 1<<16)
	n, err := syscall.Getxattr(path, name, buf)
	for err == syscall.EINTR { // Go's preemption signals interrupt FUSE requests
		n, err = syscall.Getxattr(path, name, buf)
	}
	if err != nil {
		return nil, fmt.Errorf("getxattr %s %s: %w", path, name, err)
	}
	return buf[:n], nil
}
