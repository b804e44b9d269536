package tasks

import (
	"fmt"
	"math/rand/v2"
)

// json_kv is HELMET's JSON key-value retrieval (after lost-in-the-middle): a JSON
// object of random id pairs fills the whole context and the question asks for the
// value of one key. Keys and values are 8 hex digits instead of UUIDs (see hexID).
// The object ends with one pad entry whose value is cut to the number of tokens that
// makes the prompt exactly L tokens long; it is never asked about.
func init() {
	register(&task{name: "json_kv", category: "recall", metric: SubstringExactMatch, build: buildJSONKV})
}

func buildJSONKV(g *gen, q int) (*layout, error) {
	seen := map[string]bool{}
	fresh := func(rng *rand.Rand) string {
		for {
			k := hexID(rng, 8)
			if !seen[k] {
				seen[k] = true
				return k
			}
		}
	}
	lay := &layout{
		head: "Extract the value corresponding to the specified key in the JSON object below.\n\n",
		stop: "\n",
	}
	u := &units{open: "JSON data:\n{", close: "}", depths: g.spread(q)}
	for range q {
		k, v := fresh(g.rng), hexID(g.rng, 8)
		u.special = append(u.special, fmt.Sprintf("%q: %q,\n", k, v))
		lay.queries = append(lay.queries, g.query(fmt.Sprintf("Key: %q", k), "Corresponding value:", fmt.Sprintf(" %q", v), v))
	}
	// Questions are asked in random order, not in order of depth.
	g.rng.Shuffle(q, func(i, j int) { lay.queries[i], lay.queries[j] = lay.queries[j], lay.queries[i] })
	// Filler entries come from their own generator, so that entry i is the same
	// whatever order the fitter asks for them.
	frng := rand.New(rand.NewPCG(g.seed, 1<<40))
	var entries []string
	u.unit = func(i int) string {
		for len(entries) <= i {
			entries = append(entries, fmt.Sprintf("%q: %q,\n", fresh(frng), hexID(frng, 8)))
		}
		return entries[i]
	}
	padKey := fresh(frng)
	overhead := g.count(fmt.Sprintf("%q: \"\"\n", padKey))
	u.minPad = overhead + 1
	u.pad = func(tokens, variant int) string {
		prng := rand.New(rand.NewPCG(g.seed, 1<<41+uint64(variant)))
		ids := g.opts.Tokenizer.Encode(hexID(prng, 4*tokens+8))
		n := max(1, min(len(ids), tokens-overhead))
		return fmt.Sprintf("%q: %q\n", padKey, g.opts.Tokenizer.Decode(ids[:n]))
	}
	lay.units = u
	return lay, nil
}
