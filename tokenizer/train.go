package tokenizer

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// DefaultSpecialTokens are the special tokens a trained tokenizer gets, Llama 3's
// names so that its chat template applies; ids follow the learned vocabulary.
var DefaultSpecialTokens = []string{
	"<|begin_of_text|>", "<|end_of_text|>",
	"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
	"<|reserved_special_token_0|>", "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
}

// trainChatTemplate is Llama 3's chat template, written into the trained
// tokenizer's tokenizer_config.json.
const trainChatTemplate = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

// Trainer learns a byte-level BPE vocabulary with Llama 3's split pattern. Add
// counts the pre-tokens of texts (safe for concurrent use); Train merges.
type Trainer struct {
	mu    sync.Mutex
	words map[string]int64
}

// NewTrainer returns an empty trainer.
func NewTrainer() *Trainer { return &Trainer{words: map[string]int64{}} }

// Add counts the pre-tokens of text. Special-token names in text are plain text.
func (tr *Trainer) Add(text string) {
	text = validUTF8(text)
	local := map[string]int64{}
	scanner{maxDigits: 3}.split(text, func(a, b int) { local[text[a:b]]++ })
	tr.mu.Lock()
	for w, n := range local {
		tr.words[w] += n
	}
	tr.mu.Unlock()
}

// AddParallel counts the pre-tokens of a large text on all cores, cutting it at
// line starts (a pre-token may hold several newlines, so a cut can split one
// run of blank lines: harmless for training statistics).
func (tr *Trainer) AddParallel(text []byte) {
	n := runtime.GOMAXPROCS(0)
	const minPart = 1 << 20
	if n == 1 || len(text) < 2*minPart {
		tr.Add(string(text))
		return
	}
	part := max(len(text)/(4*n), minPart)
	var wg sync.WaitGroup
	sem := make(chan struct{}, n)
	for len(text) > 0 {
		cut := len(text)
		if cut > part {
			cut = part
			if i := bytes.IndexByte(text[cut:], '\n'); i >= 0 {
				cut += i + 1
			} else {
				cut = len(text)
			}
		}
		chunk := text[:cut]
		text = text[cut:]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			tr.Add(string(chunk))
			<-sem
		}()
	}
	wg.Wait()
}

// Words returns the number of distinct pre-tokens counted so far.
func (tr *Trainer) Words() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.words)
}

// trainWord is one distinct pre-token as a symbol sequence, with its count.
type trainWord struct {
	syms  []int32
	count int64
	seen  int32 // last merge step that visited the word
}

