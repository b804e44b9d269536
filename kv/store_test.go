package kv

import "testing"

// After a pre-fill's chunk, the f32 store takes the next decode steps' rows without
// moving (a move copies every row into fresh memory), and keeps every row it was given.
func TestF32StoreRoomAfterChunk(t *testing.T) {
	const d, chunk, steps = 4, 512, 200
	s := &f32Store{d: d}
	row := func(i int) []float32 { return []float32{float32(i), float32(-i), float32(2 * i), 1} }
	k, v := make([]float32, chunk*d), make([]float32, chunk*d)
	for i := range chunk {
		copy(k[i*d:], row(i))
		copy(v[i*d:], row(-i))
	}
	s.appendRows(k, v, chunk, d)
	base := &s.k[:1][0]
	for i := chunk; i < chunk+steps; i++ {
		s.appendRows(row(i), row(-i), 1, d)
		if &s.k[:1][0] != base {
			t.Fatalf("the store moved at row %d of a %d-row chunk and %d single rows", i, chunk, steps)
		}
	}
	gk, gv := s.view(nil, nil)
	for i := range chunk + steps {
		for c, want := range row(i) {
			if gk[i*d+c] != want || gv[i*d+c] != row(-i)[c] {
				t.Fatalf("row %d: keys %v, values %v", i, gk[i*d:(i+1)*d], gv[i*d:(i+1)*d])
			}
		}
	}
}
