package main

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/kvfoot/kvfoot/eval"
)

func init() {
	register("report", "redo the report (tables, CSV, JSON, plots) of a results folder that kvfoot eval --out wrote", runReport)
}

func runReport(args []string) error {
	fs := newFlags("report")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kvfoot report DIR\n\nReads DIR/study.json and DIR/results.jsonl (as kvfoot eval --out DIR writes them) and writes\nDIR/report.md, report.json, results.csv, critical.csv and the plots (PNG and SVG).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one results folder (kvfoot report DIR), got %d arguments", fs.NArg())
	}
	dir := fs.Arg(0)
	f, samples, err := eval.Reopen(dir)
	if err != nil {
		return err
	}
	rep := eval.Analyze(f, samples)
	if err := rep.WriteReport(dir); err != nil {
		return err
	}
	fmt.Printf("Critical KV footprint at %d tokens:\n\n%s\nReport: %s\n", slices.Max(rep.Lengths), rep.Table(), filepath.Join(dir, "report.md"))
	return nil
}
