package blockstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, BlockSize: 4096, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenCreatesRootAndPersists(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if s.BlockSize() != 4096 {
		t.Fatalf("block size %d", s.BlockSize())
	}
	ino, err := s.AllocIno()
	if err != nil {
		t.Fatal(err)
	}
	if ino <= RootIno {
		t.Fatalf("allocated inode %d collides with root", ino)
	}
	err = s.Update(func(tx *Txn) error {
		if err := tx.PutInode(Inode{Ino: ino, Mode: syscall.S_IFREG | 0o644, Nlink: 1, Size: 5000, Mtime: 42}); err != nil {
			return err
		}
		if err := tx.PutDirent(RootIno, Dirent{Name: "f", Ino: ino, Type: syscall.S_IFREG}); err != nil {
			return err
		}
		if err := tx.PutBlock(ino, 1, []byte("record"), 1); err != nil {
			return err
		}
		if err := tx.SetXattr(ino, "user.a", []byte("v")); err != nil {
			return err
		}
		return tx.PutSymlink(ino, []byte("target"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen with another block size: the store keeps its own.
	s, err = Open(context.Background(), Options{Dir: dir, BlockSize: 8192, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.BlockSize() != 4096 {
		t.Fatalf("reopened block size %d, want 4096", s.BlockSize())
	}
	ino2, err := s.AllocIno()
	if err != nil {
		t.Fatal(err)
	}
	if ino2 <= ino {
		t.Fatalf("inode %d reused after reopen (had %d)", ino2, ino)
	}
	err = s.View(func(tx *Txn) error {
		root, err := tx.GetInode(RootIno)
		if err != nil {
			return err
		}
		if root.Mode&syscall.S_IFMT != syscall.S_IFDIR || root.Nlink != 2 {
			return fmt.Errorf("root %+v", root)
		}
		in, err := tx.GetInode(ino)
		if err != nil {
			return err
		}
		if in.Size != 5000 || in.Mtime != 42 {
			return fmt.Errorf("inode %+v", in)
		}
		d, err := tx.Lookup(RootIno, "f")
		if err != nil || d.Ino != ino || d.Type != syscall.S_IFREG {
			return fmt.Errorf("lookup %+v %v", d, err)
		}
		if _, err := tx.Lookup(RootIno, "g"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("missing entry: %v", err)
		}
		rec, err := tx.GetBlock(ino, 1)
		if err != nil || string(rec) != "record" {
			return fmt.Errorf("block %q %v", rec, err)
		}
		if x, err := tx.GetXattr(ino, "user.a"); err != nil || string(x) != "v" {
			return fmt.Errorf("xattr %q %v", x, err)
		}
		if l, err := tx.GetSymlink(ino); err != nil || string(l) != "target" {
			return fmt.Errorf("symlink %q %v", l, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesSecondOpener(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := Open(context.Background(), Options{Dir: dir})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second open: %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(syscall.Getpid())) {
		t.Fatalf("error does not name the pid: %v", err)
	}
}

func TestOpenRefusesNewerFormat(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	sb := make([]byte, 12)
	copy(sb, "LMFS")
	binary.BigEndian.PutUint32(sb[4:], FormatVersion+1)
	binary.BigEndian.PutUint32(sb[8:], 4096)
	if err := s.db.Update(func(t *badger.Txn) error { return t.Set([]byte{pSuper}, sb) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "newer lmfs") {
		t.Fatalf("open of newer format: %v", err)
	}
	// The failed open released the lock.
	if _, err := lockStore(dir); err != nil {
		t.Fatalf("lock still held after failed open: %v", err)
	}
}

func TestListDirAndBlocksInOrder(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	const n = 300
	err := s.Update(func(tx *Txn) error {
		for i := n - 1; i >= 0; i-- {
			if err := tx.PutDirent(7, Dirent{Name: fmt.Sprintf("e%04d", i), Ino: uint64(100 + i), Type: syscall.S_IFREG}); err != nil {
				return err
			}
			if err := tx.PutBlock(7, uint64(i*3), []byte{byte(i)}, 0); err != nil {
				return err
			}
		}
		return tx.PutBlock(8, 0, []byte{1}, 0) // another inode's block must not show up
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Txn) error {
		ents, err := tx.ListDir(7)
		if err != nil {
			return err
		}
		if len(ents) != n {
			return fmt.Errorf("%d entries", len(ents))
		}
		for i, e := range ents {
			if e.Name != fmt.Sprintf("e%04d", i) || e.Ino != uint64(100+i) {
				return fmt.Errorf("entry %d = %+v", i, e)
			}
		}
		if tx.DirEmpty(7) || !tx.DirEmpty(9) {
			return errors.New("DirEmpty wrong")
		}
		for _, c := range []struct{ from, want uint64 }{{0, 0}, {1, 3}, {3, 3}, {4, 6}} {
			if got, ok := tx.NextBlock(7, c.from); !ok || got != c.want {
				return fmt.Errorf("NextBlock(%d) = %d %v, want %d", c.from, got, ok, c.want)
			}
		}
		if _, ok := tx.NextBlock(7, 3*n); ok {
			return errors.New("NextBlock past the end found a block")
		}
		if got := tx.BlockNumbers(7, 2, 10); fmt.Sprint(got) != "[3 6 9]" {
			return fmt.Errorf("BlockNumbers = %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Delete more than one batch worth, across transactions.
	if err := s.DeleteBlocksFrom(7, 30); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Txn) error {
		if got := tx.BlockNumbers(7, 0, 1<<40); len(got) != 10 {
			t.Errorf("after DeleteBlocksFrom(30): %v", got)
		}
		if _, ok := tx.NextBlock(8, 0); !ok {
			t.Error("other inode's block deleted")
		}
		return nil
	})
}

func TestOrphansPurgedOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	err := s.Update(func(tx *Txn) error {
		if err := tx.PutInode(Inode{Ino: 50, Mode: syscall.S_IFREG, Size: 10}); err != nil {
			return err
		}
		if err := tx.PutBlock(50, 0, []byte("x"), 0); err != nil {
			return err
		}
		if err := tx.SetXattr(50, "user.x", []byte("1")); err != nil {
			return err
		}
		return tx.AddOrphan(50)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if o, _ := s.Orphans(); len(o) != 0 {
		t.Fatalf("orphans left: %v", o)
	}
	_ = s.View(func(tx *Txn) error {
		if _, err := tx.GetInode(50); !errors.Is(err, ErrNotFound) {
			t.Errorf("orphan inode still there: %v", err)
		}
		if _, ok := tx.NextBlock(50, 0); ok {
			t.Error("orphan block still there")
		}
		if len(tx.ListXattr(50)) != 0 {
			t.Error("orphan xattr still there")
		}
		return nil
	})
}

func TestUpdateRetriesConflicts(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	if err := s.Update(func(tx *Txn) error { return tx.PutInode(Inode{Ino: 9}) }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				err := s.Update(func(tx *Txn) error {
					in, err := tx.GetInode(9)
					if err != nil {
						return err
					}
					in.Size++
					return tx.PutInode(in)
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	_ = s.View(func(tx *Txn) error {
		in, _ := tx.GetInode(9)
		if in.Size != 200 {
			t.Errorf("counter %d after 200 increments: lost updates", in.Size)
		}
		return nil
	})
}

func TestStats(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	err := s.Update(func(tx *Txn) error {
		// 10000 bytes in 4096-byte blocks: blocks 0 and 2 stored, 1 a hole.
		if err := tx.PutInode(Inode{Ino: 20, Mode: syscall.S_IFREG | 0o644, Size: 10000}); err != nil {
			return err
		}
		if err := tx.PutBlock(20, 0, make([]byte, 100), 1); err != nil {
			return err
		}
		if err := tx.PutBlock(20, 2, make([]byte, 1000), 0); err != nil {
			return err
		}
		return tx.PutInode(Inode{Ino: 21, Mode: syscall.S_IFDIR | 0o755})
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 1 || st.Dirs != 2 || st.LogicalBytes != 10000 || st.StoredBytes != 1100 ||
		st.DataBytes != 4096+(10000-8192) || st.Blocks[1] != 1 || st.Blocks[0] != 1 || st.CodecBytes[1] != 100 ||
		st.CodecData[1] != 4096 || st.CodecData[0] != 10000-8192 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInodeRecordRoundTrip(t *testing.T) {
	in := Inode{Ino: 3, Mode: 0o100644, Uid: 1, Gid: 2, Nlink: 3, Rdev: 4, Size: 1 << 40, Atime: -5, Mtime: 6, Ctime: 7}
	got, err := decodeInode(3, in.encode())
	if err != nil || got != in {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if _, err := decodeInode(3, in.encode()[:10]); err == nil {
		t.Fatal("short record accepted")
	}
}

func TestGCGivesSpaceBackAfterDelete(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir, BlockSize: 65536, MemTableSize: 1 << 20, ValueLogFileSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := make([]byte, 60000)
	for i := range rec {
		rec[i] = byte(i * 7)
	}
	const blocks = 1200 // ~70 MB: more than gcCompactAfter
	for lo := 0; lo < blocks; lo += 100 {
		err := s.Update(func(tx *Txn) error {
			for b := lo; b < lo+100; b++ {
				if err := tx.PutBlock(30, uint64(b), rec, 0); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	before := dirSize(dir)
	if err := s.Purge(30); err != nil {
		t.Fatal(err)
	}
	if n := s.RunGC(); n == 0 {
		t.Fatalf("value-log GC rewrote no file after deleting %d bytes", blocks*len(rec))
	}
	after := dirSize(dir)
	if after > before/2 {
		t.Fatalf("store uses %d bytes after delete and GC, %d before", after, before)
	}
}

func FuzzDecodeInode(f *testing.F) {
	f.Add(Inode{Ino: 1, Mode: 0o40755, Nlink: 2, Size: 4096, Mtime: 1}.encode())
	f.Add([]byte{})
	f.Add(make([]byte, inodeRecLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := decodeInode(7, b)
		if err != nil {
			return
		}
		if got := in.encode(); string(got) != string(b) {
			t.Fatalf("decode/encode changed the record: %x -> %x", b, got)
		}
	})
}

func TestReplacedBlocksCountAsGarbage(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	rec := make([]byte, 10000)
	put := func() {
		t.Helper()
		if err := s.Update(func(tx *Txn) error { return tx.PutBlock(5, 0, rec, 0) }); err != nil {
			t.Fatal(err)
		}
	}
	put()
	if g := s.garbage.Load(); g != 0 {
		t.Fatalf("garbage %d after the first write", g)
	}
	put()
	if g := s.garbage.Load(); g != int64(len(rec)) {
		t.Fatalf("garbage %d after an overwrite, want %d", g, len(rec))
	}
	if err := s.Update(func(tx *Txn) error { return tx.DeleteBlock(5, 0) }); err != nil {
		t.Fatal(err)
	}
	if g := s.garbage.Load(); g != 2*int64(len(rec)) {
		t.Fatalf("garbage %d after a delete, want %d", g, 2*len(rec))
	}
}
