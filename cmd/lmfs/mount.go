package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
				return a.daemonize(cmd, mnt)
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
			sdNotify("READY=1")
			return m.Serve(cmd.Context())
		},
	}
	cmd.Flags().String("store", "", "store directory (config store.path)")
	cmd.Flags().BoolVar(&daemon, "daemon", false, "run in the background; return once the mount is ready")
	cmd.Flags().Bool("allow-other", false, "let other users access the mount (config mount.allow_other; default on for root)")
	cmd.Flags().Bool("debug", false, "log every FUSE request (config mount.debug)")
	cmd.Flags().String("policy", "", "codec policy: fast, balanced or max (config codec.policy)")
	cmd.Flags().String("block-size", "", "block size of a new store, e.g. 64KiB (config fs.block_size)")
	cmd.Flags().String("cache-size", "", "decoded-block cache size, e.g. 64MiB (config cache.size)")
	cmd.Flags().Int("workers", 0, "blocks coded in parallel, 0 for one per core (config codec.workers)")
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
func (a *app) daemonize(cmd *cobra.Command, mnt string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	args := []string{"mount"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if f.Name != "daemon" {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	args = append(args, mnt)
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

// sdNotify tells systemd (Type=notify units) about the daemon's state.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}

// mountHelperArgs turns the command line mount(8) gives a mount.lmfs helper
// ("SOURCE DIR [-sfnv] [-o OPTS]", from an /etc/fstab line of type lmfs)
// into "mount --daemon --store SOURCE DIR" with the options lmfs knows.
func mountHelperArgs(in []string) []string {
	var pos, opts []string
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == "-o" && i+1 < len(in):
			opts = append(opts, strings.Split(in[i+1], ",")...)
			i++
		case strings.HasPrefix(in[i], "-o"):
			opts = append(opts, strings.Split(in[i][2:], ",")...)
		case strings.HasPrefix(in[i], "-"):
			// -s (sloppy), -f (fake), -n (no mtab), -v (verbose): nothing to do
		default:
			pos = append(pos, in[i])
		}
	}
	if len(pos) != 2 {
		return append([]string{"mount"}, in...) // let the mount command report the usage error
	}
	out := []string{"mount", "--daemon", "--store", pos[0]}
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "allow_other":
			out = append(out, "--allow-other")
		case "debug":
			out = append(out, "--debug")
		case "policy":
			out = append(out, "--policy", v)
		case "config":
			out = append([]string{"--config", v}, out...)
		}
	}
	return append(out, pos[1])
}
