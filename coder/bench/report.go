package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// FileReport holds one file's results.
type FileReport struct {
	Name    string
	Kind    string
	Results []Result
}

// Group is a total over several files: "all", "text-like" or "kind:NAME".
type Group struct {
	Name    string
	Files   int
	Results []Result
}

// Report is a whole bench run.
type Report struct {
	BlockSize int
	Workers   int
	Methods   []Method
	Files     []FileReport
	Totals    []Group
}

// Run measures every input with every method. Methods that code in batches
// (a GPU) are measured over the blocks of many files at once, as a store or
// `lmfs compress` would give them: a batch holding one small file's blocks
// would leave the GPU idle.
func Run(ctx context.Context, ins []Input, methods []Method, o Options, progress func(in Input)) (*Report, error) {
	rep := &Report{BlockSize: o.BlockSize, Workers: o.workers(), Methods: methods}
	if err := warm(ctx, ins, methods, o); err != nil {
		return nil, err
	}
	var each, batched []int // indices into methods
	for i, m := range methods {
		if m.EncodeBatch != nil && m.DecodeBatch != nil {
			batched = append(batched, i)
		} else {
			each = append(each, i)
		}
	}
	for k, in := range ins {
		if progress != nil {
			progress(in)
		}
		fr := FileReport{Name: in.Name, Kind: in.Kind, Results: make([]Result, len(methods))}
		for _, i := range batched {
			fr.Results[i].Method = methods[i].Name
		}
		if len(each) > 0 {
			o.FirstMethod = k % len(each)
			f, err := os.Open(in.Path)
			if err != nil {
				return nil, err
			}
			res, err := Measure(ctx, f, pick(methods, each), o)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", in.Name, err)
			}
			for j, i := range each {
				fr.Results[i] = res[j]
			}
		}
		rep.Files = append(rep.Files, fr)
	}
	for _, i := range batched {
		if err := measureAcross(ctx, ins, methods[i], i, o, rep.Files); err != nil {
			return nil, fmt.Errorf("%s: %w", methods[i].Name, err)
		}
	}
	rep.Totals = totals(rep.Files, len(methods))
	return rep, nil
}

func pick(methods []Method, idx []int) []Method {
	out := make([]Method, len(idx))
	for j, i := range idx {
		out[j] = methods[i]
	}
	return out
}

// batchBytes bounds the raw bytes of one cross-file batch.
const batchBytes = 256 << 20

