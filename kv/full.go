package kv

// full keeps every entry: exact causal attention. Spec: full.
type full struct{}

func init() {
	register("full", kindSelector, nil, func(opts) (any, error) { return full{}, nil })
}

func (full) Scores(*Forward) ScoreRequest { return ScoreRequest{} }
func (full) Keep(*Forward) []int          { return nil }
