package tasks

import (
	"fmt"
	"strings"
)

// records_tsv is long generation in the spirit of LongProc's HTML to TSV: a long
// document (corpus text) holds max(2, L/256) records marked up as
// <item><code>…</code><name>…</name><qty>…</qty></item> at spread depths; the task is
// to extract all of them, in document order, as TSV. The score is LongProc's
// row-level F1. A document has one question whatever --queries says.
//
// A training document draws its record count from 2 to L/128 instead (L/256 on average),
// so that neither the count nor the records' places follow from the length. What the
// models trained here actually learned from fixed lengths was where a document ends, which
// DumpOptions.Jitter removes (tools/pretrain/README.md, "Where documents end").
func init() {
	register(&task{name: "records_tsv", category: "html_to_tsv", metric: RowF1, build: buildRecords})
}

const recordsHeader = "code\tname\tqty"

func buildRecords(g *gen, _ int) (*layout, error) {
	n := max(2, g.length/256)
	if g.train {
		n = 2 + g.rng.IntN(max(1, g.length/128-1))
	}
	codes := distinct(n, func() string { return g.varName(2) + fmt.Sprint(10+g.rng.IntN(90)) })
	lay := &layout{
		haystack: true,
		head: "The text below contains records, each marked up as <item>...</item>. " +
			"Extract every record, in the order they appear, as TSV with the columns code, name and qty.\n",
		depths: g.spread(n),
		stop:   "```",
	}
	var rows strings.Builder
	for _, c := range codes {
		name, qty := nouns[g.rng.IntN(len(nouns))], 1+g.rng.IntN(999)
		lay.items = append(lay.items, fmt.Sprintf("<item><code>%s</code><name>%s</name><qty>%d</qty></item>\n", c, name, qty))
		fmt.Fprintf(&rows, "%s\t%s\t%d\n", c, name, qty)
	}
	prefix := "```tsv\n" + recordsHeader + "\n"
	qu := g.query("List all records in the text above as TSV.", prefix, rows.String()+"```", prefix+rows.String()+"```")
	qu.scorePrefix = prefix
	lay.queries = []query{qu}
	return lay, nil
}
