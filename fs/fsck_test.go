package fs

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
)

// buildStore makes /d/f (10000 bytes in three 4 KiB blocks) in a new store.
func buildStore(t *testing.T) (*blockstore.Store, *coder.Registry) {
	t.Helper()
	st, err := blockstore.Open(context.Background(), blockstore.Options{Dir: t.TempDir(), BlockSize: 4096, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := coder.NewStandard(coder.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	z, _ := reg.ByName("zstd")
	data := bytes.Repeat([]byte("fsck test data "), 700)[:10000]
	err = st.Update(func(tx *blockstore.Txn) error {
		root, err := tx.GetInode(blockstore.RootIno)
		if err != nil {
			return err
		}
		root.Nlink = 3
		for _, in := range []blockstore.Inode{root,
			{Ino: 2, Mode: syscall.S_IFDIR | 0o755, Nlink: 2},
			{Ino: 3, Mode: syscall.S_IFREG | 0o644, Nlink: 1, Size: uint64(len(data))}} {
			if err := tx.PutInode(in); err != nil {
				return err
			}
		}
		tx.PutDirent(blockstore.RootIno, blockstore.Dirent{Name: "d", Ino: 2, Type: syscall.S_IFDIR})
		tx.PutDirent(2, blockstore.Dirent{Name: "f", Ino: 3, Type: syscall.S_IFREG})
		for _, sp := range Spans(0, len(data), 4096) {
			off := sp.Block * 4096
			rec, err := reg.EncodeWith(context.Background(), nil, z, data[off:off+uint64(sp.Len)])
			if err != nil {
				return err
			}
			if err := tx.PutBlock(3, sp.Block, rec, rec[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, reg
}

func TestCheckCleanStore(t *testing.T) {
	st, reg := buildStore(t)
	r, err := Check(context.Background(), st, reg)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 || r.Blocks != 3 || r.Inodes != 3 || r.Dirents != 2 {
		t.Fatalf("clean store: %+v", r)
	}
}

func TestCheckFindsDamage(t *testing.T) {
	st, reg := buildStore(t)
	err := st.Update(func(tx *blockstore.Txn) error {
		rec, err := tx.GetBlock(3, 1)
		if err != nil {
			return err
		}
		rec[len(rec)-2] ^= 0x55
		if err := tx.PutBlock(3, 1, rec, rec[1]); err != nil {
			return err
		}
		// An entry naming a missing inode, a block past the end of the
		// file, and a lost inode.
		if err := tx.PutDirent(2, blockstore.Dirent{Name: "ghost", Ino: 99, Type: syscall.S_IFREG}); err != nil {
			return err
		}
		raw, _ := reg.EncodeWith(context.Background(), nil, coder.Raw{}, []byte("x"))
		if err := tx.PutBlock(3, 7, raw, 0); err != nil {
			return err
		}
		return tx.PutInode(blockstore.Inode{Ino: 50, Mode: syscall.S_IFREG, Nlink: 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Check(context.Background(), st, reg)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, p := range r.Problems {
		all = append(all, p.String())
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{
		"/d/f (inode 3) block 1 at offset 4096: ",
		"/d/f (inode 3) block 7 at offset 28672: block of 1 bytes lies past the end of the file",
		`/d (inode 2): entry "ghost" names inode 99, which does not exist`,
		"(unreachable) (inode 50): inode is in no directory",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if len(r.Problems) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(r.Problems), got)
	}
}
