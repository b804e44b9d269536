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
		})
	}
}
