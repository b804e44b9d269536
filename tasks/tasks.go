// Package tasks generates kvfoot's long-context tasks and scores their answers.
//
// Every task is seeded and length-controlled: an evaluation instance's prompt
// (instruction, context, question and answer prefix) is exactly the requested number
// of tokens of the model's tokenizer, and a training document (context followed by
// several question/answer pairs) is exactly that length too. See fit.go for how
// exactness is guaranteed. Each task lives in its own file and registers itself in
// the table below; scorers are in score.go, the HELMET loader in helmet.go.
package tasks

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
)

// Tokenizer is what the tasks need from the model's tokenizer. For a byte-level BPE,
// Decode(ids) must return the exact bytes the ids stand for (no replacement of
// partial UTF-8 sequences), so that token spans can be mapped to byte offsets.
type Tokenizer interface {
	Encode(text string) []int
	Decode(ids []int) string
}

// Instance is one evaluation prompt with its gold answers.
type Instance struct {
	Task     string
	Category string
	Metric   string
	Length   int // prompt tokens (exact for generated tasks)
	Seed     uint64
	Prompt   string
	Answers  []string // gold answers; the scorer of Metric interprets them
	Prefix   string   // answer prefix already in the prompt; prepended to the output by scorers that need it (row F1)
	// AnswerPrefix is the prompt's last line, which the output continues (HELMET's
	// system template): exact match reads the answer after it, as HELMET's parse_output.
	AnswerPrefix string
	Stop         string // generation stops once the output contains Stop
	MaxNew       int    // generation budget in tokens

	parts *promptParts // loaded instances: the prompt around its context, for Truncate
}

// Score returns the instance's metric for a model output, in [0, 1].
func (in *Instance) Score(output string) float64 {
	if in.Metric == ExactMatch {
		return max(Score(in.Metric, output, in.Answers), Score(in.Metric, ParseOutput(in.AnswerPrefix+output, in.AnswerPrefix), in.Answers))
	}
	return Score(in.Metric, in.Prefix+output, in.Answers)
}

// Doc is a training document: a context followed by question/answer pairs.
type Doc struct {
	Task     string
	Category string
	Length   int
	Seed     uint64
	Text     string
	IDs      []int
	// Spans are [start, end) token index ranges of answer tokens (each answer and the
	// terminator that follows it), so that a trainer can weight them.
	Spans [][2]int
}

// Split separates the seed spaces of training and evaluation data.
type Split int

const (
	Train Split = iota
	Eval
)

func (s Split) String() string {
	if s == Eval {
		return "eval"
	}
	return "train"
}

// InstanceSeed derives the seed of instance index of (task, length) from the user's
// seed. Training seeds have the top bit clear and evaluation seeds have it set, so
// the two splits never share an instance seed whatever seeds the user passes.
func InstanceSeed(split Split, task string, length, index int, seed uint64) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%d", split, task, length, index, seed)
	s := h.Sum64() &^ (1 << 63)
	if split == Eval {
		s |= 1 << 63
	}
	return s
}

// Options configures generation.
type Options struct {
	Corpus    *Corpus
	Tokenizer Tokenizer
	// Queries is the number of question/answer pairs of a training document (at least
	// 1); evaluation instances always have one question.
	Queries int
	// IDEcho makes re-ranking training documents write, in about half of the documents no
	// question asks about, the document's id again after its fact: "… is Zoe Rock (ID:
	// 68443)." Predicting it needs the lookup re-ranking is scored on (which id precedes
	// this fact), with a target at every such document instead of one per question; the
	// documents a question ranks never echo, so the answers cannot copy an echo.
	// Evaluation prompts ignore it.
	IDEcho bool
}

// task is one generator. build lays out an instance for q queries; the framework in
// fit.go turns the layout into text of the exact length.
type task struct {
	name, category, metric string
	build                  func(g *gen, q int) (*layout, error)
}

var registry = map[string]*task{}

func register(t *task) { registry[t.name] = t }

