package kv

// full keeps every entry: exact causal attention. Spec: full.
type full struct{}

func init() {
	mustAdd(Registration{Name: "full", Kind: Selector, Example: "full", Doc: "every entry kept: exact causal attention",
		NewSelector: func(Args) (Policy, error) { return full{}, nil }})
}

func (full) Scores(*Forward) ScoreRequest { return ScoreRequest{} }
func (full) Keep(*Forward) []int          { return nil }
