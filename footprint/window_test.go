package footprint

import (
	"math"
	"testing"
)

// Hand counts: 6 tokens, window 4 → queries see 1, 2, 3, 4, 4, 4 = 18 of causal(6) = 21;
// the last sees 4 of 6.
func TestNativeWindow(t *testing.T) {
	for _, tc := range []struct {
		total, window int
		fp, peak      float64
	}{{6, 4, 18.0 / 21, 4.0 / 6}, {6, 1, 6.0 / 21, 1.0 / 6}, {6, 6, 1, 1}, {6, 100, 1, 1}} {
		r := NativeWindow(tc.total, tc.window)
		if math.Abs(r.Footprint-tc.fp) > 1e-15 || math.Abs(r.Peak-tc.peak) > 1e-15 {
			t.Errorf("NativeWindow(%d, %d) = %+v, want footprint %v peak %v", tc.total, tc.window, r, tc.fp, tc.peak)
		}
	}
}

// A Gemma-3-like model (5 local layers of window 4 per global one) under full
// attention over 6 tokens: (5·18/21 + 1)/6, below 1; a method below the window's
// footprint keeps its own on the local layers.
func TestWithLocalLayers(t *testing.T) {
	win := []int{4, 4, 4, 4, 4, 0}
	full := Result{Footprint: 1, Peak: 1}
	got := WithLocalLayers(full, 6, win)
	if want := (5*18.0/21 + 1) / 6; math.Abs(got.Footprint-want) > 1e-15 || got.Footprint >= 1 {
		t.Errorf("footprint %v, want %v (< 1)", got.Footprint, want)
	}
	if want := (5*4.0/6 + 1) / 6; math.Abs(got.Peak-want) > 1e-15 {
		t.Errorf("peak %v, want %v", got.Peak, want)
	}
	small := Result{Footprint: 0.3, Peak: 0.5}
	if got := WithLocalLayers(small, 6, win); math.Abs(got.Footprint-0.3) > 1e-15 || math.Abs(got.Peak-0.5) > 1e-15 {
		t.Errorf("a method below the windows: %+v, want its own %+v", got, small)
	}
	if got := WithLocalLayers(small, 6, nil); got != small {
		t.Errorf("no local layers: %+v, want %+v", got, small)
	}
}
