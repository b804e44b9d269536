package tasks

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvfoot/kvfoot/internal/outfile"
)

// DumpOptions selects the training documents that Dump writes: Count documents for
// every (task, length), in the order length, index, task (so that a length curriculum
// reads one length after the other, with the tasks interleaved).
type DumpOptions struct {
	Tasks   []string
	Lengths []int
	Count   int
	Seed    uint64
	// Jitter, in [0, 1), shortens each document to a length drawn from L·(1−Jitter) to L
	// (JitteredLength). Documents of exactly L tokens that all end with their answer teach a
	// model where a document ends: one trained on them stopped answering at those positions,
	// and an evaluation prompt of L tokens starts its answer exactly there.
	Jitter   float64
	Workers  int       // 0: GOMAXPROCS
	Progress io.Writer // progress lines; nil for none
}

// JitteredLength is the length of training document index of (task, length, seed) under
// DumpOptions.Jitter: drawn uniformly from ⌈length·(1−jitter)⌉ to length by the instance's
// own seed, so that it does not depend on the order of generation; length when jitter is 0.
func JitteredLength(task string, length, index int, seed uint64, jitter float64) int {
	if jitter <= 0 {
		return length
	}
	lo := ShortestJittered(length, jitter)
	return lo + int(mix64(InstanceSeed(Train, task, length, index, seed))%uint64(length-lo+1))
}

// ShortestJittered is the shortest length JitteredLength can return.
func ShortestJittered(length int, jitter float64) int {
	return int(math.Ceil(float64(length) * (1 - jitter)))
}

// mix64 is splitmix64's finaliser: the low bits of an FNV hash are not uniform enough
// to take a remainder of.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// DocWriter receives documents in order. Close completes the output; Abort, after a
// failure, discards it.
type DocWriter interface {
	Write(d *Doc) error
	Close() error
	Abort()
}

// Dump generates the documents in parallel and hands them to w in a fixed order, so
// that the output does not depend on the number of workers. It closes w, or aborts it
// if anything fails.
func Dump(o DumpOptions, gen Options, w DocWriter) (err error) {
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	for _, t := range o.Tasks {
		if err := Check(t, true); err != nil {
			return err
		}
	}
	total := len(o.Tasks) * len(o.Lengths) * o.Count
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type result struct {
		j   int
		doc *Doc
		err error
	}
	var next atomic.Int64
	results := make(chan result, 2*workers)
	// At most window documents are generated ahead of the writer.
	window := make(chan struct{}, 4*workers)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case window <- struct{}{}:
				case <-done:
					return
				}
				j := int(next.Add(1) - 1)
				if j >= total {
					return
				}
				nt, nl := len(o.Tasks), len(o.Lengths)
				task, index, length := o.Tasks[j%nt], (j/nt)%o.Count, o.Lengths[j/(nt*o.Count)%nl]
				d, err := Document(task, JitteredLength(task, length, index, o.Seed, o.Jitter), index, o.Seed, gen)
				select {
				case results <- result{j, d, err}:
				case <-done:
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	defer close(done)

	pending := map[int]*Doc{}
	written, tokens := 0, 0
	start, last := time.Now(), time.Now()
	for r := range results {
		if r.err != nil {
			return r.err
		}
		pending[r.j] = r.doc
		for d := pending[written]; d != nil; d = pending[written] {
			if err := w.Write(d); err != nil {
				return err
			}
			delete(pending, written)
			written++
			tokens += len(d.IDs)
			<-window
		}
		if o.Progress != nil && (time.Since(last) > 2*time.Second || written == total) {
			last = time.Now()
			el := time.Since(start).Seconds()
			fmt.Fprintf(o.Progress, "dump: %d/%d documents, %.1fM tokens, %.0f tokens/s, %s elapsed\n",
				written, total, float64(tokens)/1e6, float64(tokens)/el, time.Since(start).Round(time.Second))
		}
	}
	if written != total {
		return fmt.Errorf("dump: wrote %d of %d documents", written, total)
	}
	if err := w.Close(); err != nil {
		w = nopAbort{}
		return err
	}
	return nil
}

// JSONLWriter writes one JSON object per document: task, category, length, seed,
// text, ids, answer_spans. The file appears at its path when Close completes it.
type JSONLWriter struct {
	f   *outfile.File
	buf *bufio.Writer
	enc *json.Encoder
}

