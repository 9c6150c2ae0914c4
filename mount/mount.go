// Package mount mounts an lmfs store with go-fuse and runs the daemon's
// life: server options, readiness, flushing and clean unmounting.
package mount

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/config"
	lfs "github.com/lmfs/lmfs/fs"
)

// Mounted is a mounted lmfs filesystem.
type Mounted struct {
	Mountpoint string
	Store      *blockstore.Store
	FS         *lfs.FS
	server     *fuse.Server
	log        *slog.Logger
	unmounted  bool
	metrics    *metricsServer
}

// MetricsAddr is the address /metrics is served on (nil: metrics are off).
func (m *Mounted) MetricsAddr() net.Addr {
	if m.metrics == nil {
		return nil
	}
	return m.metrics.addr
}

// CheckMountpoint says what is wrong with dir as a mountpoint, if anything.
func CheckMountpoint(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mountpoint %s does not exist: create it first (mkdir -p %s)", dir, dir)
	}
	if errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("mountpoint %s: %w: an lmfs (or other FUSE) process serving it has died; unmount it first (lmfs umount %s, or umount -l %s)", dir, err, dir, dir)
	}
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	d, err := os.Open(dir)
	if errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("mountpoint %s: %w: an lmfs (or other FUSE) process serving it has died; unmount it first (lmfs umount %s, or umount -l %s)", dir, err, dir, dir)
	}
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); err != io.EOF {
		if err == nil {
			return fmt.Errorf("mountpoint %s is not empty: mount on an empty directory (files there would be hidden)", dir)
		}
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	return nil
}

