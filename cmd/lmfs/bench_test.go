package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/coder/bench"
)

func benchDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), sample(20000), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(strings.Repeat(`{"k": [1, 2, 3], "v": "lmfs"}`+"\n", 200)), 0o644)
	os.WriteFile(filepath.Join(dir, "c.bin"), sample(3000)[2000:], 0o644)
	os.WriteFile(filepath.Join(dir, bench.ManifestName), []byte("name\tbytes\tsha256\tkind\na.txt\t20000\t-\ttext\nb.json\t1\t-\tjson\nc.bin\t1000\t-\tbinary\n"), 0o644)
	return dir
}

func TestBenchJSON(t *testing.T) {
	dir := benchDir(t)
	code, out, errs := runCLI(t, "", "bench", "--json", "--block-size", "4KiB", "--codecs", "raw,zstd,policy:balanced,zstd-3,xz-9", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep bench.JSONReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if rep.BlockSize != 4096 || len(rep.Methods) != 5 || len(rep.Files) != 3 {
		t.Fatalf("block size %d, %d methods, %d files", rep.BlockSize, len(rep.Methods), len(rep.Files))
	}
	sizes := map[string]int64{"a.txt": 20000, "b.json": 6000, "c.bin": 1000}
	for _, f := range rep.Files {
		for _, r := range f.Results {
			if r.RawBytes != sizes[f.Name] {
				t.Errorf("%s %s: %d raw bytes, want %d", f.Name, r.Method, r.RawBytes, sizes[f.Name])
			}
			if math.Abs(r.BitsPerByte-float64(r.CompBytes)*8/float64(r.RawBytes)) > 1e-9 || r.EncMBps <= 0 || r.DecWallMBps <= 0 {
				t.Errorf("%s %s: inconsistent %+v", f.Name, r.Method, r)
			}
		}
	}
	var groups []string
	for _, g := range rep.Totals {
		groups = append(groups, g.Group)
		if g.Group == "text-like" && (g.Files != 2 || g.Results[0].RawBytes != 26000) {
			t.Errorf("text-like total: %d files, %d bytes", g.Files, g.Results[0].RawBytes)
		}
	}
	if strings.Join(groups, ",") != "kind:binary,kind:json,kind:text,text-like,all" {
		t.Errorf("groups %v", groups)
	}
}

func TestBenchTable(t *testing.T) {
	dir := benchDir(t)
	jf := filepath.Join(t.TempDir(), "r.json")
	code, out, errs := runCLI(t, "", "bench", "--block-size", "1000", "--codecs", "zstd,zstd-19", "--json-out", jf, filepath.Join(dir, "a.txt"), filepath.Join(dir, "c.bin"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep bench.JSONReport
	if b, err := os.ReadFile(jf); err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Files) != 2 {
		t.Errorf("--json-out file: %v, %d files", err, len(rep.Files))
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 10 && f[0] != "FILE" && f[0] != "TOTAL" {
			rows[filepath.Base(f[0])+" "+f[2]] = f
		}
	}
	for _, key := range []string{"a.txt zstd", "a.txt zstd-19", "c.bin zstd", "c.bin zstd-19", "all zstd", "all zstd-19"} {
		f, ok := rows[key]
		if !ok {
			t.Errorf("no row %q in\n%s", key, out)
			continue
		}
		raw, err1 := strconv.ParseFloat(f[3], 64)
		comp, err2 := strconv.ParseFloat(f[4], 64)
		bpb, err3 := strconv.ParseFloat(f[5], 64)
		if err1 != nil || err2 != nil || err3 != nil || math.Abs(bpb-comp*8/raw) > 0.001 {
			t.Errorf("row %q: bad numbers %v", key, f)
		}
	}
	if a := rows["all zstd"]; a != nil && a[3] != "21000" {
		t.Errorf("total bytes %s, want 21000", a[3])
	}
	for _, want := range []string{"BITS/BYTE", "zstd-19: zstd -19", "MB/s/core"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestBenchBadArguments(t *testing.T) {
	dir := benchDir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "requires at least 1 arg"},
		{[]string{"bench", "--codecs", "gzip", dir}, `unknown method "gzip"`},
		{[]string{"bench", "--block-size", "0", dir}, "--block-size"},
		{[]string{"bench", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"bench", t.TempDir()}, "no files to measure"},
	} {
		code, _, errs := runCLI(t, "", tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errs, tc.want)
		}
	}
}
