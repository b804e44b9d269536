package tasks

import (
	"fmt"
	"strings"
)

// ruler_vt is RULER's variable tracking: a chain "VAR A = 12345.", "VAR B = VAR A.",
// … of four hops hidden in the haystack; the answer is every variable that holds the
// value. There are max(queries, 1, L/2048) chains with distinct values, interleaved in
// the text with each chain's order preserved; a question asks about one chain.
func init() {
	register(&task{name: "ruler_vt", category: "vt", metric: RulerRecall, build: buildVT})
}

const vtHops = 4

func buildVT(g *gen, q int) (*layout, error) {
	nc := max(q, 1, g.length/2048)
	names := distinct(nc*(vtHops+1), func() string { return g.varName(5) })
	values := distinct(nc, func() string { return fmt.Sprint(10000 + g.rng.IntN(90000)) })
	// A random interleaving of the chains that keeps each chain in order: shuffle a
	// multiset holding chain c hops+1 times and take chain c's next step each time.
	var seq []int
	for c := range nc {
		for range vtHops + 1 {
			seq = append(seq, c)
		}
	}
	g.rng.Shuffle(len(seq), func(i, j int) { seq[i], seq[j] = seq[j], seq[i] })
	lay := &layout{
		haystack: true,
		head:     "Memorize and track the chain(s) of variable assignment hidden in the following text.\n",
		depths:   g.spread(len(seq)),
		stop:     "\n",
	}
	next := make([]int, nc)
	for _, c := range seq {
		h := next[c]
		next[c]++
		name := names[c*(vtHops+1)+h]
		if h == 0 {
			lay.items = append(lay.items, fmt.Sprintf("VAR %s = %s.\n", name, values[c]))
		} else {
			lay.items = append(lay.items, fmt.Sprintf("VAR %s = VAR %s.\n", name, names[c*(vtHops+1)+h-1]))
		}
	}
	for _, c := range g.rng.Perm(nc)[:q] {
		chain := names[c*(vtHops+1) : (c+1)*(vtHops+1)]
		lay.queries = append(lay.queries, g.query(
			fmt.Sprintf("Find all variables that are assigned the value %s in the text above.", values[c]),
			fmt.Sprintf("The variables assigned the value %s are:", values[c]),
			" "+strings.Join(chain, " "), chain...))
	}
	return lay, nil
}
