package fs

import (
	"fmt"
	"log/slog"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
)

// PrepareModels makes the store and the registry agree on models (DESIGN.md
// section 4): every model file the store keeps is registered, so blocks coded
// with a model this binary does not ship still decode; and when writesModels
// is set (the policy may code blocks with a model), the built-in model is
// copied into the store before any block names it.
func PrepareModels(st *blockstore.Store, reg *coder.Registry, cmMemory int64, writesModels bool, log *slog.Logger) error {
	stored, err := st.Models()
	if err != nil {
		// A damaged copy is reported (fsck lists it too); the others are used.
		log.Error("store models", "err", err)
	}
	for id, data := range stored {
		if err := reg.RegisterModel(id, data, cmMemory); err != nil {
			return fmt.Errorf("store %s keeps model %x that this lmfs cannot load: %w", st.Dir(), id[:6], err)
		}
	}
	if !writesModels {
		return nil
	}
	file := coder.DefaultModelFile()
	id, err := st.PutModel(file)
	if err != nil {
		return err
	}
	if _, ok := stored[id]; !ok {
		log.Info("copied the built-in model into the store", "model", coder.ModelID(id).Short(), "bytes", len(file))
	}
	return nil
}
