package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/kvfoot/kvfoot/format/gguf"
	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/model"
)

func init() {
	register("models", "list the built-in model and the models in the local Ollama store and Hugging Face cache", runModels)
}

type modelEntry struct {
	Name         string   `json:"name"`
	Store        string   `json:"store"`
	Kind         string   `json:"kind"`
	Architecture string   `json:"architecture,omitempty"`
	Bytes        int64    `json:"bytes"`
	WeightTypes  []string `json:"weight_types,omitempty"` // by bytes, largest first
	Path         string   `json:"path"`
	Error        string   `json:"error,omitempty"`
}

func runModels(args []string) error {
	fs := newFlags("models")
	format := fs.String("format", "text", "output: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	return listModels(os.Stdout, *format)
}

func listModels(out io.Writer, format string) error {
	var entries []modelEntry
	sources := modeldir.List()
	// The built-in model (where a command without --model finds it) comes first.
	if dir, err := modeldir.Find(""); err == nil {
		s := modeldir.Source{Name: filepath.Base(dir), Store: "built-in", Path: dir, Kind: modeldir.Folder}
		if g := model.FolderGGUF(dir); g != "" {
			s.Path, s.Kind = g, modeldir.GGUF
		}
		sources = append([]modeldir.Source{s}, sources...)
	}
	for _, s := range sources {
		e := modelEntry{Name: s.Name, Store: s.Store, Kind: s.Kind.String(), Path: s.Path}
		if err := describeModel(&e, s); err != nil {
			e.Error = err.Error()
		}
		entries = append(entries, e)
	}
	if format == "json" {
		return json.NewEncoder(out).Encode(entries)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintf(out, "no models in %s or %s\n", modeldir.OllamaDir(), modeldir.HFHubDir())
		return err
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTORE\tARCHITECTURE\tSIZE\tWEIGHTS\tPATH")
	for _, e := range entries {
		arch := e.Architecture
		if e.Error != "" {
			arch = "unreadable: " + e.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.1f MB\t%s\t%s\n", e.Name, e.Store, arch, float64(e.Bytes)/1e6, strings.Join(e.WeightTypes, ","), e.Path)
	}
	return w.Flush()
}

// describeModel reads a model's architecture, size and weight types from its
// header alone (GGUF metadata and tensor infos, or config.json and the safetensors
// headers), without loading weights.
func describeModel(e *modelEntry, s modeldir.Source) error {
	byType := map[string]int64{}
	if s.Kind == modeldir.GGUF {
		f, err := gguf.Open(s.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		if e.Architecture, err = f.String("general.architecture"); err != nil {
			return err
		}
		if st, err := os.Stat(s.Path); err == nil {
			e.Bytes = st.Size()
		}
		for _, t := range f.Tensors {
			byType[t.Type.String()] += int64(t.Size)
		}
	} else {
		cfg, err := model.LoadConfig(s.Path)
		if err != nil {
			return err
		}
		e.Architecture = cfg.Arch
		ckpt, err := safetensors.OpenCheckpoint(s.Path)
		if err != nil {
			return err
		}
		defer ckpt.Close()
		for _, f := range ckpt.Files {
			if st, err := os.Stat(f.Path); err == nil {
				e.Bytes += st.Size()
			}
			for _, n := range f.Names() {
				t, _ := f.Tensor(n)
				byType[string(t.Dtype)] += int64(len(t.Data))
			}
		}
	}
	for t := range byType {
		e.WeightTypes = append(e.WeightTypes, t)
	}
	sort.Slice(e.WeightTypes, func(i, j int) bool {
		a, b := e.WeightTypes[i], e.WeightTypes[j]
		return byType[a] > byType[b] || byType[a] == byType[b] && a < b
	})
	return nil
}
