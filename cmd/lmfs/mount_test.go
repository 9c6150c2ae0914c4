package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmfs/lmfs/blockstore"
)

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

func TestMountStatsUnmount(t *testing.T) {
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil || os.Geteuid() != 0 {
		t.Skipf("skipping: needs root and a usable /dev/fuse (%v)", err)
	} else {
		f.Close()
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no stray config file
	store, mnt := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"mount", "--store", store, "--block-size", "4KiB", mnt}, strings.NewReader(""), &out, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "mounted at") {
		select {
		case code := <-done:
			t.Fatalf("mount exited %d: stdout %q stderr %q", code, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount not ready: stdout %q stderr %q", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	data := []byte(strings.Repeat("compressible text ", 10000))
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, so, se := runCLI(t, "", "stats", mnt)
	if code != 0 || !strings.Contains(so, "logical bytes    180000") || !strings.Contains(so, "zstd") {
		t.Fatalf("stats of the mount: exit %d\n%s%s", code, so, se)
	}
	// The store is in use: stats --store names the process and says what to do.
	code, _, se = runCLI(t, "", "stats", "--store", store)
	if code == 0 || !strings.Contains(se, "lmfs stats MOUNTPOINT") {
		t.Fatalf("stats of an open store: exit %d, %s", code, se)
	}
	cancel() // SIGINT/SIGTERM in the real daemon
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("mount exited %d: %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mount did not stop after cancellation")
	}
	code, so, se = runCLI(t, "", "stats", "--store", store)
	if code != 0 || !strings.Contains(so, "files            1") {
		t.Fatalf("stats of the unmounted store: exit %d\n%s%s", code, so, se)
	}
	code, so, se = runCLI(t, "", "fsck", "--store", store)
	if code != 0 || !strings.Contains(so, ": 0 problems") {
		t.Fatalf("fsck of the clean store: exit %d\n%s%s", code, so, se)
	}
	// Damage block 2 of /f: fsck names the file and offset and exits 4.
	st, err := blockstore.Open(context.Background(), blockstore.Options{Dir: store})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(func(tx *blockstore.Txn) error {
		d, err := tx.Lookup(blockstore.RootIno, "f")
		if err != nil {
			return err
		}
		rec, err := tx.GetBlock(d.Ino, 2)
		if err != nil {
			return err
		}
		rec[len(rec)-1] ^= 1
		return tx.PutBlock(d.Ino, 2, rec, rec[1])
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, so, se = runCLI(t, "", "fsck", "--store", store)
	if code != exitDamage || !strings.Contains(so, "/f (inode 2) block 2 at offset 8192: ") {
		t.Fatalf("fsck of the damaged store: exit %d\n%s%s", code, so, se)
	}
}

func TestMountHelperArgs(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/var/lib/lmfs /data -o rw,allow_other,_netdev", "mount --daemon --store /var/lib/lmfs --allow-other /data"},
		{"/s /d -n -o policy=fast,config=/etc/l.yaml", "--config /etc/l.yaml mount --daemon --store /s --policy fast /d"},
		{"/s /d", "mount --daemon --store /s /d"},
		{"/s", "mount /s"},
	} {
		if got := strings.Join(mountHelperArgs(strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("mountHelperArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	sdNotify("READY=1")
	buf := make([]byte, 64)
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := l.ReadFromUnix(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
}
