package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lmfs/lmfs/mount"
)

// readyFDEnv names the descriptor a --daemon child reports readiness on.
const readyFDEnv = "LMFS_READY_FD"

func (a *app) newMountCmd() *cobra.Command {
	var daemon bool
	cmd := &cobra.Command{
		Use:   "mount [--store DIR] MOUNTPOINT",
		Short: "Mount a store at MOUNTPOINT (foreground; --daemon to detach once ready)",
		Long: `Mount the store (config store.path, or --store) at MOUNTPOINT, which must be an
existing empty directory. lmfs stays in the foreground and prints a line when the
mount is ready; SIGINT or SIGTERM flush everything and unmount. With --daemon it
starts itself in the background and returns once the mount is ready.
As root it mounts directly; other users need fusermount3 (package fuse3).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.load(cmd)
			if err != nil {
				return err
			}
			mnt, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if daemon {
				return a.daemonize(cmd.Context(), mnt)
			}
			syscall.Umask(0) // the kernel applies the caller's umask; do not apply ours again
			m, err := mount.Mount(cmd.Context(), c, mnt, nil)
			ready := readyFile()
			if err != nil {
				if ready != nil {
					fmt.Fprintf(ready, "error: %v\n", err)
					ready.Close()
				}
				return err
			}
			fmt.Fprintf(a.stdout, "lmfs: store %s mounted at %s\n", c.Store.Path, mnt)
			if ready != nil {
				fmt.Fprintln(ready, "ready")
				ready.Close()
			}
			return m.Serve(cmd.Context())
		},
	}
	cmd.Flags().String("store", "", "store directory (config store.path)")
	cmd.Flags().BoolVar(&daemon, "daemon", false, "run in the background; return once the mount is ready")
	cmd.Flags().Bool("allow-other", false, "let other users access the mount (config mount.allow_other; default on for root)")
	cmd.Flags().Bool("debug", false, "log every FUSE request (config mount.debug)")
	cmd.Flags().String("policy", "", "codec policy: fast, balanced or max (config codec.policy)")
	return cmd
}

// readyFile is the pipe a --daemon parent waits on, if this is its child.
func readyFile() *os.File {
	v := os.Getenv(readyFDEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "ready")
}

// daemonize starts this command again without --daemon, detached in its own
// session, and waits until the child reports that the mount is ready.
func (a *app) daemonize(ctx context.Context, mnt string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	var args []string
	for _, arg := range os.Args[1:] {
		if arg == "--daemon" || arg == "--daemon=true" {
			continue
		}
		args = append(args, arg)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	child := exec.Command(exe, args...)
	child.Env = append(os.Environ(), readyFDEnv+"=3")
	child.ExtraFiles = []*os.File{w}
	child.Stdin, child.Stdout = null, null
	child.Stderr = os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start background lmfs: %w", err)
	}
	w.Close()
	line, rerr := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ready" {
		fmt.Fprintf(a.stdout, "lmfs: mounted at %s (pid %d)\n", mnt, child.Process.Pid)
		return child.Process.Release()
	}
	_ = child.Wait()
	if strings.HasPrefix(line, "error: ") {
		return errors.New(strings.TrimPrefix(line, "error: "))
	}
	if rerr != nil && rerr != io.EOF {
		return fmt.Errorf("background lmfs: %w", rerr)
	}
	return fmt.Errorf("background lmfs exited before the mount was ready (see its messages above)")
}

func (a *app) newUmountCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "umount MOUNTPOINT",
		Short: "Unmount an lmfs mount (the daemon flushes and exits)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return mount.Unmount(args[0], 60*time.Second)
		},
	}
}
