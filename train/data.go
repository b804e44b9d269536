package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/kvfoot/kvfoot/tasks"
)

// Doc is one training document: token ids and the [start, end) token ranges of its
// answers (DuoAttention's loss rows).
type Doc struct {
	IDs   []int
	Spans [][2]int
}

// LoadDocs reads the documents of a `kvfoot tasks dump` JSONL file (fields ids and
// answer_spans; other fields are ignored).
func LoadDocs(path string) ([]Doc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	var docs []Doc
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var d struct {
			IDs   []int    `json:"ids"`
			Spans [][2]int `json:"answer_spans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("data: %s:%d: %w", path, line, err)
		}
		if len(d.IDs) == 0 {
			return nil, fmt.Errorf("data: %s:%d: no \"ids\" (a line of `kvfoot tasks dump` output is expected)", path, line)
		}
		docs = append(docs, Doc{d.IDs, d.Spans})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("data: %s: %w", path, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("data: %s holds no documents", path)
	}
	return docs, nil
}

// MixTasks are the default training tasks: the built-in model's own kind of data
// (its pre-training mix: the recall tasks, variable tracking, in-context labels,
// records) plus plain Go source ("corpus").
var MixTasks = []string{"json_kv", "ruler_mk_needle", "ruler_mk_uuid", "ruler_mv", "ruler_vt", "icl_labels", "records_tsv", tasks.CorpusTask}

// RecallTasks are DuoAttention's kind of data: retrieval of passkey-like values
// whose answer tokens the loss is taken on.
var RecallTasks = []string{"json_kv", "ruler_mk_needle", "ruler_mk_uuid", "ruler_mv"}

// queriesAt4096 is the question/answer pairs per document at 4096 tokens, as the
// built-in model's pre-training data has them (tools/pretrain/data.sh); shorter
// documents get proportionally fewer.
var queriesAt4096 = map[string]int{"json_kv": 40, "ruler_mk_needle": 40, "ruler_mk_uuid": 32, "ruler_mv": 16,
	"ruler_vt": 24, "icl_labels": 48, "records_tsv": 1, tasks.CorpusTask: 1}

// MakeDocs generates count training documents of length tokens for every task, from
// the tasks package's training split (seeds disjoint from every evaluation seed),
// interleaving the tasks.
func MakeDocs(names []string, length, count int, seed uint64, o tasks.Options) ([]Doc, error) {
	var docs []Doc
	for i := range count {
		for _, name := range names {
			q := max(1, queriesAt4096[name]*length/4096)
			o.Queries = q
			d, err := tasks.Document(name, length, i, seed, o)
			if err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
			docs = append(docs, Doc{d.IDs, d.Spans})
		}
	}
	return docs, nil
}

// sequences cuts every document to seqLen tokens, refusing shorter ones, and returns
// them in a seeded order.
func sequences(docs []Doc, seqLen int, seed uint64, needSpans bool) ([]Doc, error) {
	if len(docs) == 0 {
		return nil, fmt.Errorf("data: no documents")
	}
	out := make([]Doc, 0, len(docs))
	short := 0
	for _, d := range docs {
		if len(d.IDs) < seqLen {
			short++
			continue
		}
		c := Doc{IDs: d.IDs[:seqLen]}
		for _, s := range d.Spans {
			if s[0] < seqLen-1 {
				c.Spans = append(c.Spans, [2]int{s[0], min(s[1], seqLen)})
			}
		}
		if needSpans && len(c.Spans) == 0 {
			continue
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		what := ""
		if needSpans {
			what = " with answer spans inside them"
		}
		return nil, fmt.Errorf("data: none of %d documents has %d tokens%s (%d are shorter): lower --seq-len or give longer documents", len(docs), seqLen, what, short)
	}
	r := rand.New(rand.NewPCG(seed, 0x64617461))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}
