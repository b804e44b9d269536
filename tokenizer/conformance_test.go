package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// families are the tokenizers under testdata/tokenizers, with reference
// encodings made by the Hugging Face tokenizers library (tokenizers 0.23.2,
// tools/oracle/tokenizer_reference.py).
var families = []string{"llama3_1", "qwen3", "llama2"}

var (
	loadOnce  sync.Map // family -> *loaded
	testdataT = filepath.Join("..", "testdata", "tokenizers")
)

type loaded struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// family loads a test tokenizer once per test binary.
func family(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	v, _ := loadOnce.LoadOrStore(name, &loaded{})
	l := v.(*loaded)
	l.once.Do(func() { l.tok, l.err = Load(filepath.Join(testdataT, name)) })
	if l.err != nil {
		tb.Fatal(l.err)
	}
	return l.tok
}

type reference struct {
	Text           string `json:"text"`
	IDs            []int  `json:"ids"`
	IDsWithSpecial []int  `json:"ids_with_special"`
	Decoded        string `json:"decoded"`
}

func readReferences(tb testing.TB, path string) []reference {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []reference
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var r reference
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) == 0 {
		tb.Fatalf("%s: no references", path)
	}
	return out
}

func TestConformance(t *testing.T) {
	for _, fam := range families {
		t.Run(fam, func(t *testing.T) {
			tok := family(t, fam)
			refs := readReferences(t, filepath.Join(testdataT, fam, "encodings.jsonl"))
			// extra.jsonl: testdata/tokenizers/extra_strings.json through
			// tools/oracle/tokenizer_reference.py, where it has been made.
			if extra := filepath.Join(testdataT, fam, "extra.jsonl"); fileExists(extra) {
				refs = append(refs, readReferences(t, extra)...)
			}
			checkReferences(t, tok, refs)
		})
	}
}

// checkReferences compares tok's Encode, EncodeWithSpecial and Decode with the
// reference encodings (the tokenizers library's), stopping after ten mismatches.
func checkReferences(t *testing.T, tok *Tokenizer, refs []reference) {
	t.Helper()
	bad := 0
	for i, r := range refs {
		if got := tok.Encode(r.Text); !slices.Equal(got, r.IDs) {
			bad++
			t.Errorf("#%d Encode(%q)\n got %v\nwant %v", i, r.Text, got, r.IDs)
		}
		if got := tok.EncodeWithSpecial(r.Text); !slices.Equal(got, r.IDsWithSpecial) {
			bad++
			t.Errorf("#%d EncodeWithSpecial(%q)\n got %v\nwant %v", i, r.Text, got, r.IDsWithSpecial)
		}
		if got := tok.Decode(r.IDs); got != r.Decoded {
			bad++
			t.Errorf("#%d Decode(%v)\n got %q\nwant %q", i, r.IDs, got, r.Decoded)
		}
		if bad > 10 {
			t.Fatal("too many mismatches")
		}
	}
}

// checkSpecials compares a GGUF tokenizer's BOS, EOS and chat template with
// tokenizer.json's.
func checkSpecials(t *testing.T, tok, hf *Tokenizer) {
	t.Helper()
	if tok.BOS() != hf.BOS() || tok.EOS() != hf.EOS() || tok.ChatTemplate() != hf.ChatTemplate() {
		t.Errorf("BOS %d EOS %d, tokenizer.json's %d %d (chat templates equal: %v)", tok.BOS(), tok.EOS(), hf.BOS(), hf.EOS(),
			tok.ChatTemplate() == hf.ChatTemplate())
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestTrainedFixture: testdata/tokenizers/trained4096 was written by
// `kvfoot tokenizer train`; check_ids*.jsonl are kvfoot's encodings of
// check.jsonl, which tools/oracle/bpe_check.py compares with the tokenizers
// library. This test keeps kvfoot's side of that comparison from drifting.
func TestTrainedFixture(t *testing.T) {
	dir := filepath.Join(testdataT, "trained4096")
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	texts := readReferences(t, filepath.Join(dir, "check.jsonl"))
	for _, c := range []struct {
		file    string
		special bool
	}{{"check_ids.jsonl", false}, {"check_ids_special.jsonl", true}} {
		want := readReferences(t, filepath.Join(dir, c.file))
		if len(want) != len(texts) {
			t.Fatalf("%s: %d lines for %d texts", c.file, len(want), len(texts))
		}
		for i, r := range texts {
			if got := tok.AppendEncode(nil, r.Text, c.special); !slices.Equal(got, want[i].IDs) {
				t.Fatalf("%s line %d: %q\n got %v\nwant %v", c.file, i+1, r.Text, got, want[i].IDs)
			}
			if !c.special {
				if got := tok.Decode(want[i].IDs); got != r.Text {
					t.Fatalf("line %d: Decode = %q, want %q", i+1, got, r.Text)
				}
			}
		}
	}
}
