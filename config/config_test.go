package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPrecedence(t *testing.T) {
	f := writeFile(t, "store:\n  path: /from/file\ncodec:\n  policy: max\ncache:\n  size: 128MiB\n")
	t.Setenv("LMFS_CODEC_POLICY", "fast")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("store", "", "")
	if err := fs.Parse([]string{"--store=/from/flag"}); err != nil {
		t.Fatal(err)
	}
	c, used, err := Load(f, fs)
	if err != nil {
		t.Fatal(err)
	}
	if used != f {
		t.Errorf("used %q", used)
	}
	if c.Store.Path != "/from/flag" {
		t.Errorf("flag should win: %q", c.Store.Path)
	}
	if c.Codec.Policy != "fast" {
		t.Errorf("env should beat file: %q", c.Codec.Policy)
	}
	if c.Cache.Size != 128<<20 {
		t.Errorf("cache.size %d", c.Cache.Size)
	}
	if c.FS.BlockSize != 64<<10 {
		t.Errorf("default block size %d", c.FS.BlockSize)
	}
	if r := c.Recompress; !r.Enabled || r.Idle != "2s" || r.Workers != 1 {
		t.Errorf("recompress defaults %+v, want enabled, 2s idle, 1 worker", r)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "store:\n  pth: /x\n", "unknown keys: store.pth"},
		{"unknown section", "stor:\n  path: /x\n", "unknown keys: stor"},
		{"bad policy", "codec:\n  policy: best\n", "codec.policy"},
		{"bad size", "cache:\n  size: lots\n", "not a size"},
		{"block size not power of two", "fs:\n  block_size: 65000\n", "power of two"},
		{"bad yaml", "store: [\n", "not valid YAML"},
		{"bad level", "codec:\n  zstd_level: 40\n", "zstd_level"},
		{"bad recompress idle", "recompress:\n  idle: soon\n", "recompress.idle"},
		{"negative recompress idle", "recompress:\n  idle: -1s\n", "recompress.idle"},
		{"no recompress workers", "recompress:\n  workers: 0\n", "recompress.workers"},
		{"bad predictor device", "predictor:\n  device: tpu\n", "predictor.device"},
		{"no cuda batch", "predictor:\n  cuda_batch: 0\n", "predictor.cuda_batch"},
		{"bad metrics address", "metrics:\n  listen: localhost\n", "metrics.listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Load(writeFile(t, tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"65536", 65536, true}, {"64KiB", 65536, true}, {"64K", 65536, true}, {"16MiB", 16 << 20, true},
		{"1GiB", 1 << 30, true}, {"10B", 10, true}, {"-1", 0, false}, {"x", 0, false}, {"", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
	if s := Size(64 << 10).String(); s != "64KiB" {
		t.Errorf("String = %s", s)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c, _, err := Load(writeFile(t, "log:\n  level: debug\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	c2, _, err := Load(writeFile(t, string(y)), nil)
	if err != nil {
		t.Fatalf("printed config does not load back: %v\n%s", err, y)
	}
	if *c2 != *c {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
	}
}
