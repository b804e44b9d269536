// Package rows edits slices that hold fixed-width rows, as the KV caches keep their
// entries (one row an entry) and their entries' positions and places.
package rows

// Drop removes rows lo..hi-1 of x (rows of width elements) and keeps the others in
// order. It moves whichever side of the run is shorter: a streaming head drops the
// oldest entry of its window a step, just past its sink, so the few sink rows move up
// and x then starts later in its array, instead of the whole window moving down. The
// array's front is reclaimed when append next reallocates it.
func Drop[T any](x []T, lo, hi, width int) []T {
	n := len(x) / width
	if lo < 0 || lo > hi || hi > n {
		panic("rows: Drop out of range")
	}
	d := hi - lo
	if lo <= n-hi {
		copy(x[d*width:hi*width], x[:lo*width])
		return x[d*width:]
	}
	copy(x[lo*width:], x[hi*width:])
	return x[:(n-d)*width]
}
