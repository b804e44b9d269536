package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/model"
)

func TestHardConcrete(t *testing.T) {
	// method-spec 2.2: P(z=0) = P(z=1) = 0.168 at log α = 0; 0.99978 at −10; 9.2e−6 at +10.
	for _, c := range []struct{ la, p0 float64 }{{0, 0.168}, {-10, 0.99978}, {10, 9.2e-6}, {4, 0.0037}} {
		if got := probZero(c.la); math.Abs(got-c.p0) > 0.01*c.p0+1e-6 {
			t.Errorf("P(z ≤ 0 | log α = %v) = %.6g, want %.6g", c.la, got, c.p0)
		}
	}
	// P(z=1) at log α = 4 is 0.917: the share of u whose sample clamps at 1.
	ones, n := 0, 100000
	for i := range n {
		u := (float64(i) + 0.5) / float64(n)
		z, dz := hardConcrete(4, u)
		if z == 1 {
			ones++
			if dz != 0 {
				t.Fatalf("clamped sample with gradient %v", dz)
			}
		}
	}
	if p := float64(ones) / float64(n); math.Abs(p-0.917) > 0.001 {
		t.Errorf("P(z = 1 | log α = 4) = %.4f, want 0.917", p)
	}
	// the gradient against a finite difference, inside the unclamped range
	z0, dz := hardConcrete(0.3, 0.4)
	z1, _ := hardConcrete(0.3+1e-6, 0.4)
	if math.Abs((z1-z0)/1e-6-dz) > 1e-5 {
		t.Errorf("dz/dlog α = %v, finite difference %v", dz, (z1-z0)/1e-6)
	}
}

func TestRoundMasks(t *testing.T) {
	// method-spec 2.7: int(N·(1 − x)) full heads of N = 256: 0.7 → 76, 0.3 → 179, 0.5 → 128, 0.9 → 25
	vals := make([][]float64, 32)
	for l := range vals {
		vals[l] = make([]float64, 8)
		for g := range vals[l] {
			vals[l][g] = float64((l*8+g)*37%256) / 256
		}
	}
	for x, want := range map[float64]int{0.7: 76, 0.3: 179, 0.5: 128, 0.9: 25, 0.2: 204} {
		m := RoundMasks(vals, x)
		ones := 0
		for l := range m {
			for g, v := range m[l] {
				if v == 1 {
					ones++
					// every full head has a value at least that of every streaming one
					if vals[l][g] < float64(256-want)/256 {
						t.Errorf("sparsity %v: head %d/%d (value %v) is full", x, l, g, vals[l][g])
					}
				}
			}
		}
		if ones != want {
			t.Errorf("sparsity %v: %d full heads, want %d", x, ones, want)
		}
	}
	// the deterministic mask zeroes round(Σ P(z ≤ 0)) heads per layer
	la := [][]float64{{-10, -10, 10, 10, 0.5}}
	d := DeterministicMasks(la)
	if d[0][0] != 0 || d[0][1] != 0 || d[0][2] != sigmoid(10*1.2) || d[0][4] != sigmoid(0.6) {
		t.Errorf("deterministic masks %v", d)
	}
}

// tinyRun is a random model and documents for the trainer tests.
func tinyRun(t *testing.T) (*model.Model, []Doc) {
	cfg := model.Config{Arch: "LlamaForCausalLM", Hidden: 32, Intermediate: 48, Layers: 2, Heads: 4, KVHeads: 2,
		HeadDim: 8, Vocab: 50, NormEps: 1e-5, MaxPositions: 256, Rope: model.Rope{Theta: 10000, Type: "default", Factor: 1}}
	m := model.NewRandom(cfg, 5)
	var docs []Doc
	for d := range 5 {
		ids := make([]int, 80)
		for i := range ids {
			ids[i] = (i*i + 3*d*i + d) % 50
		}
		docs = append(docs, Doc{IDs: ids, Spans: [][2]int{{60, 64}, {70, 72}}})
	}
	return m, docs
}

func newTinyNet(t *testing.T, m *model.Model) *Net {
	n, err := New(m, Options{MaxLen: 64, Sink: 2, Window: 8})
	if err != nil {
		t.Fatal(err)
	}
	// larger weights, so that streaming and full attention differ
	n.Params.Each(func(_ string, v []float32) {
		for i := range v {
			v[i] *= 5
		}
	})
	return n
}

