package kv

// tova is TOVA: after every forward each KV head keeps the budget entries with the
// highest attention from the forward's last query (mean over the group's query heads).
// Spec: tova:budget=B.
type tova struct{ budget int }

func init() {
	register("tova", kindSelector, []string{"budget"}, func(o opts) (any, error) {
		b, err := o.int("budget", 512, 1, 1<<30)
		return tova{b}, err
	})
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
