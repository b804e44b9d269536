package kv

// tova is TOVA: after every forward each KV head keeps the budget entries with the
// highest attention from the forward's last query (mean over the group's query heads).
// Spec: tova:budget=B.
type tova struct{ budget int }

func init() {
	mustAdd(Registration{Name: "tova", Kind: Selector, Example: "tova:budget=512",
		Doc:         "TOVA: after every forward each head keeps the entries its last query attends to most",
		Params:      []Param{{Key: "budget", Type: Int, Default: "512", Min: 1, Max: 1 << 30, Doc: "entries kept per KV head"}},
		NewSelector: func(a Args) (Policy, error) { return tova{a.Int("budget")}, nil }})
}

func (p tova) Scores(f *Forward) ScoreRequest {
	if f.Len() <= p.budget {
		return ScoreRequest{}
	}
	return ScoreRequest{From: f.N - 1, To: f.N}
}

func (p tova) Keep(f *Forward) []int {
	if f.Len() <= p.budget {
		return nil
	}
	return f.keepTop(f.Scores, 0, f.Len(), p.budget)
}
