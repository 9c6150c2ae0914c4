package mount

import (
	"os"
	"os/exec"
	"syscall"
)

func unmountSyscall(dir string) error { return syscall.Unmount(dir, 0) }

// lazyUnmount detaches a busy mount (umount -l).
func lazyUnmount(dir string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	return exec.Command("fusermount3", "-u", "-z", dir).Run()
}
