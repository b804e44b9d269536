package tokenizer_test

import (
	"fmt"

	"github.com/kvfoot/kvfoot/tokenizer"
)

func Example() {
	tok, err := tokenizer.Load("../testdata/tokenizers/llama3_1")
	if err != nil {
		panic(err)
	}
	ids := tok.EncodeWithSpecial("Hello, world!")
	fmt.Println(ids, tok.BOS())
	fmt.Printf("%q\n", tok.DecodeSkipSpecial(ids))
	prompt, _ := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: "Hi"}}, true)
	fmt.Printf("%q\n", prompt)
	// Output:
	// [128000 9906 11 1917 0] 128000
	// "Hello, world!"
	// "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
}
