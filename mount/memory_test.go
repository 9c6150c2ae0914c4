package mount

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lmfs/lmfs/config"
)

// TestDaemonPeakRSS copies the benchmark corpus into a mount ten times and
// reads everything back, with the default configuration, and checks the
// daemon's peak resident set size (VmHWM) against 256 MiB plus cache.size
// plus fs.write_buffer. It reports the figure in the test log.
func TestDaemonPeakRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: copies the corpus ten times through a mount")
	}
	needFuse(t)
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Skipf("skipping: benchmark corpus not available at %s (%v)", corpusDir, err)
	}
	var files []string
	var total int64
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, e.Name())
			if fi, err := e.Info(); err == nil {
				total += fi.Size()
			}
		}
	}
	cfgPath := writeConfig(t, benchConfig)
	cfg, _, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	bound := int64(256<<20) + int64(cfg.Cache.Size) + int64(cfg.FS.WriteBuffer)
	mnt := t.TempDir()
	d := startLmfs(t, cfgPath, t.TempDir(), mnt)
	pid := d.cmd.Process.Pid
	base, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	for copyN := 0; copyN < 10; copyN++ {
		dir := filepath.Join(mnt, fmt.Sprint("copy", copyN))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if err := copyFile(filepath.Join(corpusDir, name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	wrote := time.Since(start)
	afterWrite, _ := vmHWM(pid)
	start = time.Now()
	for copyN := 0; copyN < 10; copyN++ {
		for _, name := range files {
			got, err := os.ReadFile(filepath.Join(mnt, fmt.Sprint("copy", copyN), name))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(corpusDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("copy%d/%s reads back differently", copyN, name)
			}
		}
	}
	read := time.Since(start)
	peak, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("corpus %d files, %.1f MiB, x10: written in %v, read back in %v", len(files), float64(total)/(1<<20), wrote.Round(time.Millisecond), read.Round(time.Millisecond))
	t.Logf("daemon VmHWM: %.1f MiB at start, %.1f MiB after writing, %.1f MiB peak (bound %.0f MiB = 256 MiB + cache.size %v + fs.write_buffer %v)",
		mib(base), mib(afterWrite), mib(peak), mib(bound), cfg.Cache.Size, cfg.FS.WriteBuffer)
	if peak > bound {
		t.Errorf("daemon peak RSS %.1f MiB exceeds the bound %.0f MiB", mib(peak), mib(bound))
	}
	d.stop(t)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
