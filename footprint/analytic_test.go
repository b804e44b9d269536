package footprint

import (
	"math"
	"testing"
)

// The worked examples of method-spec 1.9, computed by running the paper's
// PL:eval/viz/kv_footprint.py (six decimals).
func TestAnalyticWorkedExamples(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          Params
		foot, peak float64
	}{
		{"A duo/prulong", Params{Prompt: 1000, Response: 100, Chunk: 256, Sink: 4, Window: 64, HeadSparsity: 0.7, KVWindow: 64}, 0.511784, 0.463636},
		{"B snapkv chunked", Params{Prompt: 1000, Response: 100, Chunk: 256, KVSparsity: 0.5, KVWindow: 64}, 0.804977, 0.778182},
		{"D chunk 32768", Params{Prompt: 100000, Response: 50, Chunk: 32768, Sink: 128, Window: 1024, HeadSparsity: 0.7, KVWindow: 64}, 0.536307, 0.532086},
		{"D one chunk", Params{Prompt: 100000, Response: 50, Chunk: 131072, Sink: 128, Window: 1024, HeadSparsity: 0.7, KVWindow: 64}, 0.999309, 0.999500},
		{"E sample 2", Params{Prompt: 2000, Response: 10, Chunk: 256, Sink: 4, Window: 64, HeadSparsity: 0.7, KVWindow: 64}, 0.428598, 0.394627},
		{"h=s=0.5", Params{Prompt: 1000, Response: 100, Chunk: 256, Sink: 4, Window: 64, HeadSparsity: 0.5, KVSparsity: 0.5, KVWindow: 64}, 0.553763, 0.503636},
		{"window covers prompt", Params{Prompt: 1000, Response: 0, Chunk: 256, Sink: 128, Window: 1024, HeadSparsity: 0.7, KVWindow: 64}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Analytic(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(r.Footprint-tc.foot) > 5e-7 || math.Abs(r.Peak-tc.peak) > 5e-7 {
				t.Errorf("got (%.6f, %.6f), want (%.6f, %.6f)", r.Footprint, r.Peak, tc.foot, tc.peak)
			}
		})
	}
}

// Example A's intermediate sums (method-spec 1.9 table) pin down the two counters.
func TestAnalyticExampleAEntries(t *testing.T) {
	p := Params{Prompt: 1000, Response: 100, Chunk: 256, Sink: 4, Window: 64, KVWindow: 64}
	se, sp := streamingStats(p)
	ge, gp := globalStats(p)
	if se != 183208 || ge != 605550 {
		t.Errorf("entries: streaming %v global %v, want 183208 605550", se, ge)
	}
	wantS, wantG := []float64{256, 324, 324, 300, 69}, []float64{256, 512, 768, 1000, 1100}
	for i := range wantS {
		if sp[i] != wantS[i] || gp[i] != wantG[i] {
			t.Errorf("phase %d peaks: %v %v, want %v %v", i, sp[i], gp[i], wantS[i], wantG[i])
		}
	}
	p.KVSparsity = 0.5
	if ge, _ := globalStats(p); ge != 487454 {
		t.Errorf("example B entries %v, want 487454", ge)
	}
}

func TestLocretExampleC(t *testing.T) {
	r, err := Locret(1000, 100, 256, 0.5, 100, 64)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Footprint-0.812904) > 5e-7 || math.Abs(r.Peak-906.0/1100) > 1e-15 {
		t.Errorf("got %+v, want (0.812904, 0.823636)", r)
	}
}

func TestMeanExampleE(t *testing.T) {
	a, _ := Analytic(Params{Prompt: 1000, Response: 100, Chunk: 256, Sink: 4, Window: 64, HeadSparsity: 0.7, KVWindow: 64})
	b, _ := Analytic(Params{Prompt: 2000, Response: 10, Chunk: 256, Sink: 4, Window: 64, HeadSparsity: 0.7, KVWindow: 64})
	m := Mean([]Result{a, b})
	if math.Abs(m.Footprint-0.470191) > 5e-7 || math.Abs(m.Peak-0.429132) > 5e-7 {
		t.Errorf("got %+v, want (0.470191, 0.429132)", m)
	}
}

// Round half to even: (1−0.5)·n for odd n lands exactly on .5 (kept 2 of 5, not 3).
func TestAnalyticRoundHalfEven(t *testing.T) {
	_, gp := globalStats(Params{Prompt: 10, Chunk: 5, KVSparsity: 0.5})
	if gp[1] != 7 { // 2 kept from the first chunk + 5
		t.Errorf("second chunk peak %v, want 7 (round(2.5) = 2)", gp[1])
	}
}

func TestAnalyticErrors(t *testing.T) {
	for _, p := range []Params{{Prompt: 0}, {Prompt: 10, Response: -1}, {Prompt: 10, HeadSparsity: 1.5}, {Prompt: 10, KVSparsity: math.NaN()}} {
		if _, err := Analytic(p); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
}

// method-spec 6.16: Llama-3.1-8B in bf16 takes 128 KiB per token; 128K tokens ≈ 16 GiB.
func TestBytesLlama8B(t *testing.T) {
	per, err := BytesPerToken(32, 8, 128, "bfloat16")
	if err != nil || per != 128<<10 {
		t.Fatalf("bytes per token %d (%v), want %d", per, err, 128<<10)
	}
	b := KVBytes(Result{Footprint: 1, Peak: 1}, 131072, per)
	if b.PeakGiB != 16 || b.Mean != float64(131073)/2*float64(per) {
		t.Errorf("%+v", b)
	}
	if _, err := BytesPerToken(1, 1, 1, "int3"); err == nil {
		t.Error("no error for dtype int3")
	}
}
