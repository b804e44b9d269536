package train

import (
	"fmt"
	"hash/fnv"
	"math"

	"github.com/kvfoot/kvfoot/model"
)

// Network is what the mask trainers (PruLong, Duo) need of a model: a forward pass with
// gates, a loss, and the gradient of the loss with respect to the gates. *Net is the CPU's;
// package gpu has a GPU twin (gate gradients only: weight training needs a *Net).
type Network interface {
	// ModelConfig is the model's configuration.
	ModelConfig() *model.Config
	// Local says whether layer l attends through a sliding window (its gates are ignored).
	Local(l int) bool
	// Fingerprint identifies the model's shape and weights, for checkpoints: the same
	// model gives the same fingerprint on every device (ModelFingerprint).
	Fingerprint() string
	// Forward runs the model over ids with gates (nil: full attention), as Net.Forward.
	Forward(ids []int, gates []float32) error
	// CrossEntropy and HiddenMSE are the losses of the last Forward, as Net's.
	CrossEntropy(targets []int, scale float32) (float64, int, error)
	HiddenMSE(target []float32, rows []int, scale float32) (float64, error)
	// Hidden is the final norm's output of the last Forward [n, hidden].
	Hidden() []float32
	// Backward adds the gradient of the last loss into GateGrads.
	Backward() error
	// GateGrads is dLoss/dz per (layer, KV head), layer-major, accumulated by Backward;
	// the caller clears it.
	GateGrads() []float64
}

// ModelConfig is the model's configuration (Network).
func (n *Net) ModelConfig() *model.Config { return &n.Config }

// Local says whether layer l is a sliding-window layer (Network).
func (n *Net) Local(l int) bool { return n.local(l) > 0 }

// GateGrads is n.GateGrad (Network).
func (n *Net) GateGrads() []float64 { return n.GateGrad }

// Fingerprint identifies the model the Net was made from (Network).
func (n *Net) Fingerprint() string {
	p := n.Params
	return fingerprintOf(&n.Config, p.Embed[:min(fingerprintValues, len(p.Embed))], p.Norm,
		p.Layers[0].Q.W[:min(fingerprintValues, len(p.Layers[0].Q.W))])
}

// fingerprintValues is how many leading values of the embedding and of layer 0's Q the
// fingerprint hashes.
const fingerprintValues = 4096

// ModelFingerprint is the fingerprint a Net made from m has, computed from m without
// widening every weight (for Networks that keep their weights elsewhere).
func ModelFingerprint(m *model.Model) string {
	lead := func(w *model.Linear) []float32 {
		mat := &w.W
		n := min(fingerprintValues, mat.Rows*mat.Cols)
		rows := (n + mat.Cols - 1) / mat.Cols
		out := make([]float32, rows*mat.Cols)
		for i := range rows {
			mat.Row(out[i*mat.Cols:(i+1)*mat.Cols], i)
		}
		return out[:n]
	}
	return fingerprintOf(&m.Config, lead(&model.Linear{W: m.Embed}), m.Norm, lead(&m.Layers[0].Q))
}

// fingerprintOf hashes the model's shape and some of its weights.
func fingerprintOf(c *model.Config, embed, norm, q []float32) string {
	h := fnv.New64a()
	for _, v := range [][]float32{embed, norm, q} {
		for _, x := range v {
			b := math.Float32bits(x)
			h.Write([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24)})
		}
	}
	return fmt.Sprintf("%s layers=%d hidden=%d heads=%d kv_heads=%d head_dim=%d vocab=%d weights=%016x",
		c.Arch, c.Layers, c.Hidden, c.Heads, c.KVHeads, c.HeadDim, c.Vocab, h.Sum64())
}
