package tasks

import (
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Metric names, as HELMET and LongProc spell them.
const (
	ExactMatch          = "exact_match"
	SubstringExactMatch = "substring_exact_match"
	RulerRecall         = "ruler_recall"
	RowF1               = "f1"
	NDCG10              = "NDCG@10"
)

// Score computes metric for a prediction against the gold answers, in [0, 1]. Exact
// match and substring exact match take the best gold answer; RULER recall counts all
// of them; row F1 reads golds[0] as the gold TSV (header line first); NDCG@10 reads
// the golds as "id:label" relevance judgements.
func Score(metric, pred string, golds []string) float64 {
	if len(golds) == 0 {
		return 0
	}
	best := 0.0
	switch metric {
	case ExactMatch:
		for _, g := range golds {
			if Normalize(pred) == Normalize(g) {
				best = 1
			}
		}
	case SubstringExactMatch:
		for _, g := range golds {
			if strings.Contains(Normalize(pred), Normalize(g)) {
				best = 1
			}
		}
	case RulerRecall:
		return Recall(pred, golds)
	case RowF1:
		return TSVRowF1(pred, golds[0])
	case NDCG10:
		return NDCG(pred, golds, 10)
	}
	return best
}

var articles = regexp.MustCompile(`\b(a|an|the)\b`)

// Normalize is SQuAD's answer normalisation as HELMET uses it: lowercase, drop ASCII
// punctuation, replace the articles a/an/the by spaces, collapse whitespace.
func Normalize(s string) string {
	s = strings.ToLower(s)
	s = strings.Map(func(r rune) rune {
		if isPunct(r) {
			return -1
		}
		return r
	}, s)
	s = articles.ReplaceAllString(s, " ")
	return strings.Join(strings.Fields(s), " ")
}

// isPunct reports membership in Python's string.punctuation.
func isPunct(r rune) bool {
	return r < 128 && strings.ContainsRune("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", r)
}

// Recall is RULER's metric: the share of gold answers that occur in the prediction,
// case-insensitively.
func Recall(pred string, golds []string) float64 {
	if len(golds) == 0 {
		return 0
	}
	p := strings.ToLower(pred)
	n := 0
	for _, g := range golds {
		if strings.Contains(p, strings.ToLower(g)) {
			n++
		}
	}
	return float64(n) / float64(len(golds))
}

// TSVRowF1 is LongProc's HTML-to-TSV score: the TSV is the text between the first
// "```tsv" and the last "```" (else everything after "```tsv", else all); its first
// line is a header and is dropped; a last row with the wrong number of columns is
// dropped and other such rows become all "N/A"; cells are normalised (lowercase, no
// punctuation, no articles, no whitespace); precision is the share of predicted rows
// that equal some gold row, recall the share of gold rows found; the result is their
// F1. A prediction whose header has a different number of columns than the gold
// header scores 0.
func TSVRowF1(pred, gold string) float64 {
	ph, prows := parseTSV(pred)
	gh, grows := parseTSV(gold)
	if len(ph) != len(gh) || len(prows) == 0 || len(grows) == 0 {
		return 0
	}
	key := func(r []string) string { return strings.Join(r, "\t") }
	gset := map[string]bool{}
	for _, r := range grows {
		gset[key(r)] = true
	}
	pset := map[string]bool{}
	hit := 0
	for _, r := range prows {
		pset[key(r)] = true
		if gset[key(r)] {
			hit++
		}
	}
	found := 0
	for _, r := range grows {
		if pset[key(r)] {
			found++
		}
	}
	p := float64(hit) / float64(len(prows))
	r := float64(found) / float64(len(grows))
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

// parseTSV returns the header cells and the normalised rows of a TSV answer.
func parseTSV(s string) ([]string, [][]string) {
	if i := strings.Index(s, "```tsv"); i >= 0 {
		s = s[i+len("```tsv"):]
		if j := strings.LastIndex(s, "```"); j >= 0 {
			s = s[:j]
		}
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return nil, nil
	}
	header := strings.Split(lines[0], "\t")
	var rows [][]string
	for i, l := range lines[1:] {
		cells := strings.Split(l, "\t")
		if len(cells) != len(header) {
			if i == len(lines)-2 {
				break
			}
			cells = make([]string, len(header))
			for j := range cells {
				cells[j] = "N/A"
			}
		}
		for j, c := range cells {
			cells[j] = strings.Join(strings.Fields(Normalize(c)), "")
		}
		rows = append(rows, cells)
	}
	return header, rows
}

// ParseOutput is HELMET's parse_output: the rest of the first line after the first
// (case-insensitive) prefix, else the first line, trimmed and with a repeated prefix
// stripped.
func ParseOutput(out, prefix string) string {
	line := out
	if i := strings.Index(strings.ToLower(out), strings.ToLower(prefix)); prefix != "" && i >= 0 {
		line = out[i+len(prefix):]
	}
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	line = strings.TrimSpace(line)
	if prefix != "" && len(line) >= len(prefix) && strings.EqualFold(line[:len(prefix)], prefix) {
		line = line[len(prefix):]
	}
	return strings.TrimSpace(line)
}

var (
	rankNoise = regexp.MustCompile(`[\[\]:]`)
	rankRun   = regexp.MustCompile(`(\d+)(?:\s*>\s*(\d+))*`)
)

// ParseRanking is HELMET's parse_rankings: drop brackets, colons and "id", take the
// longest run of integers separated by ">", and return its ids in order, each once.
func ParseRanking(out string) []string {
	out = strings.ReplaceAll(strings.ToLower(rankNoise.ReplaceAllString(out, "")), "id", "")
	longest := ""
	for _, m := range rankRun.FindAllString(out, -1) {
		if len(m) > len(longest) {
			longest = m
		}
	}
	var ids []string
	seen := map[string]bool{}
	for _, f := range strings.Split(longest, ">") {
		f = strings.TrimSpace(f)
		if f == "" || strings.Trim(f, "0123456789") != "" || seen[f] {
			continue
		}
		seen[f] = true
		ids = append(ids, f)
	}
	return ids
}

// NDCG is trec_eval's ndcg_cut at k (as HELMET computes it through pytrec_eval) of the
// ranking in pred against judgements "id:label": gains are the labels, discounts
// log2(rank+1), normalised by the best possible ordering of the judged documents.
func NDCG(pred string, judged []string, k int) float64 {
	rel := map[string]float64{}
	var ideal []float64
	for _, j := range judged {
		id, l, ok := strings.Cut(j, ":")
		x, err := strconv.Atoi(l)
		if !ok || err != nil {
			continue
		}
		rel[id] = float64(max(x, 0))
		ideal = append(ideal, float64(max(x, 0)))
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(ideal)))
	dcg := func(gains []float64) float64 {
		s := 0.0
		for i, g := range gains[:min(k, len(gains))] {
			s += g / math.Log2(float64(i+2))
		}
		return s
	}
	best := dcg(ideal)
	if best == 0 {
		return 0
	}
	var got []float64
	for _, id := range ParseRanking(pred) {
		got = append(got, rel[id])
	}
	return dcg(got) / best
}
