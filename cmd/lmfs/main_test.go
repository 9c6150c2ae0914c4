package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command line in-process and returns status, stdout, stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	cf := filepath.Join(dir, "c.yaml")
	os.WriteFile(cf, []byte("codec:\n  policy: max\n"), 0o644)
	code, out, errs := runCLI(t, "", "--config", cf, "config", "--store", "/s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"policy: max", "path: /s", "block_size: 64KiB", "# config file: " + cf} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	os.WriteFile(cf, []byte("codec:\n  polcy: max\n"), 0o644)
	code, _, errs = runCLI(t, "", "--config", cf, "config")
	if code == 0 || !strings.Contains(errs, "unknown keys: codec.polcy") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}
