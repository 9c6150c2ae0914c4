package mount

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestFSXMount runs the randomized fsx harness (runFSX) against a file in a
// real lmfs mount, several seeds, with I/O sizes that cross the 4 KiB blocks
// of the test store and files that span many blocks, compared against a file
// in a plain directory. The mount is served by a separate lmfs process: the
// harness reads through mmap, and a page fault on a FUSE mapping served by
// the faulting process itself can deadlock with the Go runtime's
// stop-the-world (the faulting thread cannot be preempted while the server
// goroutines wait for the GC).
func TestFSXMount(t *testing.T) {
	needFuse(t)
	mnt := t.TempDir()
	d := startLmfs(t, writeConfig(t, crashConfig), t.TempDir(), mnt)
	seeds, ops := []uint64{1, 2, 3, 4}, 750 // 3000 operations in all
	if testing.Short() {
		seeds, ops = []uint64{1, 2}, 300
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			dir := filepath.Join(mnt, fmt.Sprint("seed", seed))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			runFSX(t, dir, t.TempDir(), fsxConfig{
				Ops:     ops,
				MaxLen:  int64(64+seed*64) << 10,   // 128..320 KiB: 32..80 blocks
				MaxIO:   int(seed%2)*12<<10 + 9000, // not a multiple of the block size
				Seed:    seed,
				Handles: 1 + int(seed%3),
			})
		})
	}
	d.stop(t)
	fsckStore(t, d.store)
}

// treeSnapshot describes a directory tree for comparison: per relative path,
// type, permission bits, size, mtime, link target or contents, and nlink.
func treeSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode %o", st.Mode)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size %d nlink %d mtime %d.%09d sum %x", st.Size, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec, bytesSum(b))
		case syscall.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		case syscall.S_IFDIR:
			desc += fmt.Sprintf(" mtime %d", st.Mtim.Sec)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func bytesSum(b []byte) uint64 {
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

func compareTrees(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: %s: %q, want %q", what, k, b[k], v)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
}

// sampleTree makes a small tree with the things archivers care about.
func sampleTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "src", "deep", "er"), 0o750))
	must(os.WriteFile(filepath.Join(root, "src", "text.txt"), bytes.Repeat([]byte("some text that compresses\n"), 5000), 0o640))
	rnd := make([]byte, 200_003)
	for i := range rnd {
		rnd[i] = byte(i*i*2654435761>>13 + i)
	}
	must(os.WriteFile(filepath.Join(root, "src", "deep", "blob.bin"), rnd, 0o600))
	must(os.WriteFile(filepath.Join(root, "src", "deep", "er", "empty"), nil, 0o444))
	must(os.WriteFile(filepath.Join(root, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Symlink("src/text.txt", filepath.Join(root, "link")))
	must(os.Link(filepath.Join(root, "src", "text.txt"), filepath.Join(root, "hard")))
	f, err := os.Create(filepath.Join(root, "sparse"))
	must(err)
	_, err = f.WriteAt([]byte("end"), 1<<20)
	must(err)
	f.Close()
	return root
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("skipping: %s is not installed", name)
	}
	return p
}

