package gpu

import (
	"bufio"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
	"github.com/kvfoot/kvfoot/train"
)

// The refusals come before the device is touched, so they are checked without a GPU.
func TestTrainSupports(t *testing.T) {
	good := testConfig()
	opts := train.Options{MaxLen: 300, Sink: 4, Window: 32}
	if err := TrainSupports(&good, opts); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(*model.Config, *train.Options)
		want string
	}{
		{func(_ *model.Config, o *train.Options) { o.WeightGrads = true }, "CPU only"},
		{func(c *model.Config, _ *train.Options) { c.QKNorm = true }, "q/k norms"},
		{func(c *model.Config, _ *train.Options) { c.Gemma = true }, "Gemma"},
		{func(c *model.Config, _ *train.Options) { c.Window = []int{0, 64, 0} }, "sliding windows"},
		{func(c *model.Config, _ *train.Options) { c.HeadDim = 96 }, "head dimension 96"},
		{func(_ *model.Config, o *train.Options) { o.MaxLen = 5000 }, "longer than the model's context"},
		{func(_ *model.Config, o *train.Options) { o.Window = 0 }, "window ≥ 1"},
		{func(_ *model.Config, o *train.Options) { o.MaxLen = 1 }, "at least 2 tokens"},
	} {
		cfg, o := good, opts
		c.edit(&cfg, &o)
		if err := TrainSupports(&cfg, o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error naming %q", err, c.want)
		}
	}
}

// TrainBytes against a hand count for 1 layer, hidden 8, intermediate 16, 2 query heads
// and 1 KV head of 4 dimensions, vocabulary 16, 10 tokens.
func TestTrainBytes(t *testing.T) {
	c := model.Config{Hidden: 8, Intermediate: 16, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4, Vocab: 16}
	w, a := TrainBytes(&c, 10)
	// matrices q 8·8, k 8·4, v 8·4, o 8·8, gate, up, down 3·8·16: 576 values, twice (as
	// stored and transposed), + 2 norms of 8 = 1168; embedding, head and the head's
	// transpose 3·128, final norm 8: 1560 bf16 values; 2 × 2 f32 frequencies, 10 positions
	if want := int64(1560*2 + 16 + 40); w != want {
		t.Errorf("weights %d bytes, want %d", w, want)
	}
	// bf16 [10 tokens]: xs 2·8, hidden and its gradient 2·8, xb h xb2 3·8, q afull astream
	// att 4·8, k v 2·4, gate up act 3·16, dresBF dx tmp 3·8, datt dfull dstream dq
	// dqStream 5·8, dk dv dkStream dvStream 4·4, dact 16: 240 per token = 4800 bytes;
	// f32: lse 2·2·10, dres 80, z and dz 2: 122 values; logits 10·16 bf16; row losses,
	// targets and rows 3·10 and the MSE's target 80 in 4 bytes
	want := int64(4800+122*4+320+440) + cuda.AttentionBandWorkBytes(bandShape(&c, 10, 0, 0))
	if a != want {
		t.Errorf("activations %d bytes, want %d", a, want)
	}
}

// A Net that does not fit is refused up front, saying what it needs and what is free;
// Close frees every allocation.
func TestNetMemory(t *testing.T) {
	m := trainTestModel()
	opts := train.Options{MaxLen: 64, Sink: 4, Window: 32}
	w, a := TrainBytes(&m.Config, opts.MaxLen)
	e := newEmu()
	e.free = uint64(w+a) + Headroom - 1
	if _, err := newNet("emulated", e, m, opts); err == nil || !strings.Contains(err.Error(), "needs") || !strings.Contains(err.Error(), "free of") {
		t.Errorf("a Net larger than the free memory: %v", err)
	}
	e.free++
	n, err := newNet("emulated", e, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	var held int64
	for _, b := range e.mem {
		held += int64(len(b))
	}
	// what TrainBytes counts is what is allocated (the work buffer at least 8 bytes)
	if want := w + a + max(0, 8-cuda.AttentionBandWorkBytes(bandShape(&m.Config, opts.MaxLen, 0, 0))); held != want {
		t.Errorf("the Net holds %d bytes, TrainBytes says %d", held, want)
	}
	if err := n.Close(); err != nil || len(e.mem) != 0 {
		t.Errorf("Close: %v, %d allocations left", err, len(e.mem))
	}
	if err := n.Forward([]int{1, 2}, nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Forward after Close: %v", err)
	}
}

func TestTransposedBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	R, C := 70, 5 // more rows than a tile
	f := make([]float32, R*C)
	for i := range f {
		f[i] = float32(r.NormFloat64())
	}
	b := make([]uint16, R*C)
	for i, v := range f {
		b[i] = tensor.FloatToBF16(v)
	}
	for _, w := range []tensor.Mat{{Rows: R, Cols: C, F32: f}, {Rows: R, Cols: C, BF16: b}} {
		tr := transposedBF16(&w)
		for i := range R {
			for j := range C {
				if tr[j*R+i] != b[i*C+j] {
					t.Fatalf("%s: transpose [%d][%d] = %#x, want w[%d][%d] = %#x", w.TypeName(), j, i, tr[j*R+i], i, j, b[i*C+j])
				}
			}
		}
	}
}

