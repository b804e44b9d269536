package footprint

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// The worked examples of docs/METHODS.md §1.9, computed by running the paper's
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

// paperStats is kv_footprint.py's streaming_mask_stats and global_mask_stats as the
// paper writes them: one loop iteration per chunk and per decoding step, every phase's
// peak kept. The closed forms are held to it.
func paperStats(p Params) (se float64, sp []float64, ge float64, gp []float64) {
	b := []int{}
	c := p.Chunk
	if c <= 0 {
		c = p.Prompt
	}
	for a := 0; a < p.Prompt; a += c {
		b = append(b, a)
	}
	b = append(b, p.Prompt)
	var local, sink int
	past := 0
	for i := 0; i+1 < len(b); i++ {
		a, e := b[i], b[i+1]
		local = a - max(0, a-p.Window)
		sink = a - local - max(0, a-local-p.Sink)
		se += causal(e-a) + float64((e-a)*(local+sink))
		sp = append(sp, float64(e-a+local+sink))
		n := e - a
		ge += causal(n) + float64(past*n)
		gp = append(gp, float64(past+n))
		past += min(int(math.RoundToEven((1-p.KVSparsity)*float64(n)))+p.KVWindow, n)
	}
	for a := p.Prompt; a < p.Prompt+p.Response; a++ {
		local = a - max(0, a-p.Window)
		sink = a - local - max(0, a-local-p.Sink)
		se += float64(1 + local + sink)
	}
	sp = append(sp, float64(1+local+sink))
	ge += causal(p.Response) + float64(past*p.Response)
	gp = append(gp, float64(past+p.Response))
	return se, sp, ge, gp
}

func paperAnalytic(p Params) Result {
	se, sp, ge, gp := paperStats(p)
	full := causal(p.Prompt + p.Response)
	h := p.HeadSparsity
	peak := math.Inf(-1)
	for i := range sp {
		peak = max(peak, h*sp[i]+(1-h)*gp[i])
	}
	return Result{Footprint: se/full*h + ge/full*(1-h), Peak: peak / float64(p.Prompt+p.Response)}
}

// Example A's intermediate sums (docs/METHODS.md §1.9 table) pin down the paper's two
// counters, and the closed forms give the same sums and the peaks of the last chunk of
// each run (the three whole chunks, the short last one) and of decoding.
func TestAnalyticExampleAEntries(t *testing.T) {
	p := Params{Prompt: 1000, Response: 100, Chunk: 256, Sink: 4, Window: 64, KVWindow: 64}
	se, sp, ge, gp := paperStats(p)
	if se != 183208 || ge != 605550 {
		t.Errorf("entries: streaming %v global %v, want 183208 605550", se, ge)
	}
	wantS, wantG := []float64{256, 324, 324, 300, 69}, []float64{256, 512, 768, 1000, 1100}
	for i := range wantS {
		if sp[i] != wantS[i] || gp[i] != wantG[i] {
			t.Errorf("phase %d peaks: %v %v, want %v %v", i, sp[i], gp[i], wantS[i], wantG[i])
		}
	}
	cse, csp := streamingStats(p)
	cge, cgp := globalStats(chunks(p.Prompt, p.Chunk), p.Response, p.KVSparsity, p.KVWindow)
	if cse != se || cge != ge || fmt.Sprint(csp) != "[324 300 69]" || fmt.Sprint(cgp) != "[768 1000 1100]" {
		t.Errorf("closed form: entries %v %v, peaks %v %v", cse, cge, csp, cgp)
	}
	p.KVSparsity = 0.5
	if _, _, ge, _ := paperStats(p); ge != 487454 {
		t.Errorf("example B entries %v, want 487454", ge)
	}
	if ge, _ := globalStats(chunks(p.Prompt, p.Chunk), p.Response, p.KVSparsity, p.KVWindow); ge != 487454 {
		t.Errorf("example B closed-form entries %v, want 487454", ge)
	}
}

// The closed forms equal the paper's loops exactly (every count is an integer below
// 2^53, so the order of the sums does not matter), over random geometries.
func TestAnalyticClosedFormIsThePaper(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		p := Params{Prompt: 1 + r.IntN(3000), Response: r.IntN(300), Chunk: r.IntN(400) - 20,
			Sink: r.IntN(200), Window: r.IntN(1500), HeadSparsity: float64(r.IntN(11)) / 10,
			KVSparsity: float64(r.IntN(21)) / 20, KVWindow: r.IntN(100)}
		if i%5 == 0 {
			p.Chunk = 1 + r.IntN(8) // many chunks
		}
		got, err := Analytic(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := paperAnalytic(p); got != want {
			t.Fatalf("%+v: closed form %+v, paper %+v", p, got, want)
		}
	}
}

