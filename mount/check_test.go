package mount

import (
	"context"
	"testing"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
)

// checkStore runs the store checker (what `lmfs fsck` runs) in process on the
// unmounted store at dir and reports every problem as a test error, prefixed
// with what.
func checkStore(t *testing.T, dir, what string) {
	t.Helper()
	st, err := blockstore.Open(context.Background(), blockstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := coder.NewStandard(coder.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Check(context.Background(), blockstore.CheckOptions{
		VerifyBlock: func(ctx context.Context, rec []byte) (int, error) {
			b, _, err := reg.Decode(ctx, nil, rec)
			return len(b), err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems {
		t.Errorf("fsck %s: %s", what, p)
	}
}
