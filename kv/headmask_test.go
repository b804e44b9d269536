package kv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A masks file holds finite values in [0, 1], one row per layer and one column per
// KV head; anything else is refused with the file, line and column.
func TestReadMasksRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ text, want string }{
		{"1\t0\n0\t1.5\n", ":2: column 2: 1.5 is not in [0, 1]"},
		{"1\t-0.1\n0\t1\n", ":1: column 2: -0.1 is not in [0, 1]"},
		{"1\t0\n\nNaN\t1\n", ":3: column 1: NaN is not in [0, 1]"},
		{"Inf\t0\n0\t1\n", ":1: column 1: Inf is not in [0, 1]"},
		{"1e400\t0\n0\t1\n", ":1: column 1: 1e400 is not in [0, 1]"},
		{"1\tx\n0\t1\n", `:1: column 2: "x" is not a number`},
		{"1\t0\t1\n0\t1\n", ":1: 3 columns, want one per KV head (2)"},
		{"1\t0\n0\t1\n1\t1\n", ":3: more than 2 rows"},
		{"1\t0\n", ": 1 rows, want one per layer (2)"},
		{"1\t" + strings.Repeat("0", 17<<20) + "\n", ":1: bufio.Scanner: token too long"},
	} {
		f := filepath.Join(dir, "m.tsv")
		os.WriteFile(f, []byte(tc.text), 0o644)
		if _, err := ReadMasks(f, 2, 2); err == nil || !strings.Contains(err.Error(), f+tc.want) {
			t.Errorf("%.40q: error %v, want %q", tc.text, err, f+tc.want)
		}
	}
	f := filepath.Join(dir, "ok.tsv")
	os.WriteFile(f, []byte("1.0 0.25\n\n0e0\t1e-3\n\n"), 0o644)
	vals, err := ReadMasks(f, 2, 2)
	if err != nil || vals[0][0] != 1 || vals[0][1] != 0.25 || vals[1][0] != 0 || vals[1][1] != 0.001 {
		t.Errorf("readMasks = %v, %v", vals, err)
	}
}
