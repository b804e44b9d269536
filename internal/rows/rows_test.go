package rows

import (
	"slices"
	"testing"
)

// Every run of every slice of up to 6 rows of width 1 and 2, against building the result.
func TestDropEqualsKeepingTheRest(t *testing.T) {
	for _, width := range []int{1, 2} {
		for n := range 7 {
			for lo := 0; lo <= n; lo++ {
				for hi := lo; hi <= n; hi++ {
					x := make([]int, n*width)
					for i := range x {
						x[i] = i
					}
					want := append(slices.Clone(x[:lo*width]), x[hi*width:]...)
					if got := Drop(x, lo, hi, width); !slices.Equal(got, want) {
						t.Fatalf("width %d, %d rows, drop %d..%d: %v, want %v", width, n, lo, hi-1, got, want)
					}
				}
			}
		}
	}
}

// A window that drops its oldest row past a sink of 2 a step, appending one: the rows
// stay right and only the sink moves.
func TestDropRingKeepsOrder(t *testing.T) {
	const sink, window = 2, 5
	var x, want []int
	for step := range 100 {
		x, want = append(x, step), append(want, step)
		if len(x) > sink+window {
			x = Drop(x, sink, sink+1, 1)
			want = slices.Delete(want, sink, sink+1)
		}
		if !slices.Equal(x, want) {
			t.Fatalf("step %d: %v, want %v", step, x, want)
		}
	}
}

func TestDropPanicsOutOfRange(t *testing.T) {
	for _, r := range [][2]int{{-1, 0}, {2, 1}, {0, 4}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("drop %v of 3 rows did not panic", r)
				}
			}()
			Drop([]int{1, 2, 3}, r[0], r[1], 1)
		}()
	}
}
