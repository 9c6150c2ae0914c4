package blockstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"
)

func TestModelsKeptAndChecked(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), BlockSize: 4096, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A model file larger than the memtable, as real ones are.
	file := bytes.Repeat([]byte("model weights "), 300_000)
	id, err := s.PutModel(file)
	if err != nil {
		t.Fatal(err)
	}
	if id != sha256.Sum256(file) {
		t.Fatal("model id is not the file's SHA-256")
	}
	if _, err := s.PutModel(file); err != nil { // idempotent
		t.Fatal(err)
	}
	got, err := s.Models()
	if err != nil || len(got) != 1 || !bytes.Equal(got[id], file) {
		t.Fatalf("Models: %d models, %v", len(got), err)
	}
	r, err := s.Check(context.Background(), CheckOptions{})
	if err != nil || len(r.Problems) != 0 {
		t.Fatalf("clean store with a model: %v %v", r, err)
	}

	// A copy whose bytes no longer hash to its key is reported, by Models
	// and by fsck, and not returned.
	var other [32]byte
	other[0] = 1
	if err := s.Update(func(tx *Txn) error { return tx.t.Set(modelKey(other), []byte("not it")) }); err != nil {
		t.Fatal(err)
	}
	got, err = s.Models()
	if err == nil || !strings.Contains(err.Error(), "damaged") || len(got) != 1 {
		t.Fatalf("damaged model: %d models, %v", len(got), err)
	}
	r, err = s.Check(context.Background(), CheckOptions{})
	if err != nil || len(r.Problems) != 1 || r.Problems[0].Kind != "model" {
		t.Fatalf("fsck of a damaged model: %+v %v", r, err)
	}
}