// trainTestModel is a random Qwen2-like model (q/k/v biases) whose matrices are large
// enough (std 0.1) for full and streaming attention to differ.
func trainTestModel() *model.Model {
	cfg := model.Config{Arch: "LlamaForCausalLM", Hidden: 128, Intermediate: 256, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 64,
		Vocab: 512, NormEps: 1e-5, MaxPositions: 512, QKVBias: true, Rope: model.Rope{Theta: 10000, Type: "default", Factor: 1},
		BOS: -1, EOS: []int{-1}}
	m := model.NewRandom(cfg, 23)
	scale := func(v []float32) {
		for i := range v {
			v[i] *= 5
		}
	}
	scale(m.Embed.F32)
	scale(m.Head.F32)
	for i := range m.Layers {
		L := &m.Layers[i]
		for _, l := range []*model.Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			scale(l.W.F32)
		}
	}
	return m
}

// relL2 is ‖got − want‖ / ‖want‖.
func relL2[T float32 | float64](got, want []T) float64 {
	var d, w float64
	for i := range want {
		d += (float64(got[i]) - float64(want[i])) * (float64(got[i]) - float64(want[i]))
		w += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / w)
}

// The GPU network's losses, last hidden states and gate gradients agree with the CPU's
// train.Net (which agrees with autograd) on the same model, ids, gates and targets, to
// bf16 tolerance: both losses within 1%, the hidden states within 2% and the gate
// gradients, relative L2 over all gates, within 3% for the distillation loss and 6% for
// the cross-entropy, whose gate gradients on a random model are sums of terms that
// mostly cancel, through logits rounded to bf16 (the emulated kernels, at the GPU's
// precision, give 3.4% on this model and 2-3% on most others; 0.03% for the distillation).
func TestGPUNetMatchesCPU(t *testing.T) { checkAgainstCPU(t, openGPU(t).NewNet) }

// The same on the emulated kernels (train_emu_test.go): the Net's own part, without a GPU.
func TestEmuNetMatchesCPU(t *testing.T) {
	checkAgainstCPU(t, func(m *model.Model, o train.Options) (*Net, error) { return newNet("emulated", newEmu(), m, o) })
}

