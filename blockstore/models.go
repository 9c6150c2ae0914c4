package blockstore

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// pModel prefixes the model files a store keeps (see KEYS.md): `M` + the
// 32-byte SHA-256 of the file, the file as value. A store keeps every model
// its blocks may name, so it stays readable after the binary's default model
// changes (DESIGN.md section 4).
const pModel = 'M'

func modelKey(id [32]byte) []byte { return append([]byte{pModel}, id[:]...) }

// PutModel stores a model file under its SHA-256 unless it is there already.
func (s *Store) PutModel(data []byte) ([32]byte, error) {
	id := sha256.Sum256(data)
	err := s.Update(func(t *Txn) error {
		_, err := t.t.Get(modelKey(id))
		if err == nil {
			return nil
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return t.t.Set(modelKey(id), data)
	})
	if err != nil {
		return id, fmt.Errorf("store model %x: %w", id[:6], err)
	}
	if err := s.Sync(); err != nil {
		return id, err
	}
	return id, nil
}

// Models returns every model file the store keeps, by SHA-256. A file whose
// contents do not hash to its key is reported as an error naming it (lmfs
// fsck reports it too); the others are still returned.
func (s *Store) Models() (map[[32]byte][]byte, error) {
	out := map[[32]byte][]byte{}
	var bad []error
	err := s.View(func(t *Txn) error {
		it := t.t.NewIterator(badger.IteratorOptions{Prefix: []byte{pModel}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 1+32 {
				bad = append(bad, fmt.Errorf("model key %q has a bad length", k))
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			var id [32]byte
			copy(id[:], k[1:])
			if sha256.Sum256(v) != id {
				bad = append(bad, fmt.Errorf("stored model %x is damaged (its SHA-256 does not match): blocks coded with it cannot be read", id[:6]))
				continue
			}
			out[id] = v
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	return out, errors.Join(bad...)
}
