package bench

import (
	"bufio"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ManifestName is the file that gives the kind of each file in a directory:
// tab-separated, a header line naming the columns, with at least the columns
// name and kind (the benchmark corpus also has bytes, sha256, source, note).
const ManifestName = "MANIFEST.tsv"

// TextLike lists the kinds summed in the "text-like" total.
var TextLike = []string{"text", "code", "log", "json", "csv"}

// Input is one file to measure.
type Input struct {
	// Name is the path as given, or relative to the directory given.
	Name string
	// Path is where to read it.
	Path string
	// Kind comes from a MANIFEST.tsv in the directory given ("" if none).
	Kind string
	// Size is the file size when listed.
	Size int64
}

// ReadManifest reads a MANIFEST.tsv and returns kind by file name.
func ReadManifest(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return nil, fmt.Errorf("%s is empty: want a header line with the columns name and kind", path)
	}
	nameCol, kindCol := -1, -1
	for i, c := range strings.Split(sc.Text(), "\t") {
		switch strings.TrimSpace(c) {
		case "name":
			nameCol = i
		case "kind":
			kindCol = i
		}
	}
	if nameCol < 0 || kindCol < 0 {
		return nil, fmt.Errorf("%s: the header line lacks the column name or kind", path)
	}
	kinds := map[string]string{}
	for line := 2; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) <= max(nameCol, kindCol) {
			return nil, fmt.Errorf("%s line %d: %d columns, want at least %d", path, line, len(cols), max(nameCol, kindCol)+1)
		}
		kinds[cols[nameCol]] = cols[kindCol]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return kinds, nil
}

// Collect lists the files to measure: each file argument, and every regular
// file under each directory argument (sorted; hidden files skipped), with
// kinds from the directory's MANIFEST.tsv when there is one.
func Collect(args []string) ([]Input, error) {
	var ins []Input
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			ins = append(ins, Input{Name: arg, Path: arg, Size: fi.Size()})
			continue
		}
		var kinds map[string]string
		mp := filepath.Join(arg, ManifestName)
		if _, err := os.Stat(mp); err == nil {
			if kinds, err = ReadManifest(mp); err != nil {
				return nil, err
			}
		}
		seen := map[string]bool{}
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != arg && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || p == mp {
				return nil
			}
			rel, _ := filepath.Rel(arg, p)
			info, err := d.Info()
			if err != nil {
				return err
			}
			in := Input{Name: rel, Path: p, Size: info.Size()}
			if kinds != nil {
				in.Kind = kinds[filepath.ToSlash(rel)]
				seen[filepath.ToSlash(rel)] = true
			}
			ins = append(ins, in)
			return nil
		})
		if err != nil {
			return nil, err
		}
		var missing []string
		for n := range kinds {
			if !seen[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			slog.Warn("files listed in the manifest are missing", "manifest", mp, "files", missing)
		}
	}
	return ins, nil
}
