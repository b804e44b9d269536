// Package benchtext builds the fixed text that kvfoot's speed measurements share:
// about 1 MiB of English prose and Go code, taken from the Go installation that
// builds kvfoot, so that the same bytes can be written out and measured elsewhere.
package benchtext

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"unicode/utf8"

	"github.com/kvfoot/kvfoot/internal/goroot"
)

// Mixed returns 512 KiB of the Go specification (English prose in light HTML)
// followed by 512 KiB of net/http sources (code).
func Mixed() ([]byte, error) {
	root := goroot.Dir()
	spec, err := os.ReadFile(filepath.Join(root, "doc", "go_spec.html"))
	if err != nil {
		return nil, fmt.Errorf("bench text: %w", err)
	}
	const half = 512 << 10
	for len(spec) < half {
		spec = append(spec, spec...)
	}
	out := append([]byte(nil), spec[:runeCut(spec, half)]...)
	files, err := filepath.Glob(filepath.Join(root, "src", "net", "http", "*.go"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("bench text: no Go sources under %s", root)
	}
	sort.Strings(files)
	var code []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("bench text: %w", err)
		}
		code = append(code, b...)
		if len(code) >= half {
			break
		}
	}
	return append(out, code[:runeCut(code, half)]...), nil
}

// runeCut returns the largest n ≤ max that does not split a UTF-8 sequence.
func runeCut(b []byte, max int) int {
	n := max
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return n
}
