package eval

import (
	"strings"
	"testing"
)

// The report's per-category tables: the longest length's from Categories, every other
// length's from its ByLength entry ("not run" where a method has none), a missing
// method marked in each.
func TestMarkdownCriticalTables(t *testing.T) {
	crit := func(v float64) Critical {
		return Critical{Footprint: &v, Peak: &v, Settings: 3, Full: 100, Fixed: true, Interval: [2]*float64{&v, &v}}
	}
	r := &StudyReport{Model: "m", Threshold: 0.9, Lengths: []int{1000, 4000}, Samples: 1, Methods: []MethodStudy{
		{Name: "a", Categories: map[string]Critical{"recall": crit(0.25)}, ByLength: []LengthCritical{
			{Length: 1000, Categories: map[string]Critical{"recall": crit(0.5)}},
			{Length: 4000, Categories: map[string]Critical{"recall": crit(0.25)}},
		}},
		{Name: "b", Categories: map[string]Critical{"recall": crit(0.75)}},
		{Name: "c", Missing: "no masks"},
	}}
	md := r.Markdown()
	section := func(title string) string {
		i := strings.Index(md, title)
		if i < 0 {
			t.Fatalf("no %q in:\n%s", title, md)
		}
		s := md[i+len(title):]
		if j := strings.Index(s, "\n## "); j >= 0 {
			s = s[:j]
		}
		return s
	}
	for _, c := range []struct{ title, want string }{
		{"## Critical KV footprint at 4000 tokens (the paper's Table 2)", "| a | 0.250 (one setting) [0.250, 0.250] |"},
		{"## Critical KV footprint at 4000 tokens (the paper's Table 2)", "| b | 0.750 (one setting) [0.750, 0.750] |"},
		{"## Critical KV footprint at 4000 tokens (the paper's Table 2)", "| a | 0.250 (one setting) |"}, // the peak table
		{"## Critical KV footprint at 4000 tokens (the paper's Table 2)", "| c | missing |"},
		{"## Critical KV footprint at 1000 tokens\n", "| a | 0.500 (one setting) [0.500, 0.500] |"},
		{"## Critical KV footprint at 1000 tokens\n", "| b | not run |"},
		{"## Critical KV footprint at 1000 tokens\n", "| c | missing |"},
	} {
		if s := section(c.title); !strings.Contains(s, c.want) {
			t.Errorf("%s: no row %q in:\n%s", strings.TrimSpace(c.title), c.want, s)
		}
	}
}
