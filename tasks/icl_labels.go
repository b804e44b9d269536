package tasks

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// icl_labels is many-shot in-context classification in HELMET's ICL style: the
// labels are random integers, so the mapping from class to label exists only in the
// demonstrations. A text is 2 to 5 words of one class (iclClasses); an instance uses
// 6 of the classes. Demonstrations fill the context; the last one is sized so that
// the prompt is exactly L tokens long.
func init() {
	register(&task{name: "icl_labels", category: "icl", metric: ExactMatch, build: buildICL})
}

const iclWays = 6

func buildICL(g *gen, q int) (*layout, error) {
	classes := g.rng.Perm(len(iclClasses))[:iclWays]
	labels := g.rng.Perm(100)[:iclWays]
	text := func(rng *rand.Rand, c, words int) string {
		w := make([]string, words)
		for i := range w {
			w[i] = iclClasses[classes[c]][rng.IntN(len(iclClasses[classes[c]]))]
		}
		return strings.Join(w, " ")
	}
	lay := &layout{
		head: "Use the provided mapping from the text to label to assign a label to the text. " +
			"Only output \"label: {label}\" and nothing else.\n\n",
		stop: "\n",
	}
	for range q {
		c := g.rng.IntN(iclWays)
		lay.queries = append(lay.queries, g.query("text: "+text(g.rng, c, 2+g.rng.IntN(4)), "label:",
			fmt.Sprintf(" %d", labels[c]), fmt.Sprint(labels[c])))
	}
	frng := rand.New(rand.NewPCG(g.seed, 1<<40))
	var demos []string
	u := &units{}
	u.unit = func(i int) string {
		for len(demos) <= i {
			c := frng.IntN(iclWays)
			demos = append(demos, fmt.Sprintf("text: %s\nlabel: %d\n", text(frng, c, 2+frng.IntN(4)), labels[c]))
		}
		return demos[i]
	}
	// The pad demonstration has no final newline: the question's "\n" ends it.
	u.minPad = g.count("text: " + iclClasses[0][0] + "\nlabel: 10")
	// Words are added while more than the longest word is missing; the last word is
	// one whose token count fills the rest exactly, if the class has one (the fitter
	// tries another variant if not).
	u.pad = func(tokens, variant int) string {
		prng := rand.New(rand.NewPCG(g.seed, 1<<41+uint64(variant)))
		c := prng.IntN(iclWays)
		vocab := iclClasses[classes[c]]
		longest := 0
		for _, w := range vocab {
			longest = max(longest, g.count(" "+w))
		}
		words := []string{vocab[prng.IntN(len(vocab))]}
		render := func() string { return fmt.Sprintf("text: %s\nlabel: %d", strings.Join(words, " "), labels[c]) }
		for rest := tokens - g.count(render()); rest > 0; rest = tokens - g.count(render()) {
			w := vocab[prng.IntN(len(vocab))]
			if rest <= longest {
				for _, i := range prng.Perm(len(vocab)) {
					if g.count(" "+vocab[i]) == rest {
						w = vocab[i]
						break
					}
				}
			}
			words = append(words, w)
		}
		return render()
	}
	lay.units = u
	return lay, nil
}
