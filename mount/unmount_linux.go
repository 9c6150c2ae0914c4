package mount

import "syscall"

func unmountSyscall(dir string) error { return syscall.Unmount(dir, 0) }
