package mount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	lfs "github.com/lmfs/lmfs/fs"
	"github.com/lmfs/lmfs/fs/sched"
)

// storeStatsMaxAge is how long a scrape reuses the store's statistics (a
// scan of the store's keys) before computing them again.
const storeStatsMaxAge = 10 * time.Second

// metricsServer serves the daemon's Prometheus metrics at /metrics from a
// private registry.
type metricsServer struct {
	col  *collector
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// startMetrics listens on addr and serves the metrics of fsys and st.
func startMetrics(addr string, st *blockstore.Store, fsys *lfs.FS, reg *coder.Registry, log *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w (is another process using the port? pick another address, or set metrics.listen to \"\" to turn metrics off)", addr, err)
	}
	col := &collector{st: st, fs: fsys, reg: reg, maxAge: storeStatsMaxAge}
	pr := prometheus.NewRegistry()
	pr.MustRegister(
		col,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(pr, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	m := &metricsServer{
		col:  col,
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", m.addr.String(), "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+m.addr.String()+"/metrics")
	return m, nil
}

// close stops the server, waiting a little for scrapes in progress.
func (m *metricsServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := m.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, m.srv.Close())
	}
	<-m.done
	return err
}

var (
	dLogical     = prometheus.NewDesc("lmfs_logical_bytes", "Sum of the sizes of all regular files.", nil, nil)
	dCodecData   = prometheus.NewDesc("lmfs_codec_logical_bytes", "Logical bytes in stored blocks, by the codec that stores them.", []string{"codec"}, nil)
	dCodecStored = prometheus.NewDesc("lmfs_codec_stored_bytes", "Stored block record bytes, by codec.", []string{"codec"}, nil)
	dCodecBlocks = prometheus.NewDesc("lmfs_codec_blocks", "Stored blocks, by codec.", []string{"codec"}, nil)
	dWaiting     = prometheus.NewDesc("lmfs_recompress_waiting_blocks", "Blocks coded by the fast write path only, waiting for recompression, by codec.", []string{"codec"}, nil)
	dWaitingB    = prometheus.NewDesc("lmfs_recompress_waiting_bytes", "Stored bytes of the blocks waiting for recompression, by codec.", []string{"codec"}, nil)
	dDisk        = prometheus.NewDesc("lmfs_store_disk_bytes", "Bytes of the store's Badger files on disk.", nil, nil)
	dStatsAge    = prometheus.NewDesc("lmfs_store_stats_age_seconds", "Age of the store statistics above (recomputed at most every 10s).", nil, nil)
	dCodedBlocks = prometheus.NewDesc("lmfs_coded_blocks_total", "Blocks coded, by codec and direction (encode, decode).", []string{"codec", "direction"}, nil)
	dCodedRaw    = prometheus.NewDesc("lmfs_coded_bytes_total", "Logical (decoded) bytes of the blocks coded, by codec and direction.", []string{"codec", "direction"}, nil)
	dCodedStored = prometheus.NewDesc("lmfs_coded_stored_bytes_total", "Record bytes of the blocks coded, by codec and direction.", []string{"codec", "direction"}, nil)
	dCodingSecs  = prometheus.NewDesc("lmfs_coding_seconds_total", "Time spent coding, summed over workers, by codec and direction; bytes / seconds is the per-worker throughput.", []string{"codec", "direction"}, nil)
	dQueued      = prometheus.NewDesc("lmfs_scheduler_queued_jobs", "Coding jobs waiting in the scheduler, by priority.", []string{"priority"}, nil)
	dRunning     = prometheus.NewDesc("lmfs_scheduler_running_jobs", "Coding jobs running, by priority.", []string{"priority"}, nil)
	dHits        = prometheus.NewDesc("lmfs_cache_hits_total", "Block reads served by the decoded-block cache.", nil, nil)
	dMisses      = prometheus.NewDesc("lmfs_cache_misses_total", "Block reads that had to decode the block.", nil, nil)
	dCacheBytes  = prometheus.NewDesc("lmfs_cache_bytes", "Bytes held by the decoded-block cache.", nil, nil)
	dReadAhead   = prometheus.NewDesc("lmfs_readahead_blocks_total", "Blocks decoded ahead of sequential readers.", nil, nil)
	dDirty       = prometheus.NewDesc("lmfs_dirty_bytes", "Written data held in memory, not yet stored.", nil, nil)
	dDecodeErrs  = prometheus.NewDesc("lmfs_decode_errors_total", "Blocks that failed their checks on a read (EIO).", nil, nil)
	dWriteErrs   = prometheus.NewDesc("lmfs_write_errors_total", "Flushes of dirty blocks that failed (coding or storing).", nil, nil)
	dRecompress  = prometheus.NewDesc("lmfs_recompress_blocks_total", "Blocks handled by background recompression, by result (recoded, kept, lost, failed).", []string{"result"}, nil)
)

