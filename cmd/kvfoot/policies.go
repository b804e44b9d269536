package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/kvfoot/kvfoot/kv"
)

func init() {
	register("policies", "list the KV cache policies of the spec grammar, with their keys, defaults and ranges", runPolicies)
}

func runPolicies(args []string) error {
	fs := newFlags("policies")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (policies takes no arguments)", fs.Args())
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "A spec is name:key=value,... ; at most one token selector, one head role and one storage, joined by '+'.")
	for _, r := range kv.Registry() {
		fmt.Fprintf(w, "\n%s (%s): %s\n  example: %s\n", r.Name, r.Kind, r.Doc, r.Example)
		for _, p := range r.Params {
			fmt.Fprintf(w, "  %s\t%s\t%s\n", p.Key, paramRange(p), p.Doc)
		}
	}
	return w.Flush()
}

// paramRange says what values a key takes and what it defaults to.
func paramRange(p kv.Param) string {
	s := p.Range()
	switch {
	case p.Required:
		s += ", required"
	case p.Default != "":
		s += ", default " + p.Default
	}
	return s
}
