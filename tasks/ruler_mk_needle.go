package tasks

import "fmt"

// ruler_mk_needle is RULER's multi-key needle-in-a-haystack: needle sentences with
// adjective-noun keys and 7-digit values hidden in corpus text at spread depths; the
// question asks for the value of one key, the others are distractors. Unlike RULER's
// niah_multikey_2, whose haystack is made only of needles, the haystack here is
// corpus text with max(queries, 2, L/256) needles, so that key matching and
// retrieval from real text are both needed.
func init() {
	register(&task{name: "ruler_mk_needle", category: "recall", metric: RulerRecall,
		build: func(g *gen, q int) (*layout, error) {
			return g.multiKey(q, "number", g.wordKey, g.number)
		}})
}

// multiKey lays out a multi-key needle task whose values are called kind.
func (g *gen) multiKey(q int, kind string, key, value func() string) (*layout, error) {
	n := max(q, 2, g.length/256)
	keys := distinct(n, key)
	lay := &layout{
		haystack: true,
		head: fmt.Sprintf("A special magic %s is hidden within the following text. Make sure to memorize it. "+
			"I will quiz you about the %s afterwards.\n", kind, kind),
		depths: g.spread(n),
		stop:   "\n",
	}
	vals := make([]string, n)
	for i, k := range keys {
		vals[i] = value()
		lay.items = append(lay.items, fmt.Sprintf("One of the special magic %ss for %s is: %s.\n", kind, k, vals[i]))
	}
	for _, i := range g.rng.Perm(n)[:q] {
		lay.queries = append(lay.queries, g.query(
			fmt.Sprintf("What is the special magic %s for %s mentioned in the provided text?", kind, keys[i]),
			fmt.Sprintf("The special magic %s for %s mentioned in the provided text is", kind, keys[i]),
			" "+vals[i], vals[i]))
	}
	return lay, nil
}

// query builds a question whose generation budget is twice the gold answer's tokens
// plus 8.
func (g *gen) query(question, prefix, answer string, golds ...string) query {
	return query{question: question, prefix: prefix, answer: answer, golds: golds,
		maxNew: 2*g.count(answer+"\n") + 8}
}
