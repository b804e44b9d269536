package tasks

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/kvfoot/kvfoot/internal/goroot"
)

// CorpusTask is the plain-text pseudo-task: haystack text of the given length with no
// questions, for the language-modelling part of a training mixture.
const CorpusTask = "corpus"

// Corpus is the text that haystacks are cut from: a sorted list of files, read on
// demand and kept in memory once read.
type Corpus struct {
	Root  string
	files []string
	ends  []int64 // cumulative sizes: file i covers bytes [ends[i-1], ends[i])
	mu    sync.Mutex
	text  map[int][]byte
}

// DefaultCorpus is the Go standard library's sources: *.go under GOROOT/src, without
// testdata directories.
func DefaultCorpus() (*Corpus, error) {
	root := goroot.Dir()
	if root == "" {
		return nil, errors.New("corpus: cannot locate the Go installation (GOROOT); pass --corpus DIR")
	}
	return loadCorpus(filepath.Join(root, "src"), true)
}

// LoadCorpus collects every text file under dir (hidden entries skipped; a file is
// text if its first 8 KiB are valid UTF-8 without NUL bytes).
func LoadCorpus(dir string) (*Corpus, error) { return loadCorpus(dir, false) }

func loadCorpus(dir string, goOnly bool) (*Corpus, error) {
	c := &Corpus{Root: dir, text: map[int][]byte{}}
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(name, ".") || (goOnly && name == "testdata")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(name, ".") {
			return nil
		}
		if goOnly && !strings.HasSuffix(name, ".go") {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() == 0 {
			return err
		}
		if !goOnly && !isText(path) {
			return nil
		}
		total += info.Size()
		c.files = append(c.files, path)
		c.ends = append(c.ends, total)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("corpus %s: %w", dir, err)
	}
	if len(c.files) == 0 {
		what := "text files"
		if goOnly {
			what = "*.go files"
		}
		return nil, fmt.Errorf("corpus %s: no %s (empty corpus)", dir, what)
	}
	return c, nil
}

func isText(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 8192)
	n, _ := f.Read(buf)
	buf = buf[:n]
	if bytes.IndexByte(buf, 0) >= 0 {
		return false
	}
	// A read may end inside a multi-byte character; drop up to 3 trailing bytes.
	for i := 0; i < 3 && len(buf) > 0 && !utf8.Valid(buf); i++ {
		buf = buf[:len(buf)-1]
	}
	return utf8.Valid(buf)
}

// Files is the number of files in the corpus.
func (c *Corpus) Files() int { return len(c.files) }

// Size is the corpus size in bytes.
func (c *Corpus) Size() int64 { return c.ends[len(c.ends)-1] }

// File returns the text of file i (0 ≤ i < Files()), in the corpus's sorted order.
func (c *Corpus) File(i int) ([]byte, error) { return c.file(i) }

func (c *Corpus) file(i int) ([]byte, error) {
	c.mu.Lock()
	b, ok := c.text[i]
	c.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := os.ReadFile(c.files[i])
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	c.mu.Lock()
	c.text[i] = b
	c.mu.Unlock()
	return b, nil
}

// passage returns at least n bytes of corpus text (fewer only if the whole corpus is
// smaller) starting at a line start chosen by rng, with a byte position drawn
// uniformly so that larger files are drawn more often. It continues into the
// following files, wrapping around.
func (c *Corpus) passage(rng *rand.Rand, n int) (string, error) {
	p := rng.Int64N(c.Size())
	i := sort.Search(len(c.ends), func(i int) bool { return c.ends[i] > p })
	start := 0
	if i > 0 {
		start = int(p - c.ends[i-1])
	} else {
		start = int(p)
	}
	var out strings.Builder
	for k := 0; k < len(c.files) && out.Len() < n; k++ {
		b, err := c.file((i + k) % len(c.files))
		if err != nil {
			return "", err
		}
		if k == 0 {
			start = min(start, len(b))
			if j := bytes.IndexByte(b[start:], '\n'); j >= 0 {
				b = b[start+j+1:]
			} else {
				b = nil
			}
		}
		if rest := n - out.Len(); len(b) > rest {
			// Stop at the end of a line past n bytes: whole lines read better.
			if j := bytes.IndexByte(b[rest:], '\n'); j >= 0 {
				b = b[:rest+j+1]
			}
		}
		out.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			out.WriteByte('\n')
		}
	}
	return out.String(), nil
}

// stream is a run of corpus tokens that fillers are cut from.
type stream struct {
	ids []int
}

// corpusTokens returns at least n tokens of corpus text for the given variant; the
// start depends only on (instance seed, variant), so that re-rendering a layout with a
// different filler length reuses the same text.
func (g *gen) corpusTokens(n, variant int) ([]int, error) {
	if g.streams == nil {
		g.streams = map[int]*stream{}
	}
	s := g.streams[variant]
	if s != nil && len(s.ids) >= n {
		return s.ids, nil
	}
	if g.opts.Corpus == nil {
		return nil, errors.New("no corpus")
	}
	bytesWanted := 6*n + 1024
	for {
		rng := rand.New(rand.NewPCG(g.seed, uint64(variant)+1))
		text, err := g.opts.Corpus.passage(rng, bytesWanted)
		if err != nil {
			return nil, err
		}
		ids := g.opts.Tokenizer.Encode(text)
		if len(ids) >= n || int64(len(text)) >= g.opts.Corpus.Size() {
			s = &stream{ids: ids}
			g.streams[variant] = s
			if len(ids) < n {
				return nil, fmt.Errorf("corpus %s holds only %d tokens, %d needed", g.opts.Corpus.Root, len(ids), n)
			}
			return ids, nil
		}
		bytesWanted *= 2
	}
}

// filler returns the text of the first n corpus tokens of the variant's stream.
func (g *gen) filler(n, variant int) (string, error) {
	if n <= 0 {
		return "", nil
	}
	ids, err := g.corpusTokens(n, variant)
	if err != nil {
		return "", err
	}
	// A cut may split a multi-byte character; drop the partial bytes (the fitter
	// re-counts whatever text results).
	return strings.ToValidUTF8(g.opts.Tokenizer.Decode(ids[:n]), ""), nil
}

// corpusChunk is the corpus pseudo-task: corpus text of exactly length tokens.
func (g *gen) corpusChunk() (string, []int, error) {
	text, _, err := g.fit(&layout{haystack: true}, 0, true)
	if err != nil {
		return "", nil, err
	}
	return text, g.opts.Tokenizer.Encode(text), nil
}

// Fingerprint identifies the corpus by the names (relative to Root) and sizes of its
// files, without reading them: "N files, B bytes, names and sizes sha256 H". Results
// record it with the SHA-256 of each prompt, which catches a change of content that
// keeps every size.
func (c *Corpus) Fingerprint() string {
	h := sha256.New()
	var prev int64
	for i, f := range c.files {
		rel, err := filepath.Rel(c.Root, f)
		if err != nil {
			rel = f
		}
		fmt.Fprintf(h, "%s\x00%d\n", filepath.ToSlash(rel), c.ends[i]-prev)
		prev = c.ends[i]
	}
	return fmt.Sprintf("%d files, %d bytes, names and sizes sha256 %x", len(c.files), c.Size(), h.Sum(nil)[:8])
}
