package kv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// headmask is DuoAttention / PruLong: a masks file gives every KV head a value
// (1 = full/retrieval head, 0 = streaming head; soft values allowed); streaming heads
// keep sink + window entries (as the streaming policy), the other heads use the spec's
// token selector (full by default). As in the paper's harness, the first pre-fill
// chunk is full attention for every head, since nothing has been evicted yet.
//
// Spec: headmask:masks=FILE,sparsity=H,sink=S,window=W (sink 128, window 1024).
// The masks file is a TSV with one row per layer and one column per KV head.
// With sparsity=H, the ceil(H·(N−1)) heads with the lowest values become streaming
// (N = layers × KV heads), which is the number DuoAttention's sparsify_attention_heads
// makes streaming through numpy's linear quantile (docs/METHODS.md §3.2); ties are broken
// deterministically instead of by noise: among equal values the head earlier in
// layer-major order becomes streaming first. Without sparsity, a head is streaming
// iff its value ≤ 0.5 (DuoAttention's inference rule: full iff > 0.5). A model's own
// local layers (Shape.Window) never become streaming and are not counted in N: their
// heads already see no more than their window.
type headmask struct {
	stream    [][]bool // [layer][KV head]
	streaming streaming
	inner     Policy
}

func init() {
	mustAdd(Registration{Name: "headmask", Kind: Role, Example: "headmask:masks=masks.tsv,sparsity=0.7,sink=128,window=1024",
		Doc: "DuoAttention / PruLong: heads with low mask values become streaming (sink + window)",
		Params: append([]Param{
			{Key: "masks", Type: File, Required: true, Doc: "TSV: one row per layer, one column per KV head"},
			{Key: "sparsity", Type: Float, Min: 0, Max: 1, Doc: "fraction of heads made streaming (default: those ≤ 0.5)"},
		}, sinkWindowParams...),
		newRole: newHeadmask})
}

func newHeadmask(a Args) (*headmask, error) {
	f, file, err := a.Open("masks")
	if err != nil {
		return nil, fmt.Errorf("headmask: %w", err)
	}
	defer f.Close()
	vals, err := readMasks(f, file, a.Shape().Layers, a.Shape().KVHeads)
	if err != nil {
		return nil, err
	}
	h := &headmask{streaming: newStreaming(a)}
	win := a.Shape().Window
	if a.Has("sparsity") {
		// over the global layers' heads: a local layer's have no full cache to give up
		var global [][]float64
		for l, row := range vals {
			if win == nil || win[l] == 0 {
				global = append(global, row)
			}
		}
		gs := StreamingHeads(global, a.Float("sparsity"))
		h.stream = make([][]bool, len(vals))
		for l, row := range vals {
			if win != nil && win[l] > 0 {
				h.stream[l] = make([]bool, len(row))
				continue
			}
			h.stream[l], gs = gs[0], gs[1:]
		}
	} else {
		h.stream = make([][]bool, len(vals))
		for l, row := range vals {
			h.stream[l] = make([]bool, len(row))
			for g, x := range row {
				h.stream[l][g] = x <= 0.5 && (win == nil || win[l] == 0)
			}
		}
	}
	return h, nil
}

// StreamingHeads are the heads a masks file's values make streaming at head sparsity
// sp: the ceil(sp·(N−1)) lowest-valued of the N heads (see headmask).
func StreamingHeads(vals [][]float64, sp float64) [][]bool {
	type hv struct {
		l, g int
		v    float64
	}
	var all []hv
	for l, row := range vals {
		for g, v := range row {
			all = append(all, hv{l, g, v})
		}
	}
	n := len(all)
	k := int(math.Ceil(sp * float64(n-1)))
	if sp >= 1 {
		k = n
	}
	slices.SortStableFunc(all, func(a, b hv) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	out := make([][]bool, len(vals))
	for l := range out {
		out[l] = make([]bool, len(vals[l]))
	}
	for _, h := range all[:k] {
		out[h.l][h.g] = true
	}
	return out
}

// ReadMasks reads a masks TSV of layers rows and kvHeads columns (blank lines
// skipped); layers or kvHeads 0 accepts any count (the same in every row). Every value
// must be a finite number in [0, 1]: the paper's loader clips values outside that
// range (docs/METHODS.md §3.1), which would hide a file of log-α values or of another
// model; an error names the file, line and column.
func ReadMasks(file string, layers, kvHeads int) ([][]float64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("headmask: %w", err)
	}
	defer f.Close()
	return readMasks(f, file, layers, kvHeads)
}

func readMasks(r io.Reader, file string, layers, kvHeads int) ([][]float64, error) {
	var rows [][]float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if layers > 0 && len(rows) == layers {
			return nil, fmt.Errorf("headmask: %s:%d: more than %d rows, want one per layer", file, line, layers)
		}
		if kvHeads == 0 {
			kvHeads = len(fields)
		}
		if len(fields) != kvHeads {
			return nil, fmt.Errorf("headmask: %s:%d: %d columns, want one per KV head (%d)", file, line, len(fields), kvHeads)
		}
		row := make([]float64, len(fields))
		for i, s := range fields {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return nil, fmt.Errorf("headmask: %s:%d: column %d: %q is not a number", file, line, i+1, s)
			}
			if !(x >= 0 && x <= 1) { // NaN, ±Inf and out-of-range values fail here
				return nil, fmt.Errorf("headmask: %s:%d: column %d: %s is not in [0, 1] (1: full head, 0: streaming head)", file, line, i+1, s)
			}
			row[i] = x
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("headmask: %s:%d: %w", file, line+1, err)
	}
	if layers > 0 && len(rows) != layers || len(rows) == 0 {
		return nil, fmt.Errorf("headmask: %s: %d rows, want one per layer (%d)", file, len(rows), layers)
	}
	return rows, nil
}

func (h *headmask) Scores(f *Forward) ScoreRequest {
	if h.stream[f.Layer][f.KVHead] {
		return ScoreRequest{}
	}
	return h.inner.Scores(f)
}

func (h *headmask) Keep(f *Forward) []int {
	if h.stream[f.Layer][f.KVHead] {
		return h.streaming.Keep(f)
	}
	return h.inner.Keep(f)
}

func (h *headmask) dropRun(f *Forward) (lo, hi int, ok bool) {
	if h.stream[f.Layer][f.KVHead] {
		return h.streaming.dropRun(f)
	}
	return 0, 0, false
}

func (h *headmask) keepsConcurrently() bool {
	c, ok := h.inner.(concurrentKeeper)
	return ok && c.keepsConcurrently()
}

func (h *headmask) expand() bool {
	e, ok := h.inner.(expander)
	return ok && e.expand()
}

func (h *headmask) patchLen() int {
	if p, ok := h.inner.(patcher); ok {
		return p.patchLen()
	}
	return 0
}

// dropFront forwards a window's eviction to the inner policy (which holds no state for
// streaming heads, so dropping there drops nothing).
func (h *headmask) dropFront(layer, head, n int) {
	if d, ok := h.inner.(frontDropper); ok {
		d.dropFront(layer, head, n)
	}
}
