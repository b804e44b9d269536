package tasks

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
)

// rerank is passage re-ranking in the style of HELMET's MS MARCO task, made synthetic
// and offline: the context is many documents "[ID: n] Document: …" about made-up
// places (rag.go's documents), the query asks who holds a role at one place, and the
// answer is "Ranking: id > id > …", scored by NDCG@10 against graded judgements: 3
// for the document that answers, 2 for the one about another role of the same place,
// 1 for the one about the same role elsewhere, 0 (unjudged) for the rest. Two
// demonstrations come first (HELMET's two shots; one below 2048 tokens, none below
// 1024). An evaluation prompt has one query; a training document has --queries, each
// with its own three judged documents among the others, and each gold answer ranks its
// query's judged documents (Options.IDEcho adds a training-only echo of unjudged ids).
func init() {
	register(&task{name: "rerank", category: "rerank", metric: NDCG10, build: buildRerank})
}

// rerankIDs hands out distinct document ids of 3 to 5 digits.
type rerankIDs struct {
	rng  *rand.Rand
	seen map[int]bool
}

func (r *rerankIDs) next() string {
	for {
		id := 100 + r.rng.IntN(99900)
		if !r.seen[id] {
			r.seen[id] = true
			return fmt.Sprint(id)
		}
	}
}

func rerankDoc(id, text string) string { return fmt.Sprintf("[ID: %s] Document: %s", id, text) }

// judged is a document with its relevance label.
type judged struct {
	id, text string
	label    int
}

// rerankQuery lays out a question's documents (question() in rag.go) with their labels.
func rerankQuery(p *passages, ids *rerankIDs) (question, []judged) {
	q := p.question()
	labels := []int{3, 2, 1}
	var js []judged
	for i, text := range q.texts {
		js = append(js, judged{id: ids.next(), text: text, label: labels[i]})
	}
	return q, js
}

// ranking is the ids of js by label, highest first (stable in context order).
func ranking(js []judged) string {
	s := append([]judged(nil), js...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].label > s[j].label })
	ids := make([]string, len(s))
	for i, j := range s {
		ids[i] = j.id
	}
	return strings.Join(ids, " > ")
}

func buildRerank(g *gen, q int) (*layout, error) {
	p := &passages{rng: g.rng, taken: map[string]bool{}}
	ids := &rerankIDs{rng: g.rng, seen: map[int]bool{}}
	var head strings.Builder
	head.WriteString("You are provided with a list of documents, each indicated by their ID. Rank each document based on " +
		"their relevance to the question in descending order from most relevant to least relevant texts. Include all " +
		"documents in the rankings. Write your answer using the unique IDs, with the following format:\nRanking: ID3 > ID1 > ID2\n\n")
	for range min(2, g.length/1024) {
		q, js := rerankQuery(p, ids)
		g.rng.Shuffle(len(js), func(i, j int) { js[i], js[j] = js[j], js[i] })
		for _, j := range js {
			head.WriteString(rerankDoc(j.id, j.text) + "\n\n")
		}
		fmt.Fprintf(&head, "Query: who is the %s of the %s\nRanking: %s\n\n", q.role, q.title, ranking(js))
	}
	lay := &layout{head: head.String(), stop: "\n"}
	u := &units{close: "\n"}
	for range max(q, 1) {
		qu, js := rerankQuery(p, ids)
		g.rng.Shuffle(len(js), func(i, j int) { js[i], js[j] = js[j], js[i] })
		var golds []string
		for _, j := range js {
			u.special = append(u.special, rerankDoc(j.id, j.text)+"\n\n")
			golds = append(golds, fmt.Sprintf("%s:%d", j.id, j.label))
		}
		lay.queries = append(lay.queries, g.query(fmt.Sprintf("Query: who is the %s of the %s", qu.role, qu.title),
			"Ranking:", " "+ranking(js), golds...))
	}
	// Several queries' documents are interleaved (one query's draws stay as they were, so
	// that evaluation prompts do not change).
	if q > 1 {
		g.rng.Shuffle(len(u.special), func(i, j int) { u.special[i], u.special[j] = u.special[j], u.special[i] })
		g.rng.Shuffle(q, func(i, j int) { lay.queries[i], lay.queries[j] = lay.queries[j], lay.queries[i] })
	}
	u.depths = g.spread(len(u.special))
	// Unjudged documents come from their own generators, so that document i is the same
	// whatever order the fitter asks for them.
	frng := rand.New(rand.NewPCG(g.seed, 1<<40))
	fp := &passages{rng: frng, taken: p.taken}
	fids := &rerankIDs{rng: frng, seen: ids.seen}
	var docs []string
	u.unit = func(i int) string {
		for len(docs) <= i {
			if g.train && g.opts.IDEcho && frng.IntN(2) == 0 {
				id, t := fids.next(), fp.title()
				f := fact(fp.role(), t, fp.person())
				docs = append(docs, rerankDoc(id, fp.doc(strings.TrimSuffix(f, ".")+" (ID: "+id+")."))+"\n\n")
				continue
			}
			_, text := fp.random()
			docs = append(docs, rerankDoc(fids.next(), text)+"\n\n")
		}
		return docs[i]
	}
	padPrefix := rerankDoc(fids.next(), "")
	u.minPad = g.count(padPrefix) + 1
	u.pad = passagePad(g, p, padPrefix)
	lay.units = u
	return lay, nil
}
