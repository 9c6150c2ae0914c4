package blockstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// Key prefixes (see KEYS.md).
const (
	pSuper   = 'S'
	pCounter = 'C'
	pInode   = 'I'
	pDirent  = 'D'
	pBlock   = 'B'
	pXattr   = 'X'
	pLink    = 'L'
	pOrphan  = 'O'
	// pGCMarker is a scratch key RunGC writes and drops to flush the memtable.
	pGCMarker = 'Z'
)

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func inoKey(p byte, ino uint64) []byte {
	k := make([]byte, 9)
	k[0] = p
	binary.BigEndian.PutUint64(k[1:], ino)
	return k
}

func nameKey(p byte, ino uint64, name string) []byte {
	return append(inoKey(p, ino), name...)
}

func blockKey(ino, blk uint64) []byte {
	k := make([]byte, 17)
	k[0] = pBlock
	binary.BigEndian.PutUint64(k[1:], ino)
	binary.BigEndian.PutUint64(k[9:], blk)
	return k
}

// Inode is an inode record.
type Inode struct {
	Ino   uint64
	Mode  uint32 // file type and permission bits, as in stat(2)
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Rdev  uint32
	Size  uint64
	Atime int64 // nanoseconds since the Unix epoch
	Mtime int64
	Ctime int64
}

const inodeRecLen = 53

func (in Inode) encode() []byte {
	b := make([]byte, inodeRecLen)
	b[0] = 1
	be := binary.BigEndian
	be.PutUint32(b[1:], in.Mode)
	be.PutUint32(b[5:], in.Uid)
	be.PutUint32(b[9:], in.Gid)
	be.PutUint32(b[13:], in.Nlink)
	be.PutUint32(b[17:], in.Rdev)
	be.PutUint64(b[21:], in.Size)
	be.PutUint64(b[29:], uint64(in.Atime))
	be.PutUint64(b[37:], uint64(in.Mtime))
	be.PutUint64(b[45:], uint64(in.Ctime))
	return b
}