// The largest sizes take the same few operations, allocate nothing in proportion to
// them, and give the paper's numbers (checked against its loops at one chunk per token
// and 2^20 decoding steps); sizes beyond 2^26 are refused.
func TestAnalyticHugeSizes(t *testing.T) {
	for _, p := range []Params{
		{Prompt: 1 << 25, Response: 1 << 25, Chunk: 1, Sink: 128, Window: 1024, HeadSparsity: 0.7, KVSparsity: 0.5, KVWindow: 64},
		{Prompt: MaxTokens - 1, Response: 1, Chunk: 3, KVSparsity: 0.9, KVWindow: 64},
		{Prompt: MaxTokens, Chunk: 0, Sink: MaxTokens, Window: MaxTokens, HeadSparsity: 1},
	} {
		var r Result
		var err error
		if allocs := testing.AllocsPerRun(3, func() { r, err = Analytic(p) }); allocs > 8 {
			t.Errorf("%+v: %v allocations", p, allocs)
		}
		if err != nil || !(r.Footprint > 0 && r.Footprint <= 1) || !(r.Peak > 0 && r.Peak <= 1) {
			t.Errorf("%+v: %+v, %v", p, r, err)
		}
		if l, err := Locret(p.Prompt, p.Response, p.Chunk, 0.5, 100, 2500); err != nil || !(l.Footprint > 0 && l.Footprint <= 1) || !(l.Peak > 0 && l.Peak <= 1) {
			t.Errorf("locret %+v: %+v, %v", p, l, err)
		}
	}
	for _, p := range []Params{
		{Prompt: 1 << 20, Response: 1 << 20, Chunk: 1, Sink: 128, Window: 1024, HeadSparsity: 0.7, KVSparsity: 0.5, KVWindow: 64},
		{Prompt: 1 << 22, Response: 1 << 22, Chunk: 4096, Sink: 4, Window: 64, HeadSparsity: 0.3, KVSparsity: 0.7, KVWindow: 64},
	} {
		if got, _ := Analytic(p); got != paperAnalytic(p) {
			t.Errorf("%+v: %+v, the paper's loops %+v", p, got, paperAnalytic(p))
		}
	}
	if r, _ := Analytic(Params{Prompt: MaxTokens / 2, Response: MaxTokens / 2, Chunk: 7}); r.Footprint != 1 || r.Peak != 1 {
		t.Errorf("full attention at 2^26: %+v", r)
	}
	for _, p := range []Params{
		{Prompt: MaxTokens + 1},
		{Prompt: MaxTokens, Response: 1},
		{Prompt: 10, Window: math.MaxInt},
		{Prompt: 10, Response: math.MaxInt},
		{Prompt: 10, Chunk: math.MaxInt},
		{Prompt: math.MaxInt, Response: math.MaxInt},
	} {
		if _, err := Analytic(p); err == nil || !strings.Contains(err.Error(), "2^26") {
			t.Errorf("%+v: error %v, want one naming 2^26", p, err)
		}
	}
	if _, err := Locret(10, 1, 0, 0.5, 5, math.MaxInt); err == nil {
		t.Error("locret: stabilizers beyond 2^26 accepted")
	}
}

// Round half to even: (1−0.5)·n for odd n lands exactly on .5 (kept 2 of 5, not 3).
func TestAnalyticRoundHalfEven(t *testing.T) {
	if k := kept(5, 0.5, 0); k != 2 {
		t.Errorf("kept %d of 5 at s = 0.5, want 2 (round(2.5) = 2)", k)
	}
	_, gp := globalStats(chunks(10, 5), 0, 0.5, 0)
	if gp[0] != 7 { // 2 kept from the first chunk + 5
		t.Errorf("second chunk peak %v, want 7", gp[0])
	}
}

func TestAnalyticErrors(t *testing.T) {
	for _, p := range []Params{{Prompt: 0}, {Prompt: 10, Response: -1}, {Prompt: 10, HeadSparsity: 1.5}, {Prompt: 10, KVSparsity: math.NaN()}} {
		if _, err := Analytic(p); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
}

// docs/METHODS.md §6.16: Llama-3.1-8B in bf16 takes 128 KiB per token; 128K tokens ≈ 16 GiB.
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
