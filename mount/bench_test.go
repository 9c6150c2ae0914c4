package mount

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// benchData returns n bytes of compressible text or of random bytes.
func benchData(kind string, n int) []byte {
	rng := rand.New(rand.NewSource(1))
	b := make([]byte, n)
	if kind == "random" {
		rng.Read(b)
		return b
	}
	words := strings.Fields("the of and to in is was that for on with as by at from this filesystem block coder stored data file written read language model compress")
	var sb strings.Builder
	for sb.Len() < n {
		sb.WriteString(words[rng.Intn(len(words))])
		if rng.Intn(12) == 0 {
			sb.WriteString(".\n")
		} else {
			sb.WriteByte(' ')
		}
	}
	return []byte(sb.String()[:n])
}

// benchDirs returns the lmfs mount and a plain directory on the disk that
// holds the store, to compare in the same run.
func benchDirs(b *testing.B) map[string]string {
	needFuse(b)
	// The default configuration: 64 KiB blocks, 64 MiB write buffer and
	// cache, codec policy balanced.
	cfg := cfgFor(b.TempDir())
	cfg.FS.BlockSize, cfg.FS.WriteBuffer, cfg.Cache.Size = 64<<10, 64<<20, 64<<20
	cfg.Codec.Policy, cfg.Codec.Workers = "balanced", 0
	cfg.Store.MemTableSize = 16 << 20
	mnt := b.TempDir()
	m, err := Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := m.Close(); err != nil {
			b.Error(err)
		}
	})
	return map[string]string{"lmfs": mnt, "plain": b.TempDir()}
}

// BenchmarkSeqWrite writes a 64 MiB file in 1 MiB writes and fsyncs it.
func BenchmarkSeqWrite(b *testing.B) {
	dirs := benchDirs(b)
	for _, kind := range []string{"text", "random"} {
		data := benchData(kind, 64<<20)
		for _, where := range []string{"plain", "lmfs"} {
			b.Run(kind+"/"+where, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				for i := 0; i < b.N; i++ {
					p := filepath.Join(dirs[where], fmt.Sprintf("w-%s-%d", kind, i))
					f, err := os.Create(p)
					if err != nil {
						b.Fatal(err)
					}
					for off := 0; off < len(data); off += 1 << 20 {
						if _, err := f.Write(data[off : off+1<<20]); err != nil {
							b.Fatal(err)
						}
					}
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
					f.Close()
					b.StopTimer()
					os.Remove(p)
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkSeqRead reads a 96 MiB file in 1 MiB reads with the page cache
// of the file dropped first, so that lmfs decodes every block (its own
// block cache, 64 MiB, is smaller than the file).
func BenchmarkSeqRead(b *testing.B) {
	dirs := benchDirs(b)
	for _, kind := range []string{"text", "random"} {
		data := benchData(kind, 96<<20)
		for _, where := range []string{"plain", "lmfs"} {
			p := filepath.Join(dirs[where], "r-"+kind)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				b.Fatal(err)
			}
			b.Run(kind+"/"+where, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				buf := make([]byte, 1<<20)
				for i := 0; i < b.N; i++ {
					f, err := os.Open(p)
					if err != nil {
						b.Fatal(err)
					}
					f.Sync()
					unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
					for {
						n, err := f.Read(buf)
						if n == 0 || err != nil {
							break
						}
					}
					f.Close()
				}
			})
		}
	}
}

// BenchmarkMetadata creates, stats and unlinks b.N small files (run with
// -benchtime=10000x for the 10,000 files of the issue); ns/op is per file
// for all three operations.
func BenchmarkMetadata(b *testing.B) {
	dirs := benchDirs(b)
	for _, where := range []string{"plain", "lmfs"} {
		b.Run(where, func(b *testing.B) {
			dir := filepath.Join(dirs[where], fmt.Sprintf("meta-%d", b.N))
			os.Mkdir(dir, 0o755)
			for i := 0; i < b.N; i++ {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < b.N; i++ {
				if _, err := os.Stat(filepath.Join(dir, fmt.Sprint(i))); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < b.N; i++ {
				if err := os.Remove(filepath.Join(dir, fmt.Sprint(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
