package mount

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helpers for tests that run lmfs as a separate process, as users do:
// the binary is built once per test run (CGO_ENABLED=0, without -race).

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// removeTestBinary deletes the binary lmfsBinary built; TestMain calls it.
func removeTestBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// lmfsBinary returns the path of a freshly built lmfs binary, or the one
// named by $LMFS_TEST_BINARY (for machines without a Go toolchain).
func lmfsBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("LMFS_TEST_BINARY"); p != "" {
		return p
	}
	binOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if binDir, binErr = os.MkdirTemp("", "lmfs-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "lmfs")
		cmd := exec.Command(gobin, "build", "-o", binPath, "github.com/lmfs/lmfs/cmd/lmfs")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build lmfs: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is an `lmfs mount` process in the foreground.
type daemon struct {
	cmd    *exec.Cmd
	store  string
	mnt    string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done
}

// writeConfig writes a YAML config file for the daemon and returns its path.
func writeConfig(t testing.TB, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lmfs.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startLmfs runs `lmfs --config cfg mount --store store mnt` and waits
// until it says the mount is ready. The test's cleanup kills it and detaches
// the mount if the test did not stop it.
func startLmfs(t testing.TB, cfg, store, mnt string) *daemon {
	t.Helper()
	bin := lmfsBinary(t)
	d := &daemon{store: store, mnt: mnt, stderr: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "--config", cfg, "mount", "--store", store, mnt)
	d.cmd.Stderr = d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "mounted at") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		detach(mnt)
	})
	select {
	case ok := <-ready:
		if !ok {
			<-d.done
			t.Fatalf("lmfs mount exited before the mount was ready (%v):\n%s", d.err, d.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("lmfs mount not ready after 60s:\n%s", d.stderr.String())
	}
	return d
}

// kill9 kills the daemon with SIGKILL, waits for it, and detaches the dead
// mount so that the mountpoint can be used again.
func (d *daemon) kill9(t testing.TB) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("lmfs did not die after SIGKILL within 30s")
	}
	if err := detach(d.mnt); err != nil {
		t.Fatalf("detach dead mount %s: %v", d.mnt, err)
	}
}

// stop unmounts through `lmfs umount` and waits for the daemon to exit
// cleanly.
func (d *daemon) stop(t testing.TB) {
	t.Helper()
	out, err := exec.Command(lmfsBinary(t), "umount", d.mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("lmfs umount %s: %v\n%s", d.mnt, err, out)
	}
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("lmfs still running 60s after umount:\n%s", d.stderr.String())
	}
	if d.err != nil {
		t.Fatalf("lmfs exited with %v after umount:\n%s", d.err, d.stderr.String())
	}
}

// detach lazily unmounts mnt if something is mounted there (a dead FUSE
// mount answers ENOTCONN until it is unmounted).
func detach(mnt string) error {
	if !mounted(mnt) {
		return nil
	}
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		if out, ferr := exec.Command("fusermount3", "-u", "-z", mnt).CombinedOutput(); ferr != nil {
			return fmt.Errorf("umount -l: %v; fusermount3 -u -z: %v %s", err, ferr, out)
		}
	}
	return nil
}

// mounted reports whether a filesystem is mounted at mnt.
func mounted(mnt string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == mnt {
			return true
		}
	}
	return false
}

// vmHWM returns the peak resident set size of process pid, in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("parse VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
