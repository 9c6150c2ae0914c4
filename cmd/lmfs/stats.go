package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	lfs "github.com/lmfs/lmfs/fs"
)

func (a *app) newStatsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stats [--store DIR | MOUNTPOINT]",
		Short: "Print logical and stored bytes, the compression ratio and blocks per codec",
		Long: `With MOUNTPOINT, ask the running lmfs (through the root's user.lmfs.stats
extended attribute). Otherwise open the store (config store.path, or --store),
which must not be mounted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st blockstore.Stats
			if len(args) == 1 {
				b, err := getxattr(args[0], lfs.StatsXattr)
				if err != nil {
					return fmt.Errorf("read stats of %s: %w (is it an lmfs mount?)", args[0], err)
				}
				if err := json.Unmarshal(b, &st); err != nil {
					return fmt.Errorf("stats of %s: %w", args[0], err)
				}
			} else {
				c, err := a.load(cmd)
				if err != nil {
					return err
				}
				if !blockstore.Exists(c.Store.Path) {
					return fmt.Errorf("no lmfs store in %s: give the store with --store DIR, or a mountpoint", c.Store.Path)
				}
				s, err := blockstore.Open(cmd.Context(), blockstore.Options{Dir: c.Store.Path, MemTableSize: int64(c.Store.MemTableSize)})
				if errors.Is(err, blockstore.ErrInUse) {
					return fmt.Errorf("%w\n(for a mounted store, run: lmfs stats MOUNTPOINT)", err)
				}
				if err != nil {
					return err
				}
				defer s.Close()
				if st, err = s.Stats(cmd.Context()); err != nil {
					return err
				}
			}
			printStats(a.stdout, st)
			return nil
		},
	}
	cmd.Flags().String("store", "", "store directory (config store.path)")
	return cmd
}

func getxattr(path, name string) ([]byte, error) {
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Getxattr(path, name, buf)
		if err == syscall.ERANGE {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func printStats(w io.Writer, st blockstore.Stats) {
	ratio := func(a, b uint64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", float64(a)/float64(b))
	}
	fmt.Fprintf(w, "files            %d (%d directories, %d symlinks)\n", st.Files, st.Dirs, st.Symlinks)
	fmt.Fprintf(w, "logical bytes    %d (%s)\n", st.LogicalBytes, human(st.LogicalBytes))
	fmt.Fprintf(w, "data bytes       %d (%s, logical bytes outside holes)\n", st.DataBytes, human(st.DataBytes))
	fmt.Fprintf(w, "stored bytes     %d (%s, block records)\n", st.StoredBytes, human(st.StoredBytes))
	fmt.Fprintf(w, "ratio            %s (data bytes / stored bytes)\n", ratio(st.DataBytes, st.StoredBytes))
	fmt.Fprintf(w, "store on disk    %d (%s, Badger files incl. garbage not yet collected)\n", st.DiskBytes, human(uint64(max(st.DiskBytes, 0))))
	reg := coder.NewRegistry()
	var ids []int
	for id := range st.Blocks {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	fmt.Fprintf(w, "blocks per codec (stored bytes; logical bytes and ratio)\n")
	for _, id := range ids {
		c := byte(id)
		fmt.Fprintf(w, "  %-8s %10d blocks %14d bytes %14d logical %8s\n", reg.NameOf(coder.ID(id)), st.Blocks[c], st.CodecBytes[c], st.CodecData[c], ratio(st.CodecData[c], st.CodecBytes[c]))
	}
	var wb, wn uint64
	for id, n := range st.Waiting {
		wn += n
		wb += st.WaitingBytes[id]
	}
	fmt.Fprintf(w, "waiting for recompression  %d blocks, %d bytes (coded with the fast codecs only)\n", wn, wb)
	for _, id := range ids {
		if n := st.Waiting[byte(id)]; n > 0 {
			fmt.Fprintf(w, "  %-8s %10d blocks %14d bytes\n", reg.NameOf(coder.ID(id)), n, st.WaitingBytes[byte(id)])
		}
	}
}

func human(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
