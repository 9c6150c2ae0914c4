package mount

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// scrape fetches /metrics from addr and returns each sample by its name and
// labels as written (e.g. `lmfs_coded_blocks_total{codec="zstd",direction="encode"}`).
func scrape(t *testing.T, addr net.Addr) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetrics: a mount with metrics.listen serves /metrics; writing and
// reading a file moves the coding counters and the store gauges; unmounting
// stops the server.
func TestMetrics(t *testing.T) {
	needFuse(t)
	store, mnt := t.TempDir(), t.TempDir()
	cfg := cfgFor(store)
	cfg.Metrics.Listen = "127.0.0.1:0"
	m, err := Mount(context.Background(), cfg, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.metrics.col.maxAge = 0 // store gauges fresh at every scrape
	addr := m.MetricsAddr()
	before := scrape(t, addr)
	for _, k := range []string{"lmfs_logical_bytes", `lmfs_scheduler_queued_jobs{priority="read"}`, `lmfs_scheduler_queued_jobs{priority="background"}`, "lmfs_cache_hits_total", "lmfs_decode_errors_total", "lmfs_write_errors_total", "go_goroutines"} {
		if _, ok := before[k]; !ok {
			t.Errorf("metric %s missing", k)
		}
	}
	data := textOf(rand.New(rand.NewPCG(7, 8)), 100_000)
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, addr)
	enc := `{codec="zstd",direction="encode"}`
	for _, c := range []struct {
		name string
		min  float64
	}{
		{"lmfs_coded_blocks_total" + enc, 25}, // 100,000 bytes in 4 KiB blocks
		{"lmfs_coded_bytes_total" + enc, float64(len(data))},
		{"lmfs_coded_stored_bytes_total" + enc, 1},
		{"lmfs_coding_seconds_total" + enc, 1e-9},
		{"lmfs_logical_bytes", float64(len(data))},
		{`lmfs_codec_logical_bytes{codec="zstd"}`, float64(len(data))},
		{`lmfs_codec_blocks{codec="zstd"}`, 25},
		{`lmfs_codec_stored_bytes{codec="zstd"}`, 1},
	} {
		if got := after[c.name]; got < c.min || got <= before[c.name] {
			t.Errorf("%s = %v after writing (was %v), want at least %v", c.name, got, before[c.name], c.min)
		}
	}
	if after["lmfs_cache_hits_total"]+after["lmfs_cache_misses_total"] <= before["lmfs_cache_hits_total"]+before["lmfs_cache_misses_total"] {
		t.Errorf("reading did not move the cache counters")
	}
	closeT(t, m)
	if _, err := http.Get("http://" + addr.String() + "/metrics"); err == nil {
		t.Errorf("/metrics still served after unmount")
	}
}

// TestMetricsBadAddress: an address that cannot be listened on is a clear
// error at mount time, and leaves nothing mounted or open.
func TestMetricsBadAddress(t *testing.T) {
	needFuse(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	store, mnt := t.TempDir(), t.TempDir()
	for _, addr := range []string{busy.Addr().String(), "192.0.2.1:9101"} { // in use; not an address of this host
		cfg := cfgFor(store)
		cfg.Metrics.Listen = addr
		m, err := Mount(context.Background(), cfg, mnt, nil)
		if err == nil {
			m.Close()
			t.Fatalf("mount with metrics.listen %s succeeded", addr)
		}
		if !strings.Contains(err.Error(), "metrics.listen "+addr) {
			t.Errorf("error %q does not name metrics.listen %s", err, addr)
		}
	}
	if err := CheckMountpoint(mnt); err != nil {
		t.Fatalf("after the failed mounts: %v", err)
	}
	m, err := Mount(context.Background(), cfgFor(store), mnt, nil)
	if err != nil {
		t.Fatalf("mount without metrics after the failed ones: %v", err)
	}
	closeT(t, m)
}
