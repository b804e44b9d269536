package tasks

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// HELMET recall data (docs/METHODS.md §4.7): RULER files (ruler_niah_mk_2,
// ruler_niah_mk_3, ruler_niah_mv; fields context, query, type_needle_v, outputs or
// answer) and JSON KV files (json_kv; fields context, question, answer, demos). The
// prompts are HELMET's templates without a chat template; the instances carry no exact
// Length (0): their length is whatever the data holds.

// helmetShots is the number of JSON KV demonstrations HELMET's recall config uses.
const helmetShots = 2

type helmetRow struct {
	Context     *string         `json:"context"`
	Query       string          `json:"query"`
	TypeNeedleV string          `json:"type_needle_v"`
	Outputs     []string        `json:"outputs"`
	Question    string          `json:"question"`
	Answer      json.RawMessage `json:"answer"`
	Demos       [][]string      `json:"demos"`
}

// LoadHELMETFile reads a HELMET JSONL file of the named dataset.
func LoadHELMETFile(path, dataset string) ([]*Instance, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("helmet: %w", err)
	}
	defer f.Close()
	ins, err := LoadHELMET(f, dataset)
	if err != nil {
		return nil, fmt.Errorf("helmet %s: %w", path, err)
	}
	return ins, nil
}

// LoadHELMET reads HELMET JSONL rows of dataset: a name starting with "json_kv" or
// "ruler_" (multi-value wording when it contains "mv" or "multivalue").
func LoadHELMET(r io.Reader, dataset string) ([]*Instance, error) {
	jsonKV := strings.HasPrefix(dataset, "json_kv")
	if !jsonKV && !strings.HasPrefix(dataset, "ruler_") {
		return nil, fmt.Errorf("dataset %q: want json_kv… or ruler_… (the HELMET recall sets)", dataset)
	}
	multi := strings.Contains(dataset, "mv") || strings.Contains(dataset, "multivalue")
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<30)
	var out []*Instance
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var row helmetRow
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if row.Context == nil {
			return nil, fmt.Errorf("line %d: no \"context\" field", line)
		}
		golds, err := row.golds()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		in := &Instance{Task: dataset, Category: "recall", Answers: golds, Stop: "\n", Seed: uint64(line)}
		var head, tail string
		if jsonKV {
			if row.Question == "" {
				return nil, fmt.Errorf("line %d: no \"question\" field", line)
			}
			in.Metric, in.MaxNew = SubstringExactMatch, 100
			var demos strings.Builder
			for i, d := range row.Demos {
				if i == helmetShots {
					break
				}
				if len(d) != 2 {
					return nil, fmt.Errorf("line %d: demo %d has %d elements, want [key, value]", line, i, len(d))
				}
				fmt.Fprintf(&demos, "Key: %s\nCorresponding value: %s\n\n", d[0], d[1])
			}
			tail = "\n\nExtract the value corresponding to the specified key in the JSON object below.\n\n" +
				demos.String() + "Key: " + row.Question + "\nCorresponding value:"
		} else {
			if row.Query == "" || row.TypeNeedleV == "" {
				return nil, fmt.Errorf("line %d: RULER rows need \"query\" and \"type_needle_v\"", line)
			}
			// HELMET's recall config: 100 new tokens for niah_mk_3 (UUIDs), 50 for the others
			in.Metric, in.MaxNew = RulerRecall, 50
			if strings.Contains(dataset, "mk_3") || strings.Contains(dataset, "multikey_3") {
				in.MaxNew = 100
			}
			v, q := row.TypeNeedleV, row.Query
			if multi {
				head = fmt.Sprintf("Some special magic %s are hidden within the following text. Make sure to memorize it. "+
					"I will quiz you about the %s afterwards.\n", v, v)
				tail = fmt.Sprintf("\nWhat are all the special magic %s for %s mentioned in the provided text?\n"+
					"The special magic %s for %s mentioned in the provided text are", v, q, v, q)
			} else {
				head = fmt.Sprintf("A special magic %s is hidden within the following text. Make sure to memorize it. "+
					"I will quiz you about the %s afterwards.\n", v, v)
				tail = fmt.Sprintf("\nWhat is the special magic %s for %s mentioned in the provided text?\n"+
					"The special magic %s for %s mentioned in the provided text is", v, q, v, q)
			}
		}
		in.parts = &promptParts{head: head, context: *row.Context, tail: tail}
		in.Prompt = head + *row.Context + tail
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no rows")
	}
	return out, nil
}

// promptParts keep a loaded prompt's context apart, so that it can be truncated.
type promptParts struct{ head, context, tail string }

// Truncate cuts the context of a loaded (HELMET) instance at its end, as HELMET does,
// until the whole prompt is at most max tokens, and returns the prompt's ids. A
// generated instance, or one that already fits, is returned as it is.
func (in *Instance) Truncate(tok Tokenizer, max int) ([]int, error) {
	ids := tok.Encode(in.Prompt)
	if len(ids) <= max {
		return ids, nil
	}
	if in.parts == nil {
		return nil, fmt.Errorf("%s: prompt of %d tokens exceeds %d", in.Task, len(ids), max)
	}
	ctx := tok.Encode(in.parts.context)
	keep := len(ctx) - (len(ids) - max)
	// Token boundaries can merge differently at the seams; shrink until it fits.
	for try := 0; try < 16 && keep > 0; try++ {
		in.Prompt = in.parts.head + tok.Decode(ctx[:keep]) + in.parts.tail
		if ids = tok.Encode(in.Prompt); len(ids) <= max {
			return ids, nil
		}
		keep -= len(ids) - max
	}
	return nil, fmt.Errorf("%s: the prompt without its context is longer than %d tokens", in.Task, max)
}

// golds reads "outputs" (a list) or "answer" (a string or a list).
func (r *helmetRow) golds() ([]string, error) {
	if len(r.Outputs) > 0 {
		return r.Outputs, nil
	}
	if len(r.Answer) > 0 {
		var one string
		if json.Unmarshal(r.Answer, &one) == nil && one != "" {
			return []string{one}, nil
		}
		var many []string
		if json.Unmarshal(r.Answer, &many) == nil && len(many) > 0 {
			return many, nil
		}
	}
	return nil, fmt.Errorf("no gold answer (\"outputs\" or \"answer\", a string or a list of strings)")
}
