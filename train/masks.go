package train

import (
	"bufio"
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/kvfoot/kvfoot/model"
)

// The hard-concrete (L0) distribution of PruLong's masks (PL:prulong/training/l0.py).
const (
	hcLow, hcHigh = -0.1, 1.1 // stretch limits l, r
	hcBeta        = 2.0 / 3   // temperature
	hcEps         = 1e-8
	hcFactor      = 0.8 // the deterministic mask's sigmoid(log α / β · 0.8)
)

// hardConcrete draws z = clamp((r − l)·σ((ln u − ln(1 − u) + log α)/β) + l, 0, 1) for
// u ~ U(eps, 1 − eps) and returns z and dz/dlog α (0 where the clamp is active).
func hardConcrete(logAlpha, u float64) (z, dz float64) {
	u = min(max(u, hcEps), 1-hcEps)
	s := sigmoid((math.Log(u) - math.Log(1-u) + logAlpha) / hcBeta)
	raw := (hcHigh-hcLow)*s + hcLow
	if raw <= 0 {
		return 0, 0
	}
	if raw >= 1 {
		return 1, 0
	}
	return raw, (hcHigh - hcLow) * s * (1 - s) / hcBeta
}

// probZero is P(z ≤ 0) = σ(β·logit(−l/(r − l)) − log α), clamped to [eps, 1 − eps].
func probZero(logAlpha float64) float64 {
	p := -hcLow / (hcHigh - hcLow)
	return min(max(sigmoid(hcBeta*math.Log(p/(1-p))-logAlpha), hcEps), 1-hcEps)
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// DeterministicMasks is PruLong's eval-mode mask, one layer (row) at a time: the
// soft value σ(log α/β · 0.8) of every head, with the round(Σ P(z ≤ 0)) lowest of
// the row set to 0 (ties: the earlier head first).
func DeterministicMasks(logAlpha [][]float64) [][]float64 {
	out := make([][]float64, len(logAlpha))
	for l, row := range logAlpha {
		var expZeros float64
		soft := make([]float64, len(row))
		for g, a := range row {
			expZeros += probZero(a)
			soft[g] = sigmoid(a / hcBeta * hcFactor)
		}
		k := int(math.RoundToEven(expZeros))
		order := make([]int, len(row))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(soft[a], soft[b]) })
		for _, g := range order[:k] {
			soft[g] = 0
		}
		out[l] = soft
	}
	return out
}

// RoundMasks is PruLong's round_masks_for_sparsity: the int(N·(1 − x)) heads of
// highest value (N = all KV heads) become full (1), the others streaming (0); ties
// are broken by a uniform random number per head from a generator seeded with 42, as
// the paper's script does (with Go's generator, not torch's).
func RoundMasks(vals [][]float64, x float64) [][]float64 {
	type hv struct {
		l, g int
		v, r float64
	}
	rng := rand.New(rand.NewPCG(42, 0))
	var all []hv
	for l, row := range vals {
		for g, v := range row {
			all = append(all, hv{l, g, v, rng.Float64()})
		}
	}
	slices.SortStableFunc(all, func(a, b hv) int { return cmp.Compare(a.r, b.r) })
	slices.SortStableFunc(all, func(a, b hv) int { return cmp.Compare(b.v, a.v) })
	high := int(float64(len(all)) * (1 - x))
	out := make([][]float64, len(vals))
	for l := range out {
		out[l] = make([]float64, len(vals[l]))
	}
	for _, h := range all[:high] {
		out[h.l][h.g] = 1
	}
	return out
}

// MaskSparsities are the sparsities at which rounded masks are written.
var MaskSparsities = []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}

// WriteMaskFiles writes soft (layers × KV heads) to dir/soft, and the masks rounded
// at every MaskSparsities x to dir/masks_sp<x>.tsv, in the TSV the headmask policy
// reads (one row per layer, one tab-separated column per KV head). The heads of local
// layers (local[l]; nil: none) have no full cache to give up: they are 1 in every file
// and the sparsity counts the other heads only.
func WriteMaskFiles(dir, soft string, vals [][]float64, local []bool) error {
	vals = fixLocal(vals, local)
	if err := writeTSV(filepath.Join(dir, soft), vals, 6); err != nil {
		return err
	}
	for _, x := range MaskSparsities {
		if err := writeTSV(filepath.Join(dir, fmt.Sprintf("masks_sp%.1f.tsv", x)), roundGlobal(vals, x, local), 1); err != nil {
			return err
		}
	}
	return nil
}

// fixLocal returns vals with the rows of local layers set to 1.
func fixLocal(vals [][]float64, local []bool) [][]float64 {
	out := make([][]float64, len(vals))
	for l, row := range vals {
		out[l] = append([]float64(nil), row...)
		if l < len(local) && local[l] {
			for g := range out[l] {
				out[l][g] = 1
			}
		}
	}
	return out
}

// roundGlobal is RoundMasks over the global layers' heads, the local ones left at 1.
func roundGlobal(vals [][]float64, x float64, local []bool) [][]float64 {
	var global [][]float64
	for l, row := range vals {
		if l >= len(local) || !local[l] {
			global = append(global, row)
		}
	}
	r := RoundMasks(global, x)
	out := make([][]float64, len(vals))
	for l, row := range vals {
		if l < len(local) && local[l] {
			out[l] = row // already 1
			continue
		}
		out[l], r = r[0], r[1:]
	}
	return out
}

// localLayers is, per layer, whether it has a sliding window (nil when none has).
func localLayers(c *model.Config) []bool {
	if c.Window == nil {
		return nil
	}
	out := make([]bool, c.Layers)
	for l, w := range c.Window {
		out[l] = w > 0
	}
	return out
}

// writeTSV writes rows of values with prec decimals, atomically.
func writeTSV(path string, vals [][]float64, prec int) error {
	return writeAtomic(path, func(w *bufio.Writer) error {
		for _, row := range vals {
			for g, v := range row {
				if g > 0 {
					w.WriteByte('\t')
				}
				w.WriteString(strconv.FormatFloat(v, 'f', prec, 64))
			}
			w.WriteByte('\n')
		}
		return nil
	})
}

// writeAtomic writes path through a temporary file in the same folder, synced and
// renamed over path, so that a reader (or a killed run) never sees half a file.
func writeAtomic(path string, fill func(w *bufio.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	w := bufio.NewWriterSize(f, 1<<20)
	err = fill(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