func decodeInode(ino uint64, b []byte) (Inode, error) {
	if len(b) != inodeRecLen || b[0] != 1 {
		return Inode{}, fmt.Errorf("inode %d record is damaged (%d bytes, version %d)", ino, len(b), firstByte(b))
	}
	be := binary.BigEndian
	return Inode{
		Ino:   ino,
		Mode:  be.Uint32(b[1:]),
		Uid:   be.Uint32(b[5:]),
		Gid:   be.Uint32(b[9:]),
		Nlink: be.Uint32(b[13:]),
		Rdev:  be.Uint32(b[17:]),
		Size:  be.Uint64(b[21:]),
		Atime: int64(be.Uint64(b[29:])),
		Mtime: int64(be.Uint64(b[37:])),
		Ctime: int64(be.Uint64(b[45:])),
	}, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// Dirent is a directory entry.
type Dirent struct {
	Name string
	Ino  uint64
	Type uint32 // mode & S_IFMT
}

// Txn is a Badger transaction with lmfs's record accessors.
type Txn struct {
	t       *badger.Txn
	s       *Store
	deleted int64 // value bytes deleted, for value-log GC
}

func (t *Txn) get(k []byte) ([]byte, error) {
	item, err := t.t.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// GetInode reads inode ino.
func (t *Txn) GetInode(ino uint64) (Inode, error) {
	v, err := t.get(inoKey(pInode, ino))
	if err != nil {
		return Inode{}, fmt.Errorf("inode %d: %w", ino, err)
	}
	return decodeInode(ino, v)
}

// PutInode writes in's record.
func (t *Txn) PutInode(in Inode) error { return t.t.Set(inoKey(pInode, in.Ino), in.encode()) }

// Lookup returns the entry name in directory parent.
func (t *Txn) Lookup(parent uint64, name string) (Dirent, error) {
	v, err := t.get(nameKey(pDirent, parent, name))
	if err != nil {
		return Dirent{}, err
	}
	if len(v) != 12 {
		return Dirent{}, fmt.Errorf("directory entry %q in inode %d is damaged", name, parent)
	}
	return Dirent{Name: name, Ino: binary.BigEndian.Uint64(v), Type: binary.BigEndian.Uint32(v[8:])}, nil
}

// PutDirent adds or replaces entry d in directory parent.
func (t *Txn) PutDirent(parent uint64, d Dirent) error {
	v := make([]byte, 12)
	binary.BigEndian.PutUint64(v, d.Ino)
	binary.BigEndian.PutUint32(v[8:], d.Type)
	return t.t.Set(nameKey(pDirent, parent, d.Name), v)
}

// DeleteDirent removes entry name from directory parent.
func (t *Txn) DeleteDirent(parent uint64, name string) error {
	return t.t.Delete(nameKey(pDirent, parent, name))
}

// ListDir returns the entries of directory parent, sorted by name.
func (t *Txn) ListDir(parent uint64) ([]Dirent, error) {
	var out []Dirent
	pre := inoKey(pDirent, parent)
	it := t.t.NewIterator(badger.IteratorOptions{Prefix: pre, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		name := string(item.Key()[len(pre):])
		err := item.Value(func(v []byte) error {
			if len(v) != 12 {
				return fmt.Errorf("directory entry %q in inode %d is damaged", name, parent)
			}
			out = append(out, Dirent{Name: name, Ino: binary.BigEndian.Uint64(v), Type: binary.BigEndian.Uint32(v[8:])})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DirEmpty reports whether directory parent has no entries.
func (t *Txn) DirEmpty(parent uint64) bool {
	it := t.t.NewIterator(badger.IteratorOptions{Prefix: inoKey(pDirent, parent)})
	defer it.Close()
	it.Rewind()
	return !it.Valid()
}

// GetBlock returns block blk of inode ino as a block record.
func (t *Txn) GetBlock(ino, blk uint64) ([]byte, error) {
	return t.get(blockKey(ino, blk))
}

// PutBlock stores block record rec as block blk of ino; meta is its codec
// id and recode level (Meta).
func (t *Txn) PutBlock(ino, blk uint64, rec []byte, meta byte) error {
	k := blockKey(ino, blk)
	t.countGarbage(k)
	return t.t.SetEntry(badger.NewEntry(k, rec).WithMeta(meta))
}

// DeleteBlock removes block blk of ino (it becomes a hole).
func (t *Txn) DeleteBlock(ino, blk uint64) error {
	k := blockKey(ino, blk)
	t.countGarbage(k)
	return t.t.Delete(k)
}

// countGarbage adds the size of the value stored under k, which the caller
// replaces or deletes, to the garbage that value-log GC will collect.
func (t *Txn) countGarbage(k []byte) {
	if item, err := t.t.Get(k); err == nil {
		t.deleted += item.ValueSize()
	}
}

// NextBlock returns the first stored block number >= from of ino.
func (t *Txn) NextBlock(ino, from uint64) (uint64, bool) {
	pre := inoKey(pBlock, ino)
	it := t.t.NewIterator(badger.IteratorOptions{Prefix: pre})
	defer it.Close()
	it.Seek(blockKey(ino, from))
	if !it.Valid() {
		return 0, false
	}
	return binary.BigEndian.Uint64(it.Item().Key()[9:]), true
}

// BlockNumbers returns the stored block numbers of ino in [from, to), in order.
func (t *Txn) BlockNumbers(ino, from, to uint64) []uint64 {
	var out []uint64
	it := t.t.NewIterator(badger.IteratorOptions{Prefix: inoKey(pBlock, ino)})
	defer it.Close()
	for it.Seek(blockKey(ino, from)); it.Valid(); it.Next() {
		b := binary.BigEndian.Uint64(it.Item().Key()[9:])
		if b >= to {
			break
		}
		out = append(out, b)
	}
	return out
}

// GetSymlink returns the target of symlink ino.
func (t *Txn) GetSymlink(ino uint64) ([]byte, error) { return t.get(inoKey(pLink, ino)) }

// PutSymlink stores the target of symlink ino.
func (t *Txn) PutSymlink(ino uint64, target []byte) error {
	return t.t.Set(inoKey(pLink, ino), target)
}

// GetXattr returns extended attribute name of ino.
func (t *Txn) GetXattr(ino uint64, name string) ([]byte, error) {
	return t.get(nameKey(pXattr, ino, name))
}

// SetXattr sets extended attribute name of ino.
func (t *Txn) SetXattr(ino uint64, name string, val []byte) error {
	return t.t.Set(nameKey(pXattr, ino, name), append([]byte(nil), val...))
}

// DeleteXattr removes extended attribute name of ino.
func (t *Txn) DeleteXattr(ino uint64, name string) error {
	return t.t.Delete(nameKey(pXattr, ino, name))
}

// ListXattr returns the extended attribute names of ino.
func (t *Txn) ListXattr(ino uint64) []string {
	pre := inoKey(pXattr, ino)
	it := t.t.NewIterator(badger.IteratorOptions{Prefix: pre})
	defer it.Close()
	var out []string
	for it.Rewind(); it.Valid(); it.Next() {
		out = append(out, string(it.Item().Key()[len(pre):]))
	}
	return out
}

// AddOrphan records that ino has no links left and must be purged.
func (t *Txn) AddOrphan(ino uint64) error { return t.t.Set(inoKey(pOrphan, ino), nil) }

// deleteRange deletes keys with prefix pre starting at from, at most max of
// them, and reports whether any remain.
func (t *Txn) deleteRange(pre, from []byte, max int) (bool, error) {
	var keys [][]byte
	var bytes int64
	it := t.t.NewIterator(badger.IteratorOptions{Prefix: pre})
	for it.Seek(from); it.Valid() && len(keys) < max+1; it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
		if len(keys) <= max {
			bytes += it.Item().ValueSize()
		}
	}
	it.Close()
	more := len(keys) > max
	if more {
		keys = keys[:max]
	}
	for _, k := range keys {
		if err := t.t.Delete(k); err != nil {
			return false, err
		}
	}
	t.deleted += bytes
	return more, nil
}

// deleteBatch bounds the deletes in one transaction.
func (s *Store) deleteBatch() int {
	n, _ := s.TxnLimits()
	return max(1, min(4096, n))
}

// DeleteBlocksFrom removes every stored block of ino numbered from or more,
// in as many transactions as it takes.
func (s *Store) DeleteBlocksFrom(ino, from uint64) error {
	if err := s.deleteKeys(inoKey(pBlock, ino), blockKey(ino, from)); err != nil {
		return fmt.Errorf("delete blocks of inode %d: %w", ino, err)
	}
	return nil
}

// deleteKeys removes every key under prefix from start on, in batches of
// deleteBatch keys per transaction.
func (s *Store) deleteKeys(prefix, start []byte) error {
	for {
		var more bool
		err := s.Update(func(t *Txn) error {
			var err error
			more, err = t.deleteRange(prefix, start, s.deleteBatch())
			return err
		})
		if err != nil || !more {
			return err
		}
	}
}

// Purge removes inode ino with its blocks, xattrs, symlink target and orphan
// marker. The inode record and marker go last, so an interrupted purge is
// finished by the next CleanOrphans.
func (s *Store) Purge(ino uint64) error {
	if err := s.DeleteBlocksFrom(ino, 0); err != nil {
		return err
	}
	if err := s.deleteKeys(inoKey(pXattr, ino), inoKey(pXattr, ino)); err != nil {
		return fmt.Errorf("delete xattrs of inode %d: %w", ino, err)
	}
	return s.Update(func(t *Txn) error {
		for _, k := range [][]byte{inoKey(pLink, ino), inoKey(pInode, ino), inoKey(pOrphan, ino)} {
			if err := t.t.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Orphans lists the inodes waiting to be purged.
func (s *Store) Orphans() ([]uint64, error) {
	var out []uint64
	err := s.View(func(t *Txn) error {
		it := t.t.NewIterator(badger.IteratorOptions{Prefix: []byte{pOrphan}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, binary.BigEndian.Uint64(it.Item().Key()[1:]))
		}
		return nil
	})
	return out, err
}

// CleanOrphans purges every inode left on the orphan list (files unlinked
// while open when the previous process stopped).
func (s *Store) CleanOrphans(ctx context.Context) error {
	inos, err := s.Orphans()
	if err != nil {
		return err
	}
	for _, ino := range inos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.Purge(ino); err != nil {
			return err
		}
		s.log.Info("purged orphaned inode", "ino", ino)
	}
	return nil
}

// Stats describes what a store holds.
type Stats struct {
	Files        uint64          // regular files
	Dirs         uint64          // directories
	Symlinks     uint64          // symbolic links
	LogicalBytes uint64          // sum of regular file sizes
	DataBytes    uint64          // logical bytes in stored (non-hole) blocks, an upper bound
	StoredBytes  uint64          // sum of block record sizes
	Blocks       map[byte]uint64 // blocks per codec id
	CodecBytes   map[byte]uint64 // stored bytes per codec id
	// CodecData is the logical bytes per codec id: DataBytes split by the
	// codec of each block.
	CodecData map[byte]uint64
	// Waiting and WaitingBytes count, per codec id, the blocks (and their
	// stored bytes) that only the fast codecs have seen (LevelFast): written
	// by the fast write path and waiting for recompression.
	Waiting      map[byte]uint64
	WaitingBytes map[byte]uint64
	DiskBytes    int64 // Badger's LSM and value-log files on disk
}

// Stats scans the store (see KEYS.md); it does not read block payloads.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{Blocks: map[byte]uint64{}, CodecBytes: map[byte]uint64{}, CodecData: map[byte]uint64{}, Waiting: map[byte]uint64{}, WaitingBytes: map[byte]uint64{}}
	sizes := map[uint64]uint64{}
	bs := uint64(s.blockSize)
	err := s.View(func(t *Txn) error {
		it := t.t.NewIterator(badger.IteratorOptions{Prefix: []byte{pInode}, PrefetchValues: true, PrefetchSize: 256})
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			ino := binary.BigEndian.Uint64(item.Key()[1:])
			err := item.Value(func(v []byte) error {
				in, err := decodeInode(ino, v)
				if err != nil {
					return err
				}
				switch in.Mode & 0o170000 {
				case 0o100000:
					st.Files++
					st.LogicalBytes += in.Size
					sizes[ino] = in.Size
				case 0o040000:
					st.Dirs++
				case 0o120000:
					st.Symlinks++
				}
				return nil
			})
			if err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
		if err := ctx.Err(); err != nil {
			return err
		}
		it = t.t.NewIterator(badger.IteratorOptions{Prefix: []byte{pBlock}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			ino := binary.BigEndian.Uint64(k[1:9])
			blk := binary.BigEndian.Uint64(k[9:])
			c := MetaCodec(item.UserMeta())
			if MetaLevel(item.UserMeta()) == LevelFast {
				st.Waiting[c]++
				st.WaitingBytes[c] += uint64(item.ValueSize())
			}
			st.Blocks[c]++
			st.CodecBytes[c] += uint64(item.ValueSize())
			st.StoredBytes += uint64(item.ValueSize())
			if sz := sizes[ino]; blk*bs < sz {
				st.DataBytes += min(bs, sz-blk*bs)
				st.CodecData[c] += min(bs, sz-blk*bs)
			}
		}
		return nil
	})
	st.DiskBytes = dirSize(filepath.Join(s.dir, "badger"))
	return st, err
}

// dirSize sums the allocated sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512 // allocated, not apparent: Badger preallocates sparse files
				} else {
					n += fi.Size()
				}
			}
		}
		return nil
	})
	return n
}
