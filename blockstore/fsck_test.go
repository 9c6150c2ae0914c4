package blockstore

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/lmfs/lmfs/coder"
)

// fsckFixture is a small consistent filesystem written through the store API:
// /d (dir), /d/f and its hard link /d/h (3 blocks, one a hole), /l (symlink).
type fsckFixture struct {
	s          *Store
	reg        *coder.Registry
	d, f, l    uint64
	fileData   []byte
	blockRecs  map[uint64][]byte
	blockBytes uint64
}

func newFsckFixture(t testing.TB) *fsckFixture {
	t.Helper()
	z, err := coder.NewZstd(3)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), BlockSize: 4096, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	x := &fsckFixture{s: s, reg: coder.NewRegistry(z), blockRecs: map[uint64][]byte{}}
	t.Cleanup(func() { x.s.Close() })
	ctx := context.Background()
	for _, p := range []*uint64{&x.d, &x.f, &x.l} {
		if *p, err = x.s.AllocIno(); err != nil {
			t.Fatal(err)
		}
	}
	// 3 blocks of 4096: block 0 text, block 1 a hole, block 2 short random-ish.
	x.fileData = make([]byte, 2*4096+1000)
	copy(x.fileData, bytes.Repeat([]byte("lmfs fsck "), 410))
	for i := 8192; i < len(x.fileData); i++ {
		x.fileData[i] = byte(i * 7919 >> 3)
	}
	for _, blk := range []uint64{0, 2} {
		raw := x.fileData[blk*4096 : min(uint64(len(x.fileData)), (blk+1)*4096)]
		rec, err := x.reg.EncodeWith(ctx, nil, z, raw)
		if err != nil {
			t.Fatal(err)
		}
		x.blockRecs[blk] = rec
		x.blockBytes += uint64(len(raw))
	}
	err = x.s.Update(func(tx *Txn) error {
		root, err := tx.GetInode(RootIno)
		if err != nil {
			return err
		}
		root.Nlink = 3
		puts := []error{
			tx.PutInode(root),
			tx.PutInode(Inode{Ino: x.d, Mode: syscall.S_IFDIR | 0o755, Nlink: 2}),
			tx.PutInode(Inode{Ino: x.f, Mode: syscall.S_IFREG | 0o644, Nlink: 2, Size: uint64(len(x.fileData))}),
			tx.PutInode(Inode{Ino: x.l, Mode: syscall.S_IFLNK | 0o777, Nlink: 1, Size: 3}),
			tx.PutDirent(RootIno, Dirent{Name: "d", Ino: x.d, Type: syscall.S_IFDIR}),
			tx.PutDirent(x.d, Dirent{Name: "f", Ino: x.f, Type: syscall.S_IFREG}),
			tx.PutDirent(x.d, Dirent{Name: "h", Ino: x.f, Type: syscall.S_IFREG}),
			tx.PutDirent(RootIno, Dirent{Name: "l", Ino: x.l, Type: syscall.S_IFLNK}),
			tx.PutSymlink(x.l, []byte("d/f")),
			tx.SetXattr(x.f, "user.k", []byte("v")),
		}
		for blk, rec := range x.blockRecs {
			puts = append(puts, tx.PutBlock(x.f, blk, rec, rec[1]))
		}
		for _, e := range puts {
			if e != nil {
				return e
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *fsckFixture) check(t *testing.T) *CheckReport {
	t.Helper()
	r, err := x.s.Check(context.Background(), CheckOptions{VerifyBlock: func(ctx context.Context, rec []byte) (int, error) {
		b, _, err := x.reg.Decode(ctx, nil, rec)
		return len(b), err
	}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckClean(t *testing.T) {
	x := newFsckFixture(t)
	r := x.check(t)
	if len(r.Problems) != 0 {
		t.Fatalf("clean store has problems: %v", r.Problems)
	}
	if r.Inodes != 4 || r.Files != 1 || r.Dirs != 2 || r.Symlinks != 1 || r.Dirents != 4 || r.Xattrs != 1 || r.Blocks != 2 || r.BlockBytes != x.blockBytes {
		t.Fatalf("counts: %+v (want 4 inodes, 1 file, 2 dirs, 1 symlink, 4 dirents, 1 xattr, 2 blocks, %d bytes)", r, x.blockBytes)
	}
}

func TestCheckFindsDamage(t *testing.T) {
	raw := func(k, v []byte) func(*fsckFixture, *Txn) error {
		return func(_ *fsckFixture, tx *Txn) error { return tx.t.Set(k, v) }
	}
	cases := []struct {
		name   string
		damage func(x *fsckFixture, tx *Txn) error
		// want: kind, path, byte offset (-1: none) and a message fragment of
		// the one expected problem (or of each, when several).
		want []Problem
	}{
		{"flipped payload byte", func(x *fsckFixture, tx *Txn) error {
			rec := bytes.Clone(x.blockRecs[2])
			rec[len(rec)-3] ^= 0x40
			return tx.PutBlock(x.f, 2, rec, rec[1])
		}, []Problem{{Kind: "block", Path: "/d/f", Offset: 8192, Len: 1000, Msg: "block is damaged"}}},
		{"flipped CRC byte", func(x *fsckFixture, tx *Txn) error {
			rec := bytes.Clone(x.blockRecs[0])
			rec[4] ^= 1 // inside the CRC (after version, codec, 2-byte varint)
			return tx.PutBlock(x.f, 0, rec, rec[1])
		}, []Problem{{Kind: "block", Path: "/d/f", Offset: 0, Len: 4096, Msg: "CRC32C mismatch"}}},
		{"truncated record", func(x *fsckFixture, tx *Txn) error {
			return tx.PutBlock(x.f, 0, x.blockRecs[0][:3], 1)
		}, []Problem{{Kind: "block", Path: "/d/f", Offset: 0, Msg: "damaged"}}},
		{"entry to missing inode", func(x *fsckFixture, tx *Txn) error {
			return tx.PutDirent(x.d, Dirent{Name: "ghost", Ino: 999, Type: syscall.S_IFREG})
		}, []Problem{{Kind: "dirent", Path: "/d/ghost", Offset: -1, Msg: "missing inode 999"}}},
		{"unreachable inode", func(x *fsckFixture, tx *Txn) error {
			return tx.DeleteDirent(RootIno, "l")
		}, []Problem{{Kind: "inode", Offset: -1, Msg: "not on the orphan list"}}},
		{"wrong link count", func(x *fsckFixture, tx *Txn) error {
			in, _ := tx.GetInode(x.f)
			in.Nlink = 3
			return tx.PutInode(in)
		}, []Problem{{Kind: "nlink", Path: "/d/f", Offset: -1, Msg: "link count is 3 but the directory entries give 2"}}},
		{"wrong directory link count", func(x *fsckFixture, tx *Txn) error {
			in, _ := tx.GetInode(RootIno)
			in.Nlink = 2
			return tx.PutInode(in)
		}, []Problem{{Kind: "nlink", Path: "/", Offset: -1, Msg: "give 3"}}},
		{"block beyond the end", func(x *fsckFixture, tx *Txn) error {
			return tx.PutBlock(x.f, 5, x.blockRecs[0], 1)
		}, []Problem{{Kind: "block", Path: "/d/f", Offset: 5 * 4096, Msg: "beyond the end of the file"}}},
		{"block longer than the file", func(x *fsckFixture, tx *Txn) error {
			in, _ := tx.GetInode(x.f)
			in.Size = 8500
			return tx.PutInode(in)
		}, []Problem{{Kind: "block", Path: "/d/f", Offset: 8192, Len: 308, Msg: "holds 1000 bytes but only 308 fit"}}},
		{"block of unknown inode", func(x *fsckFixture, tx *Txn) error {
			return tx.PutBlock(777, 0, x.blockRecs[0], 1)
		}, []Problem{{Kind: "block", Offset: 0, Msg: "block of a missing inode"}}},
		{"damaged inode record", raw(inoKey(pInode, 500), []byte{1, 2, 3}),
			[]Problem{{Kind: "inode", Offset: -1, Msg: "record is damaged"}}},
		{"unknown key", raw([]byte("Qzz"), nil),
			[]Problem{{Kind: "key", Offset: -1, Msg: "unknown key"}}},
		{"leftover GC marker is fine", raw([]byte{pGCMarker}, nil), nil},
		{"orphan still linked", func(x *fsckFixture, tx *Txn) error { return tx.AddOrphan(x.l) },
			[]Problem{{Kind: "orphan", Path: "/l", Offset: -1, Msg: "on the orphan list"}}},
		{"symlink without target", func(x *fsckFixture, tx *Txn) error { return tx.t.Delete(inoKey(pLink, x.l)) },
			[]Problem{{Kind: "symlink", Path: "/l", Offset: -1, Msg: "no stored target"}}},
		{"inode above the counter", func(x *fsckFixture, tx *Txn) error {
			return tx.t.Set([]byte{pCounter}, be64(x.f))
		}, []Problem{{Kind: "counter", Path: "/d/f", Offset: -1, Msg: "handed out again"}, {Kind: "counter", Path: "/l", Offset: -1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newFsckFixture(t)
			if err := x.s.Update(func(tx *Txn) error { return tc.damage(x, tx) }); err != nil {
				t.Fatal(err)
			}
			r := x.check(t)
			if len(r.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(r.Problems), len(tc.want), problemLines(r.Problems))
			}
			for i, w := range tc.want {
				g := r.Problems[i]
				if g.Kind != w.Kind || g.Path != w.Path || g.Offset != w.Offset || (w.Len != 0 && g.Len != w.Len) || !strings.Contains(g.Msg, w.Msg) {
					t.Errorf("problem %d = %+v\nwant kind %q path %q offset %d len %d msg containing %q", i, g, w.Kind, w.Path, w.Offset, w.Len, w.Msg)
				}
			}
		})
	}
}

func problemLines(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

func TestProblemString(t *testing.T) {
	p := Problem{Kind: "block", Ino: 7, Path: "/a/b", Block: 2, Offset: 8192, Len: 4096, Msg: "block is damaged"}
	if got, want := p.String(), "/a/b (inode 7) block 2 at offset 8192: block is damaged (bytes 8192-12287)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	p = Problem{Kind: "key", Offset: -1, Block: -1, Msg: "unknown key"}
	if got := p.String(); got != "store: key: unknown key" {
		t.Errorf("String() = %q", got)
	}
}

// FuzzCheck writes arbitrary records (input: klen, key, vlen, value, ...)
// into a store beside a valid file and runs Check: damaged or nonsensical
// records must be reported, never panic or hang the checker.
func FuzzCheck(f *testing.F) {
	x := newFsckFixture(f)
	f.Add([]byte{9, 'I', 0, 0, 0, 0, 0, 0, 0, 9, 3, 1, 2, 3})
	f.Add(append([]byte{17, 'B', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 8}, x.blockRecs[0][:8]...))
	f.Add([]byte{10, 'D', 0, 0, 0, 0, 0, 0, 0, 1, 'z', 12, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x40, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		var keys [][]byte
		err := x.s.Update(func(tx *Txn) error {
			keys = keys[:0]
			for len(in) > 0 {
				kl := int(in[0])
				in = in[1:]
				if kl == 0 || kl > len(in) {
					return nil
				}
				k := in[:kl]
				in = in[kl:]
				var v []byte
				if len(in) > 0 {
					vl := min(int(in[0]), len(in)-1)
					v, in = in[1:1+vl], in[1+vl:]
				}
				if bytes.HasPrefix(k, []byte("!badger!")) || k[0] == pSuper {
					continue
				}
				if err := tx.t.Set(bytes.Clone(k), bytes.Clone(v)); err != nil {
					return nil
				}
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			t.Skip(err)
		}
		defer x.s.Update(func(tx *Txn) error {
			for _, k := range keys {
				tx.t.Delete(k)
			}
			return nil
		})
		r := x.check(t)
		for _, p := range r.Problems {
			_ = p.String()
		}
	})
}
