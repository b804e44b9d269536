package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/kvfoot/kvfoot/eval"
)

func init() {
	register("report", "redo the report (tables, CSV, JSON, plots) of a results folder that kvfoot eval --out wrote", runReport)
}

func runReport(args []string) (err error) {
	fs := newFlags("report")
	force := fs.Bool("force", false, "replace report files in DIR that kvfoot did not write (or that were changed since)")
	format := fs.String("format", "text", "text (the critical footprint table) or json (the report as the last line of standard output)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kvfoot report [--force] [--format json] DIR\n\nReads DIR/study.json and DIR's results (results.jsonl and the shards' files under DIR/shards, each\nsample once, as kvfoot eval --out DIR and --shard write them) and writes DIR/report.md, report.json,\nresults.csv, critical.csv and the plots (PNG and SVG): the report one process running the study writes.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one results folder (kvfoot report DIR), got %d arguments", fs.NArg())
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	dir := fs.Arg(0)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s: not a results folder (kvfoot eval --out DIR writes one)", dir)
	}
	out, err := eval.OpenFolder(dir, eval.Exclusive, *force)
	if err != nil {
		return err
	}
	defer out.Close(false)
	return writeReport(out, *format)
}

// writeReport redoes the report of a study folder from its settings and results.
func writeReport(out *eval.Folder, format string) error {
	f, samples, err := eval.Reopen(out.Dir)
	if err != nil {
		return err
	}
	rep := eval.Analyze(f, samples)
	if err := eval.WriteStudy(out, f, rep); err != nil {
		return err
	}
	if format == "json" {
		return printReport(rep, out, format)
	}
	fmt.Printf("Critical KV footprint at %d tokens:\n\n%s\nReport: %s\n", slices.Max(rep.Lengths), rep.Table(), out.Path("report.md"))
	return nil
}