// Mount opens the store of cfg and mounts it at mountpoint. It returns once
// the kernel has the mount ready.
func Mount(ctx context.Context, cfg *config.Config, mountpoint string, log *slog.Logger) (*Mounted, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := CheckMountpoint(mountpoint); err != nil {
		return nil, err
	}
	gc, err := time.ParseDuration(cfg.Store.GCInterval)
	if err != nil {
		return nil, fmt.Errorf("store.gc_interval: %w", err)
	}
	st, err := blockstore.Open(ctx, blockstore.Options{
		Dir:          cfg.Store.Path,
		BlockSize:    int(cfg.FS.BlockSize),
		MemTableSize: int64(cfg.Store.MemTableSize),
		SyncWrites:   cfg.Store.SyncWrites,
		GCInterval:   gc,
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Mounted, error) {
		st.Close()
		return nil, err
	}
	reg, err := coder.NewStandard(coder.Options{
		ZstdLevel: cfg.Codec.ZstdLevel, CMMemory: int64(cfg.Codec.CMMemory),
		Device: cfg.Predictor.Device, CUDALib: cfg.Predictor.CUDALib, MaxBatch: cfg.Predictor.CUDABatch,
	})
	if err != nil {
		return fail(err)
	}
	pol, err := coder.ParsePolicy(cfg.Codec.Policy)
	if err != nil {
		return fail(err)
	}
	if err := lfs.PrepareModels(st, reg, int64(cfg.Codec.CMMemory), pol == coder.PolicyMax, log); err != nil {
		return fail(err)
	}
	ch, err := coder.NewChooser(reg, pol)
	if err != nil {
		return fail(err)
	}
	fo := lfs.Options{
		Store: st, Registry: reg, Chooser: ch, Level: lfs.PolicyLevel(pol),
		WriteBuffer: int64(cfg.FS.WriteBuffer), CacheSize: int64(cfg.Cache.Size),
		Workers: cfg.Codec.Workers, Logger: log,
	}
	if cfg.Recompress.Enabled && pol != coder.PolicyFast {
		// Writes code fast; the policy's codecs catch up when idle.
		idle, err := time.ParseDuration(cfg.Recompress.Idle)
		if err != nil {
			return fail(fmt.Errorf("recompress.idle: %w", err))
		}
		fast, err := coder.NewChooser(reg, coder.PolicyFast)
		if err != nil {
			return fail(err)
		}
		fo.Chooser, fo.Level = fast, lfs.PolicyLevel(coder.PolicyFast)
		fo.Recompress = lfs.RecompressOptions{Chooser: ch, Level: lfs.PolicyLevel(pol), Idle: idle, Workers: cfg.Recompress.Workers}
	}
	if fo.Workers == 0 && coder.LockstepOnCPU(reg) {
		// Blocks of the LM codecs decode in lockstep groups of concurrent
		// reads: keep enough in flight (the other codecs' jobs still run
		// on GOMAXPROCS cores).
		fo.Workers = coder.LockstepWidth * runtime.NumCPU()
	}
	if msg := gpuHint(lmDevice(reg), pol, fo.Workers, fo.Recompress.Workers); msg != "" {
		log.Info(msg)
	}
	fsys, err := lfs.New(fo)
	if err != nil {
		return fail(err)
	}
	fail = func(err error) (*Mounted, error) {
		fsys.Close(context.Background())
		st.Close()
		return nil, err
	}
	root, err := fsys.Root()
	if err != nil {
		return fail(err)
	}
	var ms *metricsServer
	if cfg.Metrics.Listen != "" {
		if ms, err = startMetrics(cfg.Metrics.Listen, st, fsys, reg, log); err != nil {
			return fail(err)
		}
		fail = func(err error) (*Mounted, error) {
			ms.close()
			fsys.Close(context.Background())
			st.Close()
			return nil, err
		}
	}
	sec := time.Second
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:  cfg.Mount.AllowOther,
			Options:     []string{"default_permissions"},
			FsName:      "lmfs:" + cfg.Store.Path,
			Name:        "lmfs",
			MaxWrite:    fuse.MAX_KERNEL_WRITE,
			DirectMount: os.Geteuid() == 0,
			Debug:       cfg.Mount.Debug,
		},
		EntryTimeout:    &sec,
		AttrTimeout:     &sec,
		NegativeTimeout: &sec,
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: blockstore.RootIno},
	}
	server, err := gofs.Mount(mountpoint, root, opts)
	if err != nil {
		if os.Geteuid() != 0 {
			if _, lerr := exec.LookPath("fusermount3"); lerr != nil {
				err = fmt.Errorf("%w (fusermount3 is missing: install the fuse3 package, e.g. apt-get install fuse3)", err)
			}
		}
		return fail(fmt.Errorf("mount %s at %s: %w", cfg.Store.Path, mountpoint, err))
	}
	log.Info("mounted", "store", cfg.Store.Path, "mountpoint", mountpoint, "block_size", st.BlockSize(), "policy", cfg.Codec.Policy)
	return &Mounted{Mountpoint: mountpoint, Store: st, FS: fsys, server: server, log: log, metrics: ms}, nil
}

// Serve runs until ctx is cancelled (SIGINT/SIGTERM) or the filesystem is
// unmounted from outside (lmfs umount); then it flushes everything,
// unmounts if still mounted, and closes the store.
func (m *Mounted) Serve(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		m.server.Wait()
		close(done)
	}()
	select {
	case <-done:
		m.log.Info("unmounted from outside", "mountpoint", m.Mountpoint)
		m.unmounted = true
	case <-ctx.Done():
		m.log.Info("stopping: flushing and unmounting", "mountpoint", m.Mountpoint)
	}
	return m.Close()
}

