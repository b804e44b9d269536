package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Checkpoint is the weights of a Hugging Face model folder: model.safetensors, or
// the shards listed by model.safetensors.index.json.
type Checkpoint struct {
	Files []*File
	where map[string]*File
}

// OpenCheckpoint opens the weights in dir. A sharded checkpoint must have every
// tensor of its index in the shard the index names.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	single := filepath.Join(dir, "model.safetensors")
	index := filepath.Join(dir, "model.safetensors.index.json")
	c := &Checkpoint{where: map[string]*File{}}
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		c.Files = []*File{f}
		for _, n := range f.Names() {
			c.where[n] = f
		}
		return c, nil
	}
	raw, err := os.ReadFile(index)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no model.safetensors or model.safetensors.index.json", dir)
	}
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: empty or missing weight_map", index)
	}
	shards := map[string]*File{}
	names := make([]string, 0, len(idx.WeightMap))
	for n := range idx.WeightMap {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		shard := idx.WeightMap[n]
		if shard != filepath.Base(shard) {
			c.Close()
			return nil, fmt.Errorf("%s: tensor %q: shard %q must be a file name in the same folder", index, n, shard)
		}
		f, ok := shards[shard]
		if !ok {
			f, err = Open(filepath.Join(dir, shard))
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("%s: %w", index, err)
			}
			shards[shard] = f
			c.Files = append(c.Files, f)
		}
		if _, ok := f.Tensor(n); !ok {
			c.Close()
			return nil, fmt.Errorf("%s: tensor %q is not in shard %s", index, n, shard)
		}
		c.where[n] = f
	}
	return c, nil
}

// Tensor finds a tensor in whichever file holds it; the error names the folder's files.
func (c *Checkpoint) Tensor(name string) (Tensor, *File, error) {
	f, ok := c.where[name]
	if !ok {
		return Tensor{}, nil, fmt.Errorf("tensor %q not found in the checkpoint", name)
	}
	t, _ := f.Tensor(name)
	return t, f, nil
}

// Has reports whether the checkpoint holds name.
func (c *Checkpoint) Has(name string) bool { _, ok := c.where[name]; return ok }

// Close unmaps every file.
func (c *Checkpoint) Close() error {
	var first error
	for _, f := range c.Files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