func readAll(t *testing.T, dir string, names ...string) []byte {
	var b []byte
	for _, nm := range names {
		x, err := os.ReadFile(filepath.Join(dir, nm))
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, x...)
	}
	return b
}

// TestResumeBitForBit: a run stopped after 3 of 7 steps and resumed ends with the
// same checkpoint and masks, bit for bit, as a run that was never stopped.
func TestResumeBitForBit(t *testing.T) {
	m, docs := tinyRun(t)
	for _, method := range []string{"prulong", "duo"} {
		t.Run(method, func(t *testing.T) {
			train := func(dir string, stopAt int) Result {
				rc := RunConfig{Out: dir, Steps: 7, SeqLen: 64, Batch: 2, Seed: 9, Sink: 2, Window: 8, CheckpointEvery: 2, StopAt: stopAt}
				var res Result
				var err error
				if method == "prulong" {
					res, err = PruLong(newTinyNet(t, m), &PruLongConfig{RunConfig: rc, TargetSparsity: 0.5}, docs)
				} else {
					res, err = Duo(newTinyNet(t, m), &DuoConfig{RunConfig: rc, LR: 0.02, Reg: 1}, docs)
				}
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			a, b := t.TempDir(), t.TempDir()
			if r := train(a, 0); !r.Finished || r.Step != 7 {
				t.Fatalf("uninterrupted run: %+v", r)
			}
			if r := train(b, 3); r.Finished || r.Step != 3 {
				t.Fatalf("stopped run: %+v", r)
			}
			if r := train(b, 0); !r.Finished || r.Step != 7 {
				t.Fatalf("resumed run: %+v", r)
			}
			files := []string{checkpointName, "masks_sp0.5.tsv"}
			if method == "prulong" {
				files = append(files, "log_alpha.tsv", "masks_soft.tsv")
			} else {
				files = append(files, "full_attention_heads.tsv")
			}
			if !bytes.Equal(readAll(t, a, files...), readAll(t, b, files...)) {
				t.Fatalf("resumed run differs from the uninterrupted one in %v", files)
			}
			soft := "masks_soft.tsv"
			if method == "duo" {
				soft = "full_attention_heads.tsv"
			}
			// the masks moved away from their initial values
			if strings.Count(string(readAll(t, a, soft)), "1.000000") == 4 {
				t.Errorf("%s: every head still at 1 after training", soft)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	m, docs := tinyRun(t)
	n := newTinyNet(t, m)
	rc := func(dir string) RunConfig {
		return RunConfig{Out: dir, Steps: 2, SeqLen: 64, Batch: 1, Seed: 1, Sink: 2, Window: 8}
	}
	cases := []struct {
		name, want string
		run        func() error
	}{
		{"target sparsity 1", "outside [0, 1)", func() error {
			_, err := PruLong(n, &PruLongConfig{RunConfig: rc(t.TempDir()), TargetSparsity: 1}, docs)
			return err
		}},
		{"documents too short", "lower --seq-len", func() error {
			short := []Doc{{IDs: make([]int, 10)}}
			_, err := PruLong(n, &PruLongConfig{RunConfig: rc(t.TempDir()), TargetSparsity: 0.5}, short)
			return err
		}},
		{"no documents", "no documents", func() error {
			_, err := Duo(n, &DuoConfig{RunConfig: rc(t.TempDir()), LR: 0.02}, nil)
			return err
		}},
		{"sequence longer than the context", "longer than the model's context", func() error {
			c := rc(t.TempDir())
			c.SeqLen = 1000
			_, err := PruLong(n, &PruLongConfig{RunConfig: c, TargetSparsity: 0.5}, docs)
			return err
		}},
		{"unwritable output", "output folder", func() error {
			f := filepath.Join(t.TempDir(), "file")
			os.WriteFile(f, nil, 0o644)
			_, err := PruLong(n, &PruLongConfig{RunConfig: rc(filepath.Join(f, "sub")), TargetSparsity: 0.5}, docs)
			return err
		}},
		{"checkpoint of another model", "another model", func() error {
			dir := t.TempDir()
			c := rc(dir)
			c.StopAt = 1
			if _, err := PruLong(n, &PruLongConfig{RunConfig: c, TargetSparsity: 0.5}, docs); err != nil {
				return err
			}
			other := newTinyNet(t, model.NewRandom(m.Config, 77))
			_, err := PruLong(other, &PruLongConfig{RunConfig: rc(dir), TargetSparsity: 0.5}, docs)
			return err
		}},
		{"checkpoint with other settings", "target_sparsity", func() error {
			dir := t.TempDir()
			c := rc(dir)
			c.StopAt = 1
			if _, err := PruLong(n, &PruLongConfig{RunConfig: c, TargetSparsity: 0.5}, docs); err != nil {
				return err
			}
			_, err := PruLong(n, &PruLongConfig{RunConfig: rc(dir), TargetSparsity: 0.7}, docs)
			return err
		}},
		{"non-finite loss", "the last good checkpoint", func() error {
			bad := newTinyNet(t, m)
			bad.Params.Norm[0] = float32(math.Inf(1))
			_, err := PruLong(bad, &PruLongConfig{RunConfig: rc(t.TempDir()), TargetSparsity: 0.5}, docs)
			return err
		}},
	}
	for _, c := range cases {
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// A run writes only into a folder that holds none of its files, or that a run of
// the same method wrote (which it resumes); anything else needs Force.
func TestRunKeepsForeignFiles(t *testing.T) {
	m, docs := tinyRun(t)
	mine := []byte("the user's own file\n")
	prulong := func(dir string, force bool, stopAt int) error {
		rc := RunConfig{Out: dir, Force: force, Steps: 5, SeqLen: 64, Batch: 1, Seed: 3, Sink: 2, Window: 8, CheckpointEvery: 2, StopAt: stopAt}
		_, err := PruLong(newTinyNet(t, m), &PruLongConfig{RunConfig: rc, TargetSparsity: 0.5}, docs)
		return err
	}
	for _, name := range []string{"masks_sp0.5.tsv", "log.jsonl", checkpointName, "masks_soft.tsv"} {
		dir := t.TempDir()
		p := filepath.Join(dir, name)
		os.WriteFile(p, mine, 0o644)
		if err := prulong(dir, false, 0); err == nil || !strings.Contains(err.Error(), name+" exists") || !strings.Contains(err.Error(), "--force") {
			t.Errorf("%s in the folder: error %v, want a refusal naming it and --force", name, err)
		}
		if b, _ := os.ReadFile(p); !bytes.Equal(b, mine) {
			t.Errorf("%s was changed by a refused run", name)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("a refused run left %d files, want only the user's", len(ents))
		}
		if err := prulong(dir, true, 0); err != nil {
			t.Errorf("%s with force: %v", name, err)
		}
		if b, _ := os.ReadFile(p); bytes.Equal(b, mine) {
			t.Errorf("%s not replaced with force", name)
		}
	}

	// duo refuses a prulong folder: the rounded masks there are not its own
	dir := t.TempDir()
	if err := prulong(dir, false, 0); err != nil {
		t.Fatal(err)
	}
	rc := RunConfig{Out: dir, Steps: 2, SeqLen: 64, Batch: 1, Seed: 1, Sink: 2, Window: 8}
	if _, err := Duo(newTinyNet(t, m), &DuoConfig{RunConfig: rc, LR: 0.02}, docs); err == nil || !strings.Contains(err.Error(), "kvfoot duo run") {
		t.Errorf("duo in a prulong folder: %v", err)
	}

	// a resumed run logs every step once, even when the stopped run logged steps
	// past its last checkpoint
	dir = t.TempDir()
	if err := prulong(dir, false, 3); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "log.jsonl")
	f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"step":4,"loss":1}` + "\n" + `{"step":5,"lo`)
	f.Close()
	if err := prulong(dir, false, 0); err != nil {
		t.Fatal(err)
	}
	var steps []int
	for line := range strings.Lines(string(readAll(t, dir, "log.jsonl"))) {
		var l struct{ Step int }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		steps = append(steps, l.Step)
	}
	if fmt.Sprint(steps) != "[1 2 3 4 5]" {
		t.Errorf("steps logged %v, want [1 2 3 4 5]", steps)
	}
}

// A run refused before it starts (bad data, bad settings) leaves no output folder.
func TestRefusedRunLeavesNoFolder(t *testing.T) {
	m, _ := tinyRun(t)
	out := filepath.Join(t.TempDir(), "out")
	rc := RunConfig{Out: out, Steps: 2, SeqLen: 64, Batch: 1, Seed: 1, Sink: 2, Window: 8}
	if _, err := PruLong(newTinyNet(t, m), &PruLongConfig{RunConfig: rc, TargetSparsity: 0.5}, []Doc{{IDs: make([]int, 10)}}); err == nil {
		t.Fatal("documents shorter than --seq-len accepted")
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused run left its output folder %s", out)
	}
}
