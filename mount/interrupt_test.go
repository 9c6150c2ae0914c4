package mount

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSignalsDoNotInterruptDataOps: the kernel turns a signal that reaches a
// thread blocked in a FUSE request into an interrupt request, and go-fuse
// cancels the request's context. lmfs finishes data operations anyway: a
// close or fsync of a regular file must not fail with EINTR (callers do not
// retry close, and Go programs get the runtime's preemption signal many times
// a second). The test sends SIGURG (harmless to the Go runtime) every 200 µs
// to the thread blocked in close(2) and fsync(2) while a slow codec (cm, with
// background recompression off) codes the file.
func TestSignalsDoNotInterruptDataOps(t *testing.T) {
	needFuse(t)
	c := cfgFor(t.TempDir())
	c.Codec.Policy = "balanced"
	c.Codec.Workers = 1
	c.Recompress.Enabled = false
	mnt := t.TempDir()
	m, err := Mount(context.Background(), c, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	data := []byte(strings.Repeat("Signals reach threads blocked in FUSE requests as interrupts. ", 3000))

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, tid := os.Getpid(), syscall.Gettid()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			syscall.Tgkill(pid, tid, syscall.SIGURG)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	var failed error
	for i := range 3 {
		path := filepath.Join(mnt, "f"+string(rune('0'+i)))
		fd, err := syscall.Open(path, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_TRUNC, 0o644)
		if err != nil {
			failed = err
			break
		}
		for off := 0; off < len(data); {
			n, err := syscall.Write(fd, data[off:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				failed = err
				break
			}
			off += n
		}
		if err := syscall.Fsync(fd); err != nil {
			failed = err
		}
		// A second round of data for close(2) to flush.
		if _, err := syscall.Pwrite(fd, data[:len(data)/2], int64(len(data))); err != nil && failed == nil {
			failed = err
		}
		if err := syscall.Close(fd); err != nil && failed == nil {
			failed = err
		}
		if failed != nil {
			break
		}
	}
	close(stop)
	<-done
	if failed != nil {
		t.Fatalf("a data operation failed under signals: %v", failed)
	}
	want := append(bytes.Clone(data), data[:len(data)/2]...)
	for i := range 3 {
		got, err := os.ReadFile(filepath.Join(mnt, "f"+string(rune('0'+i))))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("file %d reads back wrong (%d bytes, %v)", i, len(got), err)
		}
	}
}
