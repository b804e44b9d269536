package tasks

import (
	"regexp"
	"strings"
	"testing"
)

// An evaluation prompt holds L/256 records; a training document draws its count from 2
// to L/128, and its gold TSV is the document's records in order either way.
func TestRecordsCount(t *testing.T) {
	c := testCorpus(t)
	o := Options{Corpus: c, Tokenizer: byteTok{}, Queries: 1}
	item := regexp.MustCompile(`<item><code>([^<]*)</code><name>([^<]*)</name><qty>([^<]*)</qty></item>`)
	// rows checks that the TSV after prefix lists exactly the records of context, in order.
	rows := func(what, context, tsv string) int {
		var want []string
		for _, m := range item.FindAllStringSubmatch(context, -1) {
			want = append(want, m[1]+"\t"+m[2]+"\t"+m[3])
		}
		got := strings.Split(strings.TrimSuffix(tsv, "\n"), "\n")
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: gold rows %q, the context's records %q", what, got, want)
		}
		return len(got)
	}
	const L = 2048
	for i := range 3 {
		in, err := Generate("records_tsv", L, i, 1, o)
		if err != nil {
			t.Fatal(err)
		}
		tsv := strings.TrimSuffix(strings.TrimPrefix(in.Answers[0], in.Prefix), "```")
		if n := rows("eval", in.Prompt, tsv); n != L/256 {
			t.Errorf("eval instance %d: %d records, want %d", i, n, L/256)
		}
	}
	counts := map[int]bool{}
	for i := range 20 {
		d, err := Document("records_tsv", L, i, 1, o)
		if err != nil {
			t.Fatal(err)
		}
		q := strings.LastIndex(d.Text, "```tsv\ncode\tname\tqty\n")
		tsv := d.Text[q+len("```tsv\ncode\tname\tqty\n"):]
		tsv = tsv[:strings.Index(tsv, "```")]
		n := rows("training", d.Text[:q], tsv)
		if n < 2 || n > L/128 {
			t.Errorf("training document %d: %d records, want 2 to %d", i, n, L/128)
		}
		counts[n] = true
	}
	if len(counts) < 5 {
		t.Errorf("20 training documents hold %d distinct record counts; want the count drawn, not fixed by the length", len(counts))
	}
}
