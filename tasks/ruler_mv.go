package tasks

import (
	"fmt"
	"strings"
)

// ruler_mv is RULER's multi-value needle task (niah_multivalue): one key has four
// different 7-digit values at different depths; the answer is all four. Each
// question's key has its own four needles; at least max(1, L/1024) keys are present,
// so that other keys' needles act as distractors.
func init() {
	register(&task{name: "ruler_mv", category: "recall", metric: RulerRecall, build: buildMV})
}

const mvValues = 4

func buildMV(g *gen, q int) (*layout, error) {
	nk := max(q, 1, g.length/1024)
	keys := distinct(nk, g.wordKey)
	type needle struct{ key, val int }
	var needles []needle
	vals := make([][]string, nk)
	for k := range keys {
		vals[k] = distinct(mvValues, g.number)
		for v := range mvValues {
			needles = append(needles, needle{k, v})
		}
	}
	g.rng.Shuffle(len(needles), func(i, j int) { needles[i], needles[j] = needles[j], needles[i] })
	lay := &layout{
		haystack: true,
		head: "Some special magic numbers are hidden within the following text. Make sure to memorize them. " +
			"I will quiz you about the numbers afterwards.\n",
		depths: g.spread(len(needles)),
		stop:   "\n",
	}
	order := make([][]string, nk) // values of each key in order of appearance
	for _, n := range needles {
		v := vals[n.key][n.val]
		order[n.key] = append(order[n.key], v)
		lay.items = append(lay.items, fmt.Sprintf("One of the special magic numbers for %s is: %s.\n", keys[n.key], v))
	}
	for _, k := range g.rng.Perm(nk)[:q] {
		lay.queries = append(lay.queries, g.query(
			fmt.Sprintf("What are all the special magic numbers for %s mentioned in the provided text?", keys[k]),
			fmt.Sprintf("The special magic numbers for %s mentioned in the provided text are", keys[k]),
			" "+strings.Join(order[k], ", "), order[k]...))
	}
	return lay, nil
}
