package train

import (
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/model"
)

// A Network that keeps its weights elsewhere fingerprints the model as a Net does, so a
// checkpoint of one resumes on the other; another model's fingerprint differs.
func TestModelFingerprintIsTheNets(t *testing.T) {
	m, _ := tinyRun(t)
	n, err := New(m, Options{MaxLen: 64, Sink: 2, Window: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ModelFingerprint(m), n.Fingerprint(); got != want {
		t.Errorf("ModelFingerprint %q, Net.Fingerprint %q", got, want)
	}
	if ModelFingerprint(model.NewRandom(m.Config, 6)) == n.Fingerprint() {
		t.Error("two models of other weights have the same fingerprint")
	}
}

// otherNetwork is a Network that is not the CPU's Net.
type otherNetwork struct{ Network }

// Weight training needs the CPU's Net: another Network is refused before anything runs,
// and trains masks as the Net does.
func TestPruLongTrainWeightsNeedsCPUNet(t *testing.T) {
	m, docs := tinyRun(t)
	dir := t.TempDir()
	rc := RunConfig{Out: dir + "/w", Steps: 2, SeqLen: 64, Batch: 1, Sink: 2, Window: 8}
	_, err := PruLong(otherNetwork{newTinyNet(t, m)}, &PruLongConfig{RunConfig: rc, TargetSparsity: 0.5, TrainWeights: true}, docs)
	if err == nil || !strings.Contains(err.Error(), "CPU only") {
		t.Fatalf("weight training on another Network: %v", err)
	}
	for _, wrap := range []bool{false, true} {
		var n Network = newTinyNet(t, m)
		rc.Out = dir + "/plain"
		if wrap {
			n, rc.Out = otherNetwork{n}, dir+"/wrapped"
		}
		if _, err := PruLong(n, &PruLongConfig{RunConfig: rc, TargetSparsity: 0.5}, docs); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := readAll(t, dir+"/plain", "log_alpha.tsv"), readAll(t, dir+"/wrapped", "log_alpha.tsv"); string(a) != string(b) {
		t.Errorf("masks through another Network differ:\n%s\n%s", a, b)
	}
}