// collector turns the filesystem's counters and the store's statistics into
// metrics at each scrape.
type collector struct {
	st  *blockstore.Store
	fs  *lfs.FS
	reg *coder.Registry
	// maxAge is how long a scrape reuses the store statistics.
	maxAge time.Duration

	mu      sync.Mutex
	stats   blockstore.Stats
	statsAt time.Time
	statErr error
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dLogical, dCodecData, dCodecStored, dCodecBlocks, dWaiting, dWaitingB, dDisk, dStatsAge,
		dCodedBlocks, dCodedRaw, dCodedStored, dCodingSecs, dQueued, dRunning, dHits, dMisses, dCacheBytes, dReadAhead,
		dDirty, dDecodeErrs, dWriteErrs, dRecompress} {
		ch <- d
	}
}

// storeStats returns the store statistics, computed at most every
// c.maxAge.
func (c *collector) storeStats() (blockstore.Stats, time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.statsAt.IsZero() || time.Since(c.statsAt) > c.maxAge {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c.stats, c.statErr = c.st.Stats(ctx)
		cancel()
		c.statsAt = time.Now()
	}
	return c.stats, time.Since(c.statsAt), c.statErr
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	name := func(id byte) string { return c.reg.NameOf(coder.ID(id)) }
	if st, age, err := c.storeStats(); err != nil {
		ch <- prometheus.NewInvalidMetric(dLogical, fmt.Errorf("store statistics: %w", err))
	} else {
		gauge(dLogical, float64(st.LogicalBytes))
		for id, n := range st.Blocks {
			gauge(dCodecBlocks, float64(n), name(id))
			gauge(dCodecStored, float64(st.CodecBytes[id]), name(id))
			gauge(dCodecData, float64(st.CodecData[id]), name(id))
			gauge(dWaiting, float64(st.Waiting[id]), name(id))
			gauge(dWaitingB, float64(st.WaitingBytes[id]), name(id))
		}
		gauge(dDisk, float64(st.DiskBytes))
		gauge(dStatsAge, age.Seconds())
	}
	m := c.fs.Metrics()
	for dir, byCodec := range m.Coded {
		for id, x := range byCodec {
			counter(dCodedBlocks, float64(x.Blocks), name(id), dir.String())
			counter(dCodedRaw, float64(x.RawBytes), name(id), dir.String())
			counter(dCodedStored, float64(x.Stored), name(id), dir.String())
			counter(dCodingSecs, x.Time.Seconds(), name(id), dir.String())
		}
	}
	for p := sched.Priority(0); p < sched.NumPriorities; p++ {
		gauge(dQueued, float64(m.Queued[p]), p.String())
		gauge(dRunning, float64(m.Running[p]), p.String())
	}
	counter(dHits, float64(m.CacheHits))
	counter(dMisses, float64(m.CacheMisses))
	gauge(dCacheBytes, float64(m.CacheBytes))
	counter(dReadAhead, float64(m.ReadAheadBlocks))
	gauge(dDirty, float64(m.DirtyBytes))
	counter(dDecodeErrs, float64(m.DecodeErrors))
	counter(dWriteErrs, float64(m.WriteErrors))
	r := m.Recompress
	for _, x := range []struct {
		result string
		n      uint64
	}{{"recoded", r.Recoded}, {"kept", r.Kept}, {"lost", r.Lost}, {"failed", r.Failed}} {
		counter(dRecompress, float64(x.n), x.result)
	}
}
