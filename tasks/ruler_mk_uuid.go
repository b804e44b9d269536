package tasks

// ruler_mk_uuid is RULER's multi-key needle task with ids as keys and values
// (niah_multikey_3). A real UUID costs a 4K-vocabulary tokenizer about 25 tokens, so
// keys and values here are 8 random hex digits: the same task (matching and copying
// opaque ids) at a size a small model can learn.
func init() {
	register(&task{name: "ruler_mk_uuid", category: "recall", metric: RulerRecall,
		build: func(g *gen, q int) (*layout, error) {
			hex := func() string { return hexID(g.rng, 8) }
			return g.multiKey(q, "id", hex, hex)
		}})
}
