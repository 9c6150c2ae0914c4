package mount

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashConfig: small blocks so files span many, a small write buffer so the
// background flusher is busy when the daemon is killed.
const crashConfig = `store:
  gc_interval: 1h
  memtable_size: 4MiB
fs:
  block_size: 4KiB
  write_buffer: 2MiB
cache:
  size: 1MiB
codec:
  policy: fast
log:
  level: warn
`

// crashState is what the test knows must be on the filesystem.
type crashState struct {
	synced   map[string][]byte // fsync'ed and not touched since: exact
	links    map[string]string // symlinks (made before an fsync)
	volatile map[string][2][]byte
}

func writeSynced(t *testing.T, p string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", p, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func crashData(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	if rng.IntN(2) == 0 {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	w := []string{"block ", "crash ", "fsync ", "kill ", "lmfs ", "store\n"}
	for i := 0; i < n; {
		i += copy(b[i:], w[rng.IntN(len(w))])
	}
	return b
}

// verify checks the mounted filesystem against what must have survived.
func (s *crashState) verify(t *testing.T, mnt string, round int) {
	t.Helper()
	for rel, want := range s.synced {
		got, err := os.ReadFile(filepath.Join(mnt, rel))
		if err != nil {
			t.Fatalf("round %d: fsync'ed file %s: %v", round, rel, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: fsync'ed file %s: %d bytes, want %d, first difference at %d", round, rel, len(got), len(want), firstDiff(got, want))
		}
	}
	for rel, target := range s.links {
		if got, err := os.Readlink(filepath.Join(mnt, rel)); err != nil || got != target {
			t.Fatalf("round %d: symlink %s -> %q, %v; want %q", round, rel, got, err, target)
		}
	}
	for rel, v := range s.volatile {
		old, upd := v[0], v[1]
		got, err := os.ReadFile(filepath.Join(mnt, rel))
		if err != nil {
			t.Fatalf("round %d: file %s overwritten without fsync: %v", round, rel, err)
		}
		if len(got) != len(old) {
			t.Fatalf("round %d: file %s overwritten in place without fsync has %d bytes, want %d", round, rel, len(got), len(old))
		}
		for i := range got {
			if got[i] != old[i] && got[i] != upd[i] {
				t.Fatalf("round %d: file %s byte %d is %#x, neither the fsync'ed %#x nor the newer %#x", round, rel, i, got[i], old[i], upd[i])
			}
		}
	}
}

func fsckStore(t *testing.T, store string) {
	t.Helper()
	out, err := exec.Command(lmfsBinary(t), "fsck", "--store", store).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "clean") {
		t.Fatalf("lmfs fsck --store %s: %v\n%s", store, err, out)
	}
	t.Logf("fsck: %s", strings.TrimSpace(string(out)))
}

// TestCrashKill9 writes and fsyncs files through a real lmfs process, keeps
// writing without fsync, kills the process with SIGKILL, remounts, and checks
// that everything fsync'ed is intact, that nothing older was damaged, and
// that fsck finds the store clean. Several rounds, each on the survivor of
// the last.
func TestCrashKill9(t *testing.T) {
	needFuse(t)
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	cfg := writeConfig(t, crashConfig)
	store, mnt := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewPCG(6, 9))
	st := &crashState{synced: map[string][]byte{}, links: map[string]string{}, volatile: map[string][2][]byte{}}
	for round := 0; round < rounds; round++ {
		d := startLmfs(t, cfg, store, mnt)
		st.verify(t, mnt, round)
		dir := fmt.Sprintf("r%d", round)
		if err := os.MkdirAll(filepath.Join(mnt, dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		// Files of several shapes, each fsync'ed.
		for i, n := range []int{0, 1, 4095, 4096, 4097, 100_000, 300_000} {
			rel := fmt.Sprintf("%s/f%d", dir, i)
			data := crashData(rng, n)
			writeSynced(t, filepath.Join(mnt, rel), data)
			st.synced[rel] = data
		}
		// A sparse file: a hole, then data.
		sparse := filepath.Join(dir, "sparse")
		f, err := os.Create(filepath.Join(mnt, sparse))
		if err != nil {
			t.Fatal(err)
		}
		tail := crashData(rng, 5000)
		f.WriteAt(tail, 200_000)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		st.synced[sparse] = append(make([]byte, 200_000), tail...)
		// Namespace changes, made durable by the next fsync (which syncs
		// the whole store).
		if err := os.Link(filepath.Join(mnt, dir, "f5"), filepath.Join(mnt, dir, "sub", "hard")); err != nil {
			t.Fatal(err)
		}
		st.synced[dir+"/sub/hard"] = st.synced[dir+"/f5"]
		if err := os.Symlink("../f6", filepath.Join(mnt, dir, "sub", "sym")); err != nil {
			t.Fatal(err)
		}
		st.links[dir+"/sub/sym"] = "../f6"
		if err := os.Rename(filepath.Join(mnt, dir, "f4"), filepath.Join(mnt, dir, "sub", "moved")); err != nil {
			t.Fatal(err)
		}
		st.synced[dir+"/sub/moved"] = st.synced[dir+"/f4"]
		delete(st.synced, dir+"/f4")
		// Rewrite a file of an earlier round in the middle, with fsync.
		if round > 0 {
			rel := fmt.Sprintf("r%d/f5", round-1)
			old := st.synced[rel]
			patch := crashData(rng, 10_000)
			f, err := os.OpenFile(filepath.Join(mnt, rel), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(patch, 33_333)
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			upd := bytes.Clone(old)
			copy(upd[33_333:], patch)
			st.synced[rel] = upd
			if rel2 := fmt.Sprintf("r%d/sub/hard", round-1); st.synced[rel2] != nil {
				st.synced[rel2] = upd
			}
		}
		volatile := dir + "/volatile"
		old := crashData(rng, 50_000)
		writeSynced(t, filepath.Join(mnt, volatile), old)

		// Now work that is not fsync'ed: an in-place overwrite, new files,
		// and a stream still being written when the daemon dies.
		upd := bytes.Clone(old)
		patch := crashData(rng, 30_000)
		copy(upd[7000:], patch)
		vf, err := os.OpenFile(filepath.Join(mnt, volatile), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		vf.WriteAt(patch, 7000)
		st.volatile[volatile] = [2][]byte{old, upd}
		for i := 0; i < 5; i++ {
			os.WriteFile(filepath.Join(mnt, dir, fmt.Sprintf("unsynced%d", i)), crashData(rng, 70_000), 0o644)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			sf, err := os.Create(filepath.Join(mnt, dir, "stream"))
			if err != nil {
				return
			}
			defer sf.Close()
			chunk := bytes.Repeat([]byte("streaming until the daemon dies\n"), 2048)
			// Rewrite the first 8 MiB over and over: blocks are being
			// replaced, not only added, when the daemon dies.
			for off := int64(0); ; off = (off + int64(len(chunk))) % (8 << 20) {
				if _, err := sf.WriteAt(chunk, off); err != nil {
					return // ENOTCONN once the daemon is gone
				}
			}
		}()
		time.Sleep(300 * time.Millisecond)
		d.kill9(t)
		wg.Wait()
		vf.Close()
		fsckStore(t, store)
	}
	d := startLmfs(t, cfg, store, mnt)
	st.verify(t, mnt, rounds)
	// Files written after the kill work normally.
	writeSynced(t, filepath.Join(mnt, "after"), []byte("after the crashes"))
	d.stop(t)
	fsckStore(t, store)
}