// Names lists the generated tasks (not the corpus pseudo-task), sorted.
func Names() []string {
	var n []string
	for k := range registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Category returns the category of a task ("" if unknown).
func Category(name string) string {
	if name == CorpusTask {
		return "corpus"
	}
	if t, ok := registry[name]; ok {
		return t.category
	}
	return ""
}

func lookup(name string) (*task, error) {
	t, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown task %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return t, nil
}

// Check reports whether name is a task that Generate or Dump accepts.
func Check(name string, allowCorpus bool) error {
	if allowCorpus && name == CorpusTask {
		return nil
	}
	_, err := lookup(name)
	return err
}

// gen is the per-instance state a builder draws from.
type gen struct {
	rng    *rand.Rand
	seed   uint64
	length int
	opts   *Options
	train  bool // a training document (Document), not an evaluation prompt
	// streams caches the corpus tokens of each filler variant.
	streams map[int]*stream
}

func newGen(seed uint64, length int, opts *Options) *gen {
	return &gen{rng: rand.New(rand.NewPCG(seed, 0x6b76666f6f74)), seed: seed, length: length, opts: opts}
}

// Generate returns the evaluation instance index of (name, length) for the user's seed.
func Generate(name string, length, index int, seed uint64, opts Options) (*Instance, error) {
	t, err := lookup(name)
	if err != nil {
		return nil, err
	}
	if err := checkSize(name, length, index); err != nil {
		return nil, err
	}
	s := InstanceSeed(Eval, name, length, index, seed)
	for retry := 0; ; retry++ {
		in, err := generate(t, name, length, s, opts)
		if !errors.Is(err, errNoExactFit) || retry == maxRedraws {
			return in, err
		}
		s = redraw(s, retry)
	}
}

// MaxLength bounds the length of a prompt or document in tokens: eight times the
// paper's longest context (128K); beyond it a haystack only exhausts memory.
const MaxLength = 1 << 20

func checkSize(name string, length, index int) error {
	switch {
	case length > MaxLength:
		return fmt.Errorf("task %s, length %d: longer than %d tokens", name, length, MaxLength)
	case index < 0:
		return fmt.Errorf("task %s, index %d: want ≥ 0", name, index)
	}
	return nil
}

// maxRedraws bounds how often an instance whose text cannot be fitted to exactly its
// length is drawn again with a derived seed.
const maxRedraws = 8

// redraw derives the seed of the next draw of an instance, keeping its split bit.
func redraw(s uint64, retry int) uint64 {
	z := s + uint64(retry+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return z&^(1<<63) | s&(1<<63)
}

func generate(t *task, name string, length int, s uint64, opts Options) (*Instance, error) {
	g := newGen(s, length, &opts)
	lay, err := t.build(g, 1)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", name, err)
	}
	text, _, err := g.fit(lay, 1, false)
	if err != nil {
		return nil, fmt.Errorf("task %s, length %d: %w", name, length, err)
	}
	q := lay.queries[0]
	return &Instance{
		Task: name, Category: t.category, Metric: t.metric, Length: length, Seed: s,
		Prompt: text, Answers: q.golds, Prefix: q.scorePrefix, AnswerPrefix: q.prefix, Stop: lay.stop, MaxNew: q.maxNew,
	}, nil
}

// Document returns training document index of (name, length) for the user's seed:
// one context followed by opts.Queries question/answer pairs, exactly length tokens.
func Document(name string, length, index int, seed uint64, opts Options) (*Doc, error) {
	if opts.Queries < 1 {
		opts.Queries = 1
	}
	if err := checkSize(name, length, index); err != nil {
		return nil, err
	}
	s := InstanceSeed(Train, name, length, index, seed)
	for retry := 0; ; retry++ {
		d, err := document(name, length, s, opts)
		if !errors.Is(err, errNoExactFit) || retry == maxRedraws {
			return d, err
		}
		s = redraw(s, retry)
	}
}

func document(name string, length int, s uint64, opts Options) (*Doc, error) {
	g := newGen(s, length, &opts)
	g.train = true
	if name == CorpusTask {
		text, ids, err := g.corpusChunk()
		if err != nil {
			return nil, fmt.Errorf("task %s, length %d: %w", name, length, err)
		}
		return &Doc{Task: name, Category: "corpus", Length: length, Seed: s, Text: text, IDs: ids}, nil
	}
	t, err := lookup(name)
	if err != nil {
		return nil, err
	}
	lay, err := t.build(g, opts.Queries)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", name, err)
	}
	q := min(opts.Queries, len(lay.queries))
	text, ranges, err := g.fit(lay, q, true)
	if err != nil {
		return nil, fmt.Errorf("task %s, length %d: %w", name, length, err)
	}
	ids := opts.Tokenizer.Encode(text)
	spans, err := answerSpans(opts.Tokenizer, text, ids, ranges)
	if err != nil {
		return nil, fmt.Errorf("task %s, length %d: %w", name, length, err)
	}
	return &Doc{Task: name, Category: t.category, Length: length, Seed: s, Text: text, IDs: ids, Spans: spans}, nil
}