// Close flushes every dirty block, unmounts (retrying while the mount is
// busy for a few seconds) and closes the store.
func (m *Mounted) Close() error {
	var errs []error
	errs = append(errs, m.FS.FlushAll(context.Background()))
	var uerr error
	for i := 0; i < 10 && !m.unmounted; i++ { // each Unmount retries for ~0.3 s itself
		if uerr = m.server.Unmount(); uerr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if uerr != nil {
		// Busy: detach it lazily, so the daemon can close the store and
		// exit; processes still using the mount then get ENOTCONN.
		lerr := lazyUnmount(m.Mountpoint)
		errs = append(errs, fmt.Errorf("unmount %s: %w (a process was still using it, see fuser -m; detached lazily: %v)", m.Mountpoint, uerr, lerr))
		waited := make(chan struct{})
		go func() { m.server.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(2 * time.Second):
		}
	} else {
		m.server.Wait()
	}
	if m.metrics != nil {
		errs = append(errs, m.metrics.close())
	}
	errs = append(errs, m.FS.Close(context.Background()))
	errs = append(errs, m.Store.Close())
	return errors.Join(errs...)
}

// Unmount unmounts the lmfs filesystem at mountpoint from another process
// (umount(2) as root, fusermount3 -u otherwise) and waits up to wait for the
// daemon serving it to flush, close its store and exit.
func Unmount(mountpoint string, wait time.Duration) error {
	mountpoint, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	store, ok := storeOf(mountpoint)
	if !ok {
		return fmt.Errorf("%s is not an lmfs mount (see /proc/self/mountinfo)", mountpoint)
	}
	pid := lockPid(store)
	if os.Geteuid() == 0 {
		if err := unmountSyscall(mountpoint); err != nil {
			return fmt.Errorf("unmount %s: %w (is a process still using it? see fuser -m %s)", mountpoint, err, mountpoint)
		}
	} else {
		out, err := exec.Command("fusermount3", "-u", mountpoint).CombinedOutput()
		if err != nil {
			return fmt.Errorf("fusermount3 -u %s: %v: %s", mountpoint, err, out)
		}
	}
	if pid <= 0 {
		return nil
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		if p := lockPid(store); p != pid {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("unmounted %s, but lmfs process %d is still flushing after %v", mountpoint, pid, wait)
}

// storeOf finds the store of the lmfs mount at mountpoint in mountinfo.
func storeOf(mountpoint string) (string, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 || len(f) < 5 {
			continue
		}
		if unescapeMount(f[4]) == mountpoint && f[sep+1] == "fuse.lmfs" {
			return strings.TrimPrefix(unescapeMount(f[sep+2]), "lmfs:"), true
		}
	}
	return "", false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lockPid reads the pid in a store's lock file (0 if none).
func lockPid(store string) int {
	b, err := os.ReadFile(filepath.Join(store, "lmfs.lock"))
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// gpuMinInFlight is how many blocks in flight a GPU needs before its
// batches pay (see predictor/gpu/RESULTS.md: throughput grows up to
// thousands).
const gpuMinInFlight = 256

// lmDevice names where the registry's lm+cm codec runs its model ("cpu"
// without an accelerator or without the codec).
func lmDevice(reg *coder.Registry) string {
	c, err := reg.ByName("lm+cm")
	if err != nil {
		return "cpu"
	}
	if d, ok := c.(interface{ Device() string }); ok {
		return d.Device()
	}
	return "cpu"
}

// gpuHint returns a line for the log when the policy codes with the neural
// LM on a GPU (device, from lmDevice) but the filesystem keeps few blocks in
// flight: every GPU batch then holds at most that many blocks and costs
// about as much as a full one. workers is codec.workers (0: one per core),
// bg recompress.workers (0: no background recompression).
func gpuHint(device string, pol coder.Policy, workers, bg int) string {
	if pol != coder.PolicyMax || device == "cpu" {
		return ""
	}
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	var low []string
	if workers < gpuMinInFlight {
		low = append(low, fmt.Sprintf("codec.workers is %d", workers))
	}
	if bg > 0 && bg < gpuMinInFlight {
		low = append(low, fmt.Sprintf("recompress.workers is %d", bg))
	}
	if len(low) == 0 {
		return ""
	}
	return fmt.Sprintf("the neural LM runs on the GPU (%s), but %s: a GPU batch holds at most that many blocks and takes about as long as one of thousands; set them to %d or more (each worker coding cm on the CPU may use codec.cm_memory)", device, strings.Join(low, " and "), 2*gpuMinInFlight)
}