// NewJSONLWriter starts writing path; an existing file is replaced only with force.
func NewJSONLWriter(path string, force bool) (*JSONLWriter, error) {
	f, err := outfile.Create(path, force)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	b := bufio.NewWriterSize(f, 1<<20)
	return &JSONLWriter{f: f, buf: b, enc: json.NewEncoder(b)}, nil
}

type docJSON struct {
	Task     string   `json:"task"`
	Category string   `json:"category"`
	Length   int      `json:"length"`
	Seed     uint64   `json:"seed"`
	Text     string   `json:"text"`
	IDs      []int    `json:"ids"`
	Spans    [][2]int `json:"answer_spans"`
}

func (w *JSONLWriter) Write(d *Doc) error {
	spans := d.Spans
	if spans == nil {
		spans = [][2]int{}
	}
	if err := w.enc.Encode(docJSON{d.Task, d.Category, d.Length, d.Seed, d.Text, d.IDs, spans}); err != nil {
		return fmt.Errorf("output %s: %w", w.f.Path(), err)
	}
	return nil
}

func (w *JSONLWriter) Close() error {
	if err := w.buf.Flush(); err != nil {
		w.f.Abort()
		return fmt.Errorf("output %s: %w", w.f.Path(), err)
	}
	return w.f.Commit()
}

func (w *JSONLWriter) Abort() { w.f.Abort() }

// BinWriter writes the compact format: BASE.bin holds the token ids of all documents
// concatenated, as uint16 little-endian; BASE.mask one byte per token, 1 for answer
// tokens and 0 otherwise; BASE.docs the token offset where each document starts, as
// int64 little-endian (document i ends where i+1 starts, the last at the end of .bin).
type BinWriter struct {
	files [3]*outfile.File
	bufs  [3]*bufio.Writer
	off   int64
	mask  []byte
}

// BinBase strips a .jsonl, .bin, .mask or .docs extension from path.
func BinBase(path string) string {
	for _, ext := range []string{".jsonl", ".bin", ".mask", ".docs"} {
		if strings.HasSuffix(path, ext) {
			return strings.TrimSuffix(path, ext)
		}
	}
	return path
}

// NewBinWriter starts writing the three files; existing ones are replaced only with
// force. They appear at their paths when Close completes them.
func NewBinWriter(base string, force bool) (*BinWriter, error) {
	w := &BinWriter{}
	for i, ext := range []string{".bin", ".mask", ".docs"} {
		f, err := outfile.Create(base+ext, force)
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("output: %w", err)
		}
		w.files[i], w.bufs[i] = f, bufio.NewWriterSize(f, 1<<20)
	}
	return w, nil
}

func (w *BinWriter) Write(d *Doc) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(w.off))
	w.bufs[2].Write(b[:])
	w.mask = append(w.mask[:0], make([]byte, len(d.IDs))...)
	for _, s := range d.Spans {
		for i := s[0]; i < s[1]; i++ {
			w.mask[i] = 1
		}
	}
	for _, id := range d.IDs {
		if id < 0 || id > 0xffff {
			return fmt.Errorf("output %s: token id %d does not fit the uint16 format", w.files[0].Path(), id)
		}
		binary.LittleEndian.PutUint16(b[:2], uint16(id))
		w.bufs[0].Write(b[:2])
	}
	if _, err := w.bufs[1].Write(w.mask); err != nil {
		return fmt.Errorf("output %s: %w", w.files[1].Path(), err)
	}
	w.off += int64(len(d.IDs))
	return nil
}

func (w *BinWriter) Close() error {
	for i, b := range w.bufs {
		if err := b.Flush(); err != nil {
			w.Abort()
			return fmt.Errorf("output %s: %w", w.files[i].Path(), err)
		}
	}
	for i, f := range w.files {
		if err := f.Commit(); err != nil {
			for _, g := range w.files[i+1:] {
				g.Abort()
			}
			return fmt.Errorf("output: %w", err)
		}
	}
	return nil
}

// Abort discards the files not yet completed.
func (w *BinWriter) Abort() {
	for _, f := range w.files {
		if f != nil {
			f.Abort()
		}
	}
}

type nopAbort struct{ DocWriter }

func (nopAbort) Abort() {}
