package mount

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as a mount daemon that a test can kill.
func TestMain(m *testing.M) {
	if os.Getenv("LMFS_TEST_DAEMON") == "1" {
		os.Exit(testDaemon())
	}
	code := m.Run()
	removeTestBinary()
	os.Exit(code)
}

func testDaemon() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg := cfgFor(os.Getenv("LMFS_TEST_STORE"))
	if idle := os.Getenv("LMFS_TEST_RECOMPRESS_IDLE"); idle != "" {
		cfg = recompressConfig(cfg.Store.Path, idle)
	}
	m, err := Mount(ctx, cfg, os.Getenv("LMFS_TEST_MNT"), nil)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	if err := m.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startDaemon runs the test binary as a mount daemon and waits until ready.
func startDaemon(t *testing.T, store, mnt string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LMFS_TEST_DAEMON=1", "LMFS_TEST_STORE="+store, "LMFS_TEST_MNT="+mnt)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("daemon did not start: %q", line)
	}
	return cmd
}

// Files written and fsync'ed survive kill -9 of the daemon byte for byte;
// files being written when it died do not damage anything else.
func TestCrashKeepsFsyncedData(t *testing.T) {
	needFuse(t)
	store, mnt := t.TempDir(), t.TempDir()
	d := startDaemon(t, store, mnt)
	killed := false
	defer func() {
		if !killed {
			d.Process.Kill()
			d.Wait()
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	}()
	rng := rand.New(rand.NewSource(7))
	synced := map[string][]byte{}
	os.Mkdir(filepath.Join(mnt, "dir"), 0o755)
	for i, size := range []int{0, 1, 4095, 4096, 4097, 100000, 1 << 20} {
		data := make([]byte, size)
		if i%2 == 0 {
			rng.Read(data)
		} else {
			copy(data, bytes.Repeat([]byte(fmt.Sprintf("line %d of a compressible file\n", i)), size/20+1))
		}
		name := fmt.Sprintf("dir/f%d", i)
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		synced[name] = data
		// Keep one synced file open and write more to it, unsynced.
		if i != 5 {
			f.Close()
		} else {
			defer f.Close()
			f.WriteAt(make([]byte, 5000), 200000)
		}
	}
	// Unsynced work in progress at the time of the crash.
	u, _ := os.Create(filepath.Join(mnt, "unsynced"))
	u.Write(make([]byte, 300000))
	if err := d.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.Wait()
	killed = true
	u.Close()
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		t.Fatalf("unmount after kill: %v", err)
	}
	// fsck finds no damage, and every synced file reads back intact.
	checkStore(t, store, "after crash")
	time.Sleep(10 * time.Millisecond)
	_, mnt2 := mountT(t, store)
	for name, want := range synced {
		got, err := os.ReadFile(filepath.Join(mnt2, name))
		if name == "dir/f5" && err == nil && len(got) >= len(want) {
			got = got[:len(want)] // the unsynced extension may or may not be there
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after kill -9: %d bytes (want %d), %v", name, len(got), len(want), err)
		}
	}
}
