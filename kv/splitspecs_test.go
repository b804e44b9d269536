package kv

import (
	"reflect"
	"testing"
)

func TestSplitSpecs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"full", []string{"full"}},
		{"full,streaming:sink=4,window=64", []string{"full", "streaming:sink=4,window=64"}},
		{"streaming:sink=4,window=64, snapkv:sparsity=0.5,chunked=true", []string{"streaming:sink=4,window=64", "snapkv:sparsity=0.5,chunked=true"}},
		{"headmask:masks=m.tsv,sparsity=0.7+snapkv:sparsity=0.5,chunked=true+quant:bits=4,full",
			[]string{"headmask:masks=m.tsv,sparsity=0.7+snapkv:sparsity=0.5,chunked=true+quant:bits=4", "full"}},
		{" , ,", nil},
	} {
		if got := SplitSpecs(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitSpecs(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, s := range SplitSpecs(tc.in) {
			if _, err := New(Shape{Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4}, s); err != nil && s != "headmask:masks=m.tsv,sparsity=0.7+snapkv:sparsity=0.5,chunked=true+quant:bits=4" {
				t.Errorf("spec %q from %q does not parse: %v", s, tc.in, err)
			}
		}
	}
}
