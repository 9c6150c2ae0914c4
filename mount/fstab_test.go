package mount

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFstabLine mounts a store the way /etc/fstab does: mount(8) with an
// fstab line of type lmfs (and fuse.lmfs) runs /sbin/mount.lmfs
// (/sbin/mount.fuse.lmfs), a link to the lmfs binary, which starts the
// daemon and returns once the mount is ready; umount(8) unmounts and the
// daemon flushes and exits. The test uses mount -T (an alternative fstab)
// and installs the helper link only if none exists, removing it afterwards.
func TestFstabLine(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: installs a mount helper link in /sbin")
	}
	needFuse(t)
	mountCmd, err := exec.LookPath("mount")
	if err != nil {
		t.Skip("skipping: mount(8) is not installed")
	}
	if out, _ := exec.Command(mountCmd, "--help").CombinedOutput(); !strings.Contains(string(out), "--fstab") {
		t.Skip("skipping: this mount(8) has no --fstab")
	}
	bin := lmfsBinary(t)
	for _, c := range []struct{ fstype, helper string }{{"lmfs", "/sbin/mount.lmfs"}, {"fuse.lmfs", "/sbin/mount.fuse.lmfs"}} {
		t.Run(c.fstype, func(t *testing.T) {
			if _, err := os.Lstat(c.helper); err == nil {
				t.Skipf("skipping: %s already exists (not replacing it)", c.helper)
			}
			if err := os.Symlink(bin, c.helper); err != nil {
				t.Skipf("skipping: cannot install %s: %v", c.helper, err)
			}
			t.Cleanup(func() { os.Remove(c.helper) })
			dir := t.TempDir()
			store, mnt := filepath.Join(dir, "store"), filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o755)
			fstab := filepath.Join(dir, "fstab")
			line := store + " " + mnt + " " + c.fstype + " defaults,allow_other,nofail,_netdev 0 0\n"
			if err := os.WriteFile(fstab, []byte(line), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { detach(mnt) })
			// Output to a file, not a pipe: the daemon inherits stderr and
			// would keep a pipe open after mount(8) returns.
			outFile := filepath.Join(dir, "mount.out")
			of, err := os.Create(outFile)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(mountCmd, "-T", fstab, mnt)
			cmd.Stdout, cmd.Stderr = of, of
			err = cmd.Run()
			of.Close()
			if err != nil {
				out, _ := os.ReadFile(outFile)
				t.Fatalf("mount -T %s %s (fstab line %q): %v\n%s", fstab, mnt, line, err, out)
			}
			if !mounted(mnt) {
				t.Fatalf("mount returned but nothing is mounted at %s", mnt)
			}
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("from fstab"), 0o644); err != nil {
				t.Fatal(err)
			}
			pid := lockPid(store)
			if pid <= 0 {
				t.Fatalf("no daemon pid in %s/lmfs.lock", store)
			}
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Fatalf("umount %s: %v\n%s", mnt, err, out)
			}
			deadline := time.Now().Add(30 * time.Second)
			for lockPid(store) == pid && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if lockPid(store) == pid {
				t.Fatalf("daemon %d still holds the store 30s after umount", pid)
			}
			out, err := exec.Command(bin, "stats", "--store", store).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "files            1") || !strings.Contains(string(out), "logical bytes    10 ") {
				t.Fatalf("stats after umount: %v\n%s", err, out)
			}
		})
	}
}