// measureAcross measures the batch method m (index mi) on the blocks of all
// inputs, up to batchBytes (or o.ChunkBytes, if larger) per call, and adds
// each file's share to files[k].Results[mi]: its blocks' sizes exactly, the
// times of each call in proportion to the file's raw bytes in it.
func measureAcross(ctx context.Context, ins []Input, m Method, mi int, o Options, files []FileReport) error {
	limit := max(batchBytes, o.ChunkBytes)
	var blocks [][]byte
	var owner []int
	size := 0
	flush := func() error {
		if len(blocks) == 0 {
			return nil
		}
		r, enc, dec, err := measureBatchBlocks(ctx, m, blocks)
		if err != nil {
			return err
		}
		share := map[int]*Result{}
		for b, k := range owner {
			fr := share[k]
			if fr == nil {
				fr = &Result{Method: m.Name}
				share[k] = fr
			}
			fr.Blocks++
			if err := fr.tally(m, blocks[b:b+1], enc[b:b+1], dec[b:b+1]); err != nil {
				return fmt.Errorf("%s: %w", ins[k].Name, err)
			}
		}
		for k, fr := range share {
			f := float64(fr.RawBytes) / float64(max(r.RawBytes, 1))
			fr.EncWall = time.Duration(f * float64(r.EncWall))
			fr.DecWall = time.Duration(f * float64(r.DecWall))
			fr.EncCPU = time.Duration(f * float64(r.EncCPU))
			fr.DecCPU = time.Duration(f * float64(r.DecCPU))
			files[k].Results[mi].Add(*fr)
		}
		blocks, owner, size = nil, nil, 0
		return nil
	}
	for k, in := range ins {
		data, err := os.ReadFile(in.Path)
		if err != nil {
			return err
		}
		for off := 0; off < len(data); off += o.BlockSize {
			b := data[off:min(off+o.BlockSize, len(data))]
			blocks = append(blocks, b)
			owner = append(owner, k)
			size += len(b)
			if size >= limit {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// warm codes the first block of the first non-empty input with every method
// on every worker, untimed, so that no method pays for lazily built encoder
// state or cold caches in its measurement.
func warm(ctx context.Context, ins []Input, methods []Method, o Options) error {
	for _, in := range ins {
		f, err := os.Open(in.Path)
		if err != nil {
			return err
		}
		sample := make([]byte, o.BlockSize)
		n, _ := io.ReadFull(f, sample)
		f.Close()
		if n == 0 {
			continue
		}
		w := o.workers()
		blocks := make([][]byte, w)
		for i := range blocks {
			blocks[i] = sample[:n]
		}
		for _, m := range methods {
			if _, err := measureChunk(ctx, m, blocks, w); err != nil {
				return fmt.Errorf("%s: %s: %w", in.Name, m.Name, err)
			}
		}
		return nil
	}
	return nil
}

func totals(files []FileReport, nm int) []Group {
	add := func(g *Group, f FileReport) {
		if g.Results == nil {
			g.Results = make([]Result, nm)
			for i, r := range f.Results {
				g.Results[i].Method = r.Method
			}
		}
		g.Files++
		for i, r := range f.Results {
			g.Results[i].Add(r)
		}
	}
	kinds := map[string]*Group{}
	var textLike, all Group
	textLike.Name, all.Name = "text-like", "all"
	for _, f := range files {
		add(&all, f)
		if f.Kind == "" {
			continue
		}
		g := kinds[f.Kind]
		if g == nil {
			g = &Group{Name: "kind:" + f.Kind}
			kinds[f.Kind] = g
		}
		add(g, f)
		if slices.Contains(TextLike, f.Kind) {
			add(&textLike, f)
		}
	}
	var out []Group
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		out = append(out, *kinds[k])
	}
	if textLike.Files > 0 {
		out = append(out, textLike)
	}
	if all.Files > 0 {
		out = append(out, all)
	}
	return out
}

const tableHeader = "METHOD\tBYTES\tCOMPRESSED\tBITS/BYTE\tC MB/s/core\tD MB/s/core\tC MB/s wall\tD MB/s wall"

func row(r Result) string {
	return fmt.Sprintf("%s\t%d\t%d\t%.3f\t%.2f\t%.2f\t%.2f\t%.2f",
		r.Method, r.RawBytes, r.CompBytes, r.BitsPerByte(), r.EncMBps(), r.DecMBps(), r.EncWallMBps(), r.DecWallMBps())
}

// WriteTable writes the report as aligned text: one row per file and method,
// then the totals, then a bits-per-byte matrix of the totals and the notes.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "lmfs bench: block size %d bytes, each block coded independently, %d workers\n\n", rep.BlockSize, rep.Workers)
	fmt.Fprintln(tw, "FILE\tKIND\t"+tableHeader+"\t")
	for _, f := range rep.Files {
		kind := f.Kind
		if kind == "" {
			kind = "-"
		}
		for _, r := range f.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", f.Name, kind, row(r))
		}
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "TOTAL\tFILES\t"+tableHeader+"\t")
	for _, g := range rep.Totals {
		for _, r := range g.Results {
			fmt.Fprintf(tw, "%s\t%d\t%s\t\n", g.Name, g.Files, row(r))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := []string{"BITS/BYTE"}
	for _, m := range rep.Methods {
		hdr = append(hdr, m.Name)
	}
	fmt.Fprintln(tw, strings.Join(hdr, "\t")+"\t")
	for _, g := range rep.Totals {
		cells := []string{g.Name}
		for _, r := range g.Results {
			cells = append(cells, fmt.Sprintf("%.3f", r.BitsPerByte()))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nMB/s/core = raw MB / summed %s of the workers; wall = raw MB / elapsed time with %d workers. Every decoded block was compared with the input.\n", cpuClock, rep.Workers)
	for _, m := range rep.Methods {
		fmt.Fprintf(w, "%s: %s\n", m.Name, m.Note)
	}
	return nil
}

// JSONResult is one method's result in WriteJSON's output.
type JSONResult struct {
	Method         string         `json:"method"`
	RawBytes       int64          `json:"raw_bytes"`
	CompBytes      int64          `json:"compressed_bytes"`
	Blocks         int            `json:"blocks"`
	BitsPerByte    float64        `json:"bits_per_byte"`
	EncMBps        float64        `json:"compress_mb_s_per_core"`
	DecMBps        float64        `json:"decompress_mb_s_per_core"`
	EncWallMBps    float64        `json:"compress_mb_s_wall"`
	DecWallMBps    float64        `json:"decompress_mb_s_wall"`
	EncCPUSeconds  float64        `json:"compress_cpu_s"`
	DecCPUSeconds  float64        `json:"decompress_cpu_s"`
	EncWallSeconds float64        `json:"compress_wall_s"`
	DecWallSeconds float64        `json:"decompress_wall_s"`
	BlocksByCodec  map[string]int `json:"blocks_by_codec,omitempty"`
}

func toJSON(rs []Result) []JSONResult {
	out := make([]JSONResult, len(rs))
	for i, r := range rs {
		out[i] = JSONResult{
			Method: r.Method, RawBytes: r.RawBytes, CompBytes: r.CompBytes, Blocks: r.Blocks,
			BitsPerByte: r.BitsPerByte(), EncMBps: r.EncMBps(), DecMBps: r.DecMBps(),
			EncWallMBps: r.EncWallMBps(), DecWallMBps: r.DecWallMBps(),
			EncCPUSeconds: r.EncCPU.Seconds(), DecCPUSeconds: r.DecCPU.Seconds(),
			EncWallSeconds: r.EncWall.Seconds(), DecWallSeconds: r.DecWall.Seconds(),
			BlocksByCodec: r.CodecUse,
		}
	}
	return out
}

// JSONMethod names and explains a method in WriteJSON's output.
type JSONMethod struct {
	Name   string `json:"name"`
	Note   string `json:"note"`
	Device string `json:"device,omitempty"`
}

// JSONFile is one file's results in WriteJSON's output.
type JSONFile struct {
	Name    string       `json:"name"`
	Kind    string       `json:"kind,omitempty"`
	Results []JSONResult `json:"results"`
}

// JSONGroup is a total in WriteJSON's output.
type JSONGroup struct {
	Group   string       `json:"group"`
	Files   int          `json:"files"`
	Results []JSONResult `json:"results"`
}

// JSONReport is the document WriteJSON writes.
type JSONReport struct {
	BlockSize int          `json:"block_size"`
	Workers   int          `json:"workers"`
	CPUClock  string       `json:"cpu_clock"`
	Methods   []JSONMethod `json:"methods"`
	Files     []JSONFile   `json:"files"`
	Totals    []JSONGroup  `json:"totals"`
}

// WriteJSON writes the report as one indented JSON document (JSONReport).
func (rep *Report) WriteJSON(w io.Writer) error {
	j := JSONReport{BlockSize: rep.BlockSize, Workers: rep.Workers, CPUClock: cpuClock}
	for _, m := range rep.Methods {
		j.Methods = append(j.Methods, JSONMethod{m.Name, m.Note, m.Device})
	}
	for _, f := range rep.Files {
		j.Files = append(j.Files, JSONFile{f.Name, f.Kind, toJSON(f.Results)})
	}
	for _, g := range rep.Totals {
		j.Totals = append(j.Totals, JSONGroup{g.Name, g.Files, toJSON(g.Results)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(j)
}