func checkAgainstCPU(t *testing.T, newNet func(*model.Model, train.Options) (*Net, error)) {
	m := trainTestModel()
	const T = 300
	opts := train.Options{MaxLen: T, Sink: 4, Window: 32}
	cpu, err := train.New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	gn, err := newNet(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer gn.Close()
	if gn.Fingerprint() != cpu.Fingerprint() {
		t.Errorf("fingerprints differ: GPU %q, CPU %q", gn.Fingerprint(), cpu.Fingerprint())
	}
	r := rand.New(rand.NewPCG(4, 5))
	ids := make([]int, T)
	for i := range ids {
		ids[i] = r.IntN(m.Config.Vocab)
	}
	targets := make([]int, T)
	for i := range targets {
		targets[i] = -1
		if i+1 < T && i%7 != 3 { // some positions unlabelled
			targets[i] = ids[i+1]
		}
	}
	gates := make([]float32, m.Config.Layers*m.Config.KVHeads)
	for i := range gates {
		gates[i] = r.Float32()
	}
	rows := []int{}
	for i := 200; i < T; i += 3 {
		rows = append(rows, i)
	}
	type result struct {
		loss   float64
		grads  []float64
		hidden []float32
	}
	step := func(n train.Network, mse bool) result {
		var teacher []float32
		if mse {
			if err := n.Forward(ids, nil); err != nil {
				t.Fatal(err)
			}
			teacher = append([]float32(nil), n.Hidden()...)
		}
		if err := n.Forward(ids, gates); err != nil {
			t.Fatal(err)
		}
		var loss float64
		if mse {
			loss, err = n.HiddenMSE(teacher, rows, 0.5)
		} else {
			loss, _, err = n.CrossEntropy(targets, 0.5)
		}
		if err != nil {
			t.Fatal(err)
		}
		clear(n.GateGrads())
		if err := n.Backward(); err != nil {
			t.Fatal(err)
		}
		return result{loss, append([]float64(nil), n.GateGrads()...), append([]float32(nil), n.Hidden()...)}
	}
	for _, c := range []struct {
		name           string
		mse            bool
		lossTol, grads float64
	}{{"cross-entropy", false, 1e-2, 6e-2}, {"hidden MSE", true, 1e-2, 3e-2}} {
		want, got := step(cpu, c.mse), step(gn, c.mse)
		t.Logf("%s: loss GPU %.6g CPU %.6g; gate gradients GPU %.4g CPU %.4g", c.name, got.loss, want.loss, got.grads, want.grads)
		if e := math.Abs(got.loss-want.loss) / math.Abs(want.loss); !(e <= c.lossTol) {
			t.Errorf("%s: loss %.6g, CPU %.6g (relative error %.3g > %g)", c.name, got.loss, want.loss, e, c.lossTol)
		}
		if e := relL2(got.grads, want.grads); !(e <= c.grads) {
			t.Errorf("%s: gate gradients %v, CPU %v (relative L2 %.3g > %g)", c.name, got.grads, want.grads, e, c.grads)
		}
		if e := relL2(got.hidden, want.hidden); !(e <= 2e-2) {
			t.Errorf("%s: hidden states' relative L2 to the CPU's %.3g > 0.02", c.name, e)
		}
	}

	// misuse is an error, not a wrong gradient
	if err := gn.Forward(ids, gates); err != nil {
		t.Fatal(err)
	}
	if err := gn.Backward(); err == nil || !strings.Contains(err.Error(), "needs a loss") {
		t.Errorf("Backward without a loss: %v", err)
	}
	if _, _, err := gn.CrossEntropy(targets, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := gn.HiddenMSE(make([]float32, T*m.Config.Hidden), rows, 1); err == nil || !strings.Contains(err.Error(), "one loss per Forward") {
		t.Errorf("a second loss: %v", err)
	}
	bad := append([]float32(nil), gates...)
	bad[1] = 1.5
	if err := gn.Forward(ids, bad); err == nil || !strings.Contains(err.Error(), "gate 1") {
		t.Errorf("a gate of 1.5: %v", err)
	}
}

// trainDocs are random documents with answer spans (DuoAttention trains on those).
func trainDocs(vocab, length int) []train.Doc {
	r := rand.New(rand.NewPCG(8, 9))
	var docs []train.Doc
	for range 5 {
		ids := make([]int, length)
		for i := range ids {
			ids[i] = r.IntN(vocab)
		}
		docs = append(docs, train.Doc{IDs: ids, Spans: [][2]int{{length - 40, length - 30}, {length - 10, length - 5}}})
	}
	return docs
}

// logLines reads a run's log.jsonl.
func logLines(t *testing.T, dir string) []map[string]float64 {
	f, err := os.Open(filepath.Join(dir, "log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l map[string]float64
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// A PruLong and a DuoAttention run on the GPU stopped after 3 of 6 steps and resumed (on a
// fresh network, as a second command would) log the same steps as a run never stopped,
// to 1e-3 (the kernels may sum in another order from run to run); PruLong's first step,
// whose masks come from the initial log α alone, has the CPU trainer's loss within 1%.
func TestGPUTrainResume(t *testing.T) { checkResume(t, openGPU(t).NewNet, 256) }

// The same on the emulated kernels, on shorter sequences (the emulation is slow).
func TestEmuTrainResume(t *testing.T) {
	checkResume(t, func(m *model.Model, o train.Options) (*Net, error) { return newNet("emulated", newEmu(), m, o) }, 80)
}

func checkResume(t *testing.T, newNet func(*model.Model, train.Options) (*Net, error), seqLen int) {
	m := trainTestModel()
	docs := trainDocs(m.Config.Vocab, seqLen+20)
	opts := train.Options{MaxLen: seqLen, Sink: 4, Window: 32}
	for _, method := range []string{"prulong", "duo"} {
		t.Run(method, func(t *testing.T) {
			dir := t.TempDir()
			runOnce := func(n train.Network, out string, stopAt int) train.Result {
				rc := train.RunConfig{Out: filepath.Join(dir, out), Steps: 6, SeqLen: seqLen, Batch: 2, Seed: 3, Sink: 4, Window: 32,
					CheckpointEvery: 2, StopAt: stopAt}
				var res train.Result
				var err error
				if method == "prulong" {
					res, err = train.PruLong(n, &train.PruLongConfig{RunConfig: rc, TargetSparsity: 0.5}, docs)
				} else {
					res, err = train.Duo(n, &train.DuoConfig{RunConfig: rc, LR: 0.02, Reg: 0.05}, docs)
				}
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			onGPU := func(out string, stopAt int) train.Result {
				n, err := newNet(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer n.Close()
				return runOnce(n, out, stopAt)
			}
			if res := onGPU("whole", 0); !res.Finished || res.Step != 6 {
				t.Fatalf("uninterrupted run: %+v", res)
			}
			if res := onGPU("resumed", 3); res.Finished || res.Step != 3 {
				t.Fatalf("stopped run: %+v", res)
			}
			if res := onGPU("resumed", 0); !res.Finished || res.Step != 6 {
				t.Fatalf("resumed run: %+v", res)
			}
			whole, resumed := logLines(t, filepath.Join(dir, "whole")), logLines(t, filepath.Join(dir, "resumed"))
			if len(whole) != 6 || len(resumed) != 6 {
				t.Fatalf("logs of %d and %d steps, want 6", len(whole), len(resumed))
			}
			for i := range whole {
				for _, k := range []string{"step", "loss", "sparsity", "target", "lambda1", "lambda2", "lr", "tokens"} {
					a, b := whole[i][k], resumed[i][k]
					if math.Abs(a-b) > 1e-3*max(1, math.Abs(a)) {
						t.Errorf("step %d: %s %v uninterrupted, %v resumed", i+1, k, a, b)
					}
				}
			}
			if method != "prulong" {
				return
			}
			cpu, err := train.New(m, opts)
			if err != nil {
				t.Fatal(err)
			}
			runOnce(cpu, "cpu", 1)
			want, got := logLines(t, filepath.Join(dir, "cpu"))[0]["loss"], whole[0]["loss"]
			if math.Abs(got-want) > 1e-2*math.Abs(want) {
				t.Errorf("first step's loss %.6g on the GPU, %.6g on the CPU", got, want)
			}
		})
	}
}

// On the built-in model (bf16 weights), ids with a repeated half so that attention far back
// matters, the cross-entropy and its gate gradients agree with the CPU's within 1% and 3%
// (relative L2 over its 32 gates; the emulated kernels give 0.6% at 160 tokens).
func TestGPUNetBuiltin(t *testing.T) { checkBuiltin(t, openGPU(t).NewNet, 1024) }

func TestEmuNetBuiltin(t *testing.T) {
	if testing.Short() {
		t.Skip("the emulated kernels take about 10 s")
	}
	checkBuiltin(t, func(m *model.Model, o train.Options) (*Net, error) { return newNet("emulated", newEmu(), m, o) }, 160)
}

func checkBuiltin(t *testing.T, newNet func(*model.Model, train.Options) (*Net, error), T int) {
	dir := filepath.Join("..", "models", "kvfoot-small") // go test runs in gpu/
	if _, err := os.Stat(dir); err != nil {
		dir = filepath.Join("models", "kvfoot-small") // a test binary run from the repository root
	}
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts := train.Options{MaxLen: T, Sink: 4, Window: 32}
	cpu, err := train.New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	gn, err := newNet(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer gn.Close()
	r := rand.New(rand.NewPCG(1, 5))
	ids := make([]int, T)
	for i := range ids {
		ids[i] = r.IntN(m.Config.Vocab)
	}
	copy(ids[T/2:], ids[:T/2])
	targets := make([]int, T)
	for i := range targets {
		targets[i] = -1
		if i+1 < T {
			targets[i] = ids[i+1]
		}
	}
	gates := make([]float32, m.Config.Layers*m.Config.KVHeads)
	for i := range gates {
		gates[i] = r.Float32()
	}
	var loss [2]float64
	var grads [2][]float64
	for k, n := range []train.Network{cpu, gn} {
		if err := n.Forward(ids, gates); err != nil {
			t.Fatal(err)
		}
		if loss[k], _, err = n.CrossEntropy(targets, 1); err != nil {
			t.Fatal(err)
		}
		clear(n.GateGrads())
		if err := n.Backward(); err != nil {
			t.Fatal(err)
		}
		grads[k] = append([]float64(nil), n.GateGrads()...)
	}
	t.Logf("loss GPU %.6g CPU %.6g; gate gradients' relative L2 %.3g", loss[1], loss[0], relL2(grads[1], grads[0]))
	if e := math.Abs(loss[1]-loss[0]) / loss[0]; !(e <= 1e-2) {
		t.Errorf("loss %.6g, CPU %.6g", loss[1], loss[0])
	}
	if e := relL2(grads[1], grads[0]); !(e <= 3e-2) {
		t.Errorf("gate gradients %.3g, CPU %.3g (relative L2 %.3g > 0.03)", grads[1], grads[0], e)
	}
}
