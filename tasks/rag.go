package tasks

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// rag is retrieval-augmented QA in the style of HELMET's KILT tasks (NQ, TriviaQA,
// HotpotQA, PopQA over retrieved passages), made synthetic and offline: the context
// is many short documents "Document (Title: T): …" about made-up places, each stating
// who holds some role there ("The keeper of the Quiet Lion is Mara Stone."). One
// document holds the answer; hard negatives state another role of the same place, or
// the same role of another place, so the question's place and role must both be
// matched. Two demonstrations come first (HELMET's two shots), the answer follows
// "Answer:", and it is scored by substring exact match (one demonstration below 2048 tokens,
// none below 1024). Documents fill the context;
// the last one is cut to make the prompt exactly L tokens.
func init() {
	register(&task{name: "rag", category: "rag", metric: SubstringExactMatch, build: buildRAG})
}

var (
	ragRoles  = strings.Fields("keeper founder owner architect captain painter gardener mayor")
	ragFirsts = strings.Fields(`Ada Alma Ben Cora Dan Eli Emma Finn Gus Hana Ivo Jan Kai Lea Leo Lina Max
Mara Nia Noel Omar Otto Pia Rosa Sam Tara Theo Uma Vera Yara Zoe`)
)

// passages draws documents about made-up places: a place is a capitalised
// adjective-noun title, a fact names who holds a role there.
type passages struct {
	rng   *rand.Rand
	taken map[string]bool // titles reserved for the questions' places
}

func (p *passages) title() string {
	for {
		a, n := adjectives[p.rng.IntN(len(adjectives))], nouns[p.rng.IntN(len(nouns))]
		t := strings.ToUpper(a[:1]) + a[1:] + " " + strings.ToUpper(n[:1]) + n[1:]
		if !p.taken[t] {
			return t
		}
	}
}

func (p *passages) person() string {
	n := nouns[p.rng.IntN(len(nouns))]
	return ragFirsts[p.rng.IntN(len(ragFirsts))] + " " + strings.ToUpper(n[:1]) + n[1:]
}

func (p *passages) role() string { return ragRoles[p.rng.IntN(len(ragRoles))] }

func fact(role, title, person string) string {
	return fmt.Sprintf("The %s of the %s is %s.", role, title, person)
}

// filler is a short sentence of colour about a place.
func (p *passages) filler() string {
	w := func(list []string) string { return list[p.rng.IntN(len(list))] }
	switch p.rng.IntN(4) {
	case 0:
		return fmt.Sprintf("It stands by the %s %s.", w(adjectives), w(nouns))
	case 1:
		return fmt.Sprintf("It is known for its %s %s.", w(adjectives), w(nouns))
	case 2:
		return fmt.Sprintf("It was rebuilt in %d.", 1700+p.rng.IntN(300))
	}
	return fmt.Sprintf("Its %s is %s.", w(nouns), w(adjectives))
}

// doc is the text of a document: a fact and a sentence of colour, in either order.
func (p *passages) doc(fact string) string {
	if p.rng.IntN(2) == 0 {
		return fact + " " + p.filler()
	}
	return p.filler() + " " + fact
}

// random is a document about a place that no question asks about.
func (p *passages) random() (string, string) {
	t := p.title()
	return t, p.doc(fact(p.role(), t, p.person()))
}

// question is one place, role and holder, with the hard negatives around it: another
// role of the same place and the same role of another place.
type question struct {
	title, role, person string
	titles, texts       []string // the documents: [gold, negatives…]
}

func (p *passages) question() question {
	q := question{title: p.title(), role: p.role(), person: p.person()}
	p.taken[q.title] = true
	other := p.role()
	for other == q.role {
		other = p.role()
	}
	add := func(title, text string) { q.titles, q.texts = append(q.titles, title), append(q.texts, text) }
	add(q.title, p.doc(fact(q.role, q.title, q.person)))
	add(q.title, p.doc(fact(other, q.title, p.person())))
	t := p.title()
	add(t, p.doc(fact(q.role, t, p.person())))
	return q
}

// titled is a document as the KILT prompts show it.
func titled(title, text string) string { return fmt.Sprintf("Document (Title: %s): %s", title, text) }

func buildRAG(g *gen, q int) (*layout, error) {
	p := &passages{rng: g.rng, taken: map[string]bool{}}
	var head strings.Builder
	head.WriteString("Use the given documents to write a concise and short answer to the question. " +
		"Write your answer in the following format:\nAnswer: [answer]\n\n")
	for range min(2, g.length/1024) {
		d := p.question()
		fmt.Fprintf(&head, "%s\n\n%s\n\nQuestion: Who is the %s of the %s?\nAnswer: %s\n\n",
			titled(d.titles[0], d.texts[0]), titled(d.titles[2], d.texts[2]), d.role, d.title, d.person)
	}
	lay := &layout{head: head.String(), stop: "\n"}
	u := &units{close: "\n"}
	var special []string
	for range q {
		qu := p.question()
		for i := range qu.texts {
			special = append(special, titled(qu.titles[i], qu.texts[i]))
		}
		lay.queries = append(lay.queries, g.query(fmt.Sprintf("Question: Who is the %s of the %s?", qu.role, qu.title),
			"Answer:", " "+qu.person, qu.person))
	}
	// The gold and negative documents lie at spread depths, in random order.
	g.rng.Shuffle(len(special), func(i, j int) { special[i], special[j] = special[j], special[i] })
	for _, s := range special {
		u.special = append(u.special, s+"\n\n")
	}
	u.depths = g.spread(len(special))
	g.rng.Shuffle(q, func(i, j int) { lay.queries[i], lay.queries[j] = lay.queries[j], lay.queries[i] })
	// Filler documents come from their own generator, so that document i is the same
	// whatever order the fitter asks for them.
	fp := &passages{rng: rand.New(rand.NewPCG(g.seed, 1<<40)), taken: p.taken}
	var docs []string
	u.unit = func(i int) string {
		for len(docs) <= i {
			t, text := fp.random()
			docs = append(docs, titled(t, text)+"\n\n")
		}
		return docs[i]
	}
	padTitle := fp.title()
	prefix := titled(padTitle, "")
	u.minPad = g.count(prefix) + 1
	u.pad = passagePad(g, p, prefix)
	lay.units = u
	return lay, nil
}

// passagePad makes filler passages of about tokens tokens behind prefix, drawn from a
// stream of their own for each variant (titles reserved by p stay unused).
func passagePad(g *gen, p *passages, prefix string) func(tokens, variant int) string {
	return func(tokens, variant int) string {
		pp := &passages{rng: rand.New(rand.NewPCG(g.seed, 1<<41+uint64(variant))), taken: p.taken}
		var text strings.Builder
		for g.count(text.String()) < tokens {
			text.WriteString(pp.filler() + " ")
		}
		ids := g.opts.Tokenizer.Encode(text.String())
		n := max(1, min(len(ids), tokens-g.count(prefix)))
		return prefix + g.opts.Tokenizer.Decode(ids[:n])
	}
}