func runIn(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	// The command starts through sh, which enters dir and then runs name.
	// This test process serves the mount itself, and Go starts a child with
	// vfork: the parent's thread is held until the child has exec'd, and a
	// stop-the-world GC waits for that thread. A child that touched the
	// mount before its exec (a chdir into it, or exec of a binary stored on
	// it) would wait for this process to answer while this process waits
	// for the child: TestRealTools hung that way. sh is not on the mount, and
	// it reaches the mount only as a process of its own.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `cd "$1" && shift && exec "$@"`, "sh", dir, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// TestRealTools runs common tools inside a mount and checks what they left.
func TestRealTools(t *testing.T) {
	_, mnt := mountT(t, "")
	src := sampleTree(t)
	want := treeSnapshot(t, src)

	t.Run("cp -a", func(t *testing.T) {
		cp := needTool(t, "cp")
		dst := filepath.Join(mnt, "cp")
		runIn(t, mnt, nil, cp, "-a", src, dst)
		compareTrees(t, "cp -a into the mount", want, treeSnapshot(t, dst))
		back := filepath.Join(t.TempDir(), "back")
		runIn(t, mnt, nil, cp, "-a", dst, back)
		compareTrees(t, "cp -a out of the mount", want, treeSnapshot(t, back))
	})
	t.Run("rsync -aH", func(t *testing.T) {
		rsync := needTool(t, "rsync")
		dst := filepath.Join(mnt, "rsync")
		runIn(t, mnt, nil, rsync, "-aH", src+"/", dst+"/")
		compareTrees(t, "rsync -aH into the mount", want, treeSnapshot(t, dst))
		runIn(t, mnt, nil, rsync, "-aH", "--checksum", src+"/", dst+"/") // nothing to do
		compareTrees(t, "second rsync", want, treeSnapshot(t, dst))
	})
	t.Run("tar x", func(t *testing.T) {
		tar := needTool(t, "tar")
		archive := filepath.Join(t.TempDir(), "a.tar")
		runIn(t, src, nil, tar, "--format=posix", "-cf", archive, "--sparse", ".") // posix: ns mtimes
		dst := filepath.Join(mnt, "tar")
		os.Mkdir(dst, 0o755)
		runIn(t, dst, nil, tar, "-xpf", archive)
		compareTrees(t, "tar x in the mount", want, treeSnapshot(t, dst))
		// and tar c from the mount reproduces the same tree elsewhere
		archive2 := filepath.Join(t.TempDir(), "b.tar")
		runIn(t, dst, nil, tar, "--format=posix", "-cf", archive2, ".")
		out := t.TempDir()
		runIn(t, out, nil, tar, "-xpf", archive2)
		compareTrees(t, "tar c from the mount", want, treeSnapshot(t, out))
	})
	t.Run("git", func(t *testing.T) {
		git := needTool(t, "git")
		env := []string{"HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=lmfs", "GIT_AUTHOR_EMAIL=lmfs@example.org",
			"GIT_COMMITTER_NAME=lmfs", "GIT_COMMITTER_EMAIL=lmfs@example.org"}
		repo := filepath.Join(mnt, "repo")
		runIn(t, mnt, nil, "cp", "-a", src, repo)
		runIn(t, repo, env, git, "init", "-q", "-b", "main")
		runIn(t, repo, env, git, "add", "-A")
		runIn(t, repo, env, git, "commit", "-q", "-m", "first")
		os.WriteFile(filepath.Join(repo, "src", "text.txt"), []byte("changed\n"), 0o640)
		runIn(t, repo, env, git, "commit", "-q", "-am", "second")
		runIn(t, repo, env, git, "gc", "-q") // packs and deletes loose objects
		runIn(t, mnt, env, git, "clone", "-q", repo, filepath.Join(mnt, "clone"))
		clone := filepath.Join(mnt, "clone")
		runIn(t, clone, env, git, "fsck", "--full", "--strict")
		if got := runIn(t, clone, env, git, "log", "--format=%s"); got != "second\nfirst\n" {
			t.Errorf("git log in the clone: %q", got)
		}
		got, err := os.ReadFile(filepath.Join(clone, "src", "deep", "blob.bin"))
		want, _ := os.ReadFile(filepath.Join(src, "src", "deep", "blob.bin"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("blob.bin in the clone: %d bytes, %v", len(got), err)
		}
		if s := runIn(t, clone, env, git, "status", "--porcelain"); s != "" {
			t.Errorf("clone is not clean: %q", s)
		}
	})
	t.Run("go build", func(t *testing.T) {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
			if _, err := os.Stat(gobin); err != nil {
				t.Skip("skipping: go is not installed")
			}
		}
		mod := filepath.Join(mnt, "hello")
		os.Mkdir(mod, 0o755)
		os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644)
		os.WriteFile(filepath.Join(mod, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from lmfs\") }\n"), 0o644)
		runIn(t, mod, []string{"GOTOOLCHAIN=local", "GOFLAGS=", "CGO_ENABLED=0"}, gobin, "build", "-o", "hello", ".")
		if out := runIn(t, mod, nil, filepath.Join(mod, "hello")); out != "hello from lmfs\n" {
			t.Errorf("built program printed %q", out)
		}
	})
}

// TestMmapWrite writes a file through a shared writable mapping (served by
// a separate lmfs process, see TestFSXMount), crossing blocks and leaving
// holes, and checks it with read(2), after msync and munmap, and after a
// remount.
func TestMmapWrite(t *testing.T) {
	needFuse(t)
	cfg, store, mnt := writeConfig(t, crashConfig), t.TempDir(), t.TempDir()
	d := startLmfs(t, cfg, store, mnt)
	p := filepath.Join(mnt, "mapped")
	const size = 5*4096 + 123
	want := make([]byte, size)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		off int
		s   string
	}{{0, "start"}, {4090, "across a block boundary"}, {3*4096 + 7, "block three"}, {size - 4, "end!"}} {
		copy(m[w.off:], w.s)
		copy(want[w.off:], w.s)
	}
	const msSync = 4 // MS_SYNC
	if _, _, errno := syscall.Syscall(syscall.SYS_MSYNC, uintptr(unsafe.Pointer(&m[0])), size, msSync); errno != 0 {
		t.Fatalf("msync: %v", errno)
	}
	got := make([]byte, size)
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read(2) after msync differs from the mapping (first difference at %d, %v)", firstDiff(got, want), err)
	}
	if err := syscall.Munmap(m); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	startLmfs(t, cfg, store, mnt)
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after remount: %d bytes, first difference at %d, %v", len(got), firstDiff(got, want), err)
	}
}