// Train learns merges until the vocabulary (256 bytes, merges and special
// tokens) has vocabSize entries or no pair occurs twice, and returns the
// tokenizer.json and tokenizer_config.json contents.
func (tr *Trainer) Train(vocabSize int, special []string) (tokenizerJSON, configJSON []byte, err error) {
	nMerges := vocabSize - 256 - len(special)
	if nMerges < 0 {
		return nil, nil, fmt.Errorf("vocab size %d: want at least %d (256 bytes + %d special tokens)", vocabSize, 256+len(special), len(special))
	}
	if len(special) == 0 {
		return nil, nil, errors.New("want at least one special token (BOS)")
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	// Sort the words so that training is deterministic (map order is not).
	keys := make([]string, 0, len(tr.words))
	for w := range tr.words {
		keys = append(keys, w)
	}
	slices.Sort(keys)
	words := make([]trainWord, len(keys))
	counts := map[uint64]int64{}
	where := map[uint64][]int32{}
	for i, w := range keys {
		syms := make([]int32, len(w))
		for k := 0; k < len(w); k++ {
			syms[k] = int32(w[k])
		}
		words[i] = trainWord{syms: syms, count: tr.words[w], seen: -1}
		for k := 0; k+1 < len(syms); k++ {
			p := pairKey(syms[k], syms[k+1])
			counts[p] += words[i].count
			where[p] = append(where[p], int32(i))
		}
	}
	q := make(pairQueue, 0, len(counts))
	for p, c := range counts {
		q = append(q, pairCount{pair: p, count: c})
	}
	heap.Init(&q)

	tokens := make([][]byte, 256, min(vocabSize, 1<<16)) // grows if needed; a huge vocabSize reserves nothing
	for b := range tokens {
		tokens[b] = []byte{byte(b)}
	}
	var merges [][2]int32
	byText := map[string]int32{}
	changed := map[uint64]bool{}
	for len(tokens) < 256+nMerges && len(q) > 0 {
		top := heap.Pop(&q).(pairCount)
		if c := counts[top.pair]; c != top.count {
			if c > 0 {
				heap.Push(&q, pairCount{pair: top.pair, count: c})
			}
			continue
		}
		if top.count < 2 {
			break
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		text := string(tokens[a]) + string(tokens[b])
		// Two merges can spell the same token ("ab"+"c", "a"+"bc"): reuse its id.
		id, ok := byText[text]
		if !ok {
			id = int32(len(tokens))
			byText[text] = id
			tokens = append(tokens, []byte(text))
		}
		merges = append(merges, [2]int32{a, b})
		step := int32(len(merges))
		clear(changed)
		for _, wi := range where[top.pair] {
			w := &words[wi]
			if w.seen == step {
				continue
			}
			w.seen = step
			if !slices.Contains(w.syms, a) {
				continue
			}
			// Remove the word's pairs, merge, add them back: simple and exact
			// for overlapping occurrences such as "aaa".
			for k := 0; k+1 < len(w.syms); k++ {
				p := pairKey(w.syms[k], w.syms[k+1])
				counts[p] -= w.count
				changed[p] = true
			}
			out := w.syms[:0]
			for k := 0; k < len(w.syms); k++ {
				if k+1 < len(w.syms) && w.syms[k] == a && w.syms[k+1] == b {
					out = append(out, id)
					k++
				} else {
					out = append(out, w.syms[k])
				}
			}
			w.syms = out
			for k := 0; k+1 < len(w.syms); k++ {
				p := pairKey(w.syms[k], w.syms[k+1])
				counts[p] += w.count
				changed[p] = true
				if w.syms[k] == id || w.syms[k+1] == id {
					where[p] = append(where[p], wi)
				}
			}
		}
		delete(where, top.pair)
		for p := range changed {
			if c := counts[p]; c > 0 {
				heap.Push(&q, pairCount{pair: p, count: c})
			} else {
				delete(counts, p)
			}
		}
	}
	return writeTrained(tokens, merges, special)
}

type pairCount struct {
	pair  uint64
	count int64
}

// pairQueue pops the most frequent pair, the smallest pair on ties.
type pairQueue []pairCount

func (q pairQueue) Len() int { return len(q) }
func (q pairQueue) Less(i, j int) bool {
	if q[i].count != q[j].count {
		return q[i].count > q[j].count
	}
	return q[i].pair < q[j].pair
}
func (q pairQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pairQueue) Push(x any)   { *q = append(*q, x.(pairCount)) }
func (q *pairQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

// writeTrained lays out a trained vocabulary as tokenizer.json in the shape of
// Llama 3's (Split + ByteLevel pre-tokenizer, BOS post-processor, ByteLevel
// decoder), plus a tokenizer_config.json naming BOS, EOS and a chat template.
func writeTrained(tokens [][]byte, merges [][2]int32, special []string) ([]byte, []byte, error) {
	spell := make([]string, len(tokens))
	for i, t := range tokens {
		spell[i] = byteLevelEncode(string(t))
	}
	var buf bytes.Buffer
	str := func(s string) {
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	for i, s := range special {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, "\n    {\"id\": %d, \"content\": ", len(tokens)+i)
		str(s)
		buf.WriteString(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}")
	}
	buf.WriteString("\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": ")
	str(llama3Pattern)
	buf.WriteString("}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n")
	bos := special[0]
	bosID := len(tokens)
	buf.WriteString("  \"post_processor\": {\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true}, {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": ")
	str(bos)
	buf.WriteString(", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [{\"SpecialToken\": {\"id\": ")
	str(bos)
	buf.WriteString(", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": ")
	str(bos)
	buf.WriteString(", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {")
	str(bos)
	fmt.Fprintf(&buf, ": {\"id\": ")
	str(bos)
	fmt.Fprintf(&buf, ", \"ids\": [%d], \"tokens\": [", bosID)
	str(bos)
	buf.WriteString("]}}}]},\n")
	buf.WriteString("  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n")
	buf.WriteString("  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n    \"vocab\": {")
	for i, s := range spell {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n      ")
		str(s)
		fmt.Fprintf(&buf, ": %d", i)
	}
	buf.WriteString("\n    },\n    \"merges\": [")
	for i, m := range merges {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n      ")
		str(spell[m[0]] + " " + spell[m[1]])
	}
	buf.WriteString("\n    ]\n  }\n}\n")

	eos := bos
	if len(special) > 1 {
		eos = special[1]
	}
	cfg, err := json.MarshalIndent(map[string]any{
		"bos_token":        bos,
		"eos_token":        eos,
		"chat_template":    trainChatTemplate,
		"model_max_length": 1 << 20,
		"tokenizer_class":  "PreTrainedTokenizerFast",
	}, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), append(cfg, '\n'), nil
}
