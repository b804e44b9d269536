package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every bad flag, stray argument or impossible combination is refused with an error
// naming it, before any work.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	tok := "../../eval/testdata/bytes_tokenizer.json"
	out := filepath.Join(dir, "o.safetensors")
	for _, c := range []struct {
		name string
		run  func([]string) error
		args []string
		want string
	}{
		{"generate stray", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "extra", "--max-tokens", "2"}, `unexpected arguments ["extra" "--max-tokens" "2"]`},
		{"generate no prompt", runGenerate, []string{"--model", gqa}, "exactly one of --prompt TEXT and --prompt-ids"},
		{"generate both prompts", runGenerate, []string{"--model", gqa, "--prompt", "a", "--prompt-ids", "1"}, "exactly one of"},
		{"generate empty prompt", runGenerate, []string{"--model", gqa, "--prompt", ""}, "--prompt is empty"},
		{"generate top-k greedy", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--top-k", "5"}, "--top-k has no effect with greedy"},
		{"generate seed greedy", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--seed", "5"}, "--seed has no effect"},
		{"generate add-special ids", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--add-special=false"}, "--add-special applies to --prompt"},
		{"generate stop and ignore", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--stop-ids", "2", "--ignore-eos"}, "--ignore-eos"},
		{"generate stop outside vocab", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--stop-ids", "512"}, "--stop-ids: 512 is outside the model's vocabulary [0, 512)"},
		{"generate threads", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--threads", "-2"}, "--threads -2"},
		{"generate past context", runGenerate, []string{"--model", gqa, "--prompt-ids", "1,2", "--max-tokens", "2000"}, "1024"},
		{"logits stray", runLogits, []string{"--model", gqa, "--ids", "1", "--out", out, "x"}, `unexpected arguments ["x"]`},
		{"logits out is a folder", runLogits, []string{"--model", gqa, "--ids", "1", "--out", dir}, "is a folder"},
		{"logits out folder missing", runLogits, []string{"--model", gqa, "--ids", "1", "--out", filepath.Join(dir, "no", "x")}, "no folder"},
		{"logits past context", runLogits, []string{"--model", gqa, "--ids", strings.Repeat("1,", 1024) + "1", "--out", out}, "1024"},
		{"eval lengths overflow", runEval, []string{"--model", gqa, "--tokenizer", tok, "--tasks", "json_kv", "--lengths", "9007199254740993k"}, "longer than the 1048576 tokens"},
		{"eval threads", runEval, []string{"--model", gqa, "--tokenizer", tok, "--tasks", "json_kv", "--lengths", "900", "--threads", "99999"}, "--threads 99999"},
		{"eval tokenizer beyond vocab", runEval, []string{"--model", gqa, "--tokenizer", "../../models/kvfoot-small/tokenizer.json", "--tasks", "json_kv", "--lengths", "900"}, "4096 tokens, more than the model's vocabulary of 512"},
		{"eval duplicate method", runEval, []string{"--model", gqa, "--tokenizer", tok, "--tasks", "json_kv", "--lengths", "900", "--methods", "full,streaming:sink=4,window=8,full"}, "--methods: full is given twice"},
		{"eval duplicate task", runEval, []string{"--model", gqa, "--tokenizer", tok, "--tasks", "all,json_kv", "--lengths", "900"}, "--tasks: json_kv is given twice"},
		{"eval duplicate length", runEval, []string{"--model", gqa, "--tokenizer", tok, "--tasks", "json_kv", "--lengths", "1k,1024"}, "--lengths: 1024 is given twice"},
		{"perplexity chunk", runPerplexity, []string{"--model", gqa, "--chunk", "-1"}, "--chunk -1"},
		{"perplexity length", runPerplexity, []string{"--model", gqa, "--length", "1"}, "--length 1"},
		{"bench past context", runBench, []string{"--model", gqa, "--ctx", "1000", "--decode", "30"}, "--ctx 1000 + --decode 30 tokens pass the model's context of 1024"},
		{"bench threads", runBench, []string{"--random", "smollm2-135m", "--threads", "1,99999"}, "--threads 99999"},
		{"footprint huge", runFootprint, []string{"--prompt-len", "1000000000000"}, "--prompt-len 1000000000000"},
		{"footprint sum", runFootprint, []string{"--prompt-len", "67108864", "--response-len", "1"}, "--prompt-len 67108864 + --response-len 1"},
		{"footprint sparsity", runFootprint, []string{"--prompt-len", "10", "--kv-sparsity", "NaN"}, "--kv-sparsity NaN"},
		{"footprint negative", runFootprint, []string{"--prompt-len", "10", "--window", "-1"}, "--window -1"},
		{"footprint locret sink", runFootprint, []string{"--prompt-len", "10", "--locret", "--sink", "4"}, "--sink has no effect with --locret"},
		{"footprint stabilizers", runFootprint, []string{"--prompt-len", "10", "--stabilizers", "4"}, "--stabilizers has no effect without --locret"},
		{"footprint layers", runFootprint, []string{"--prompt-len", "10", "--exact", "--layers", "5000"}, "--layers 5000: want 0 (SnapKV) to 4096"},
		{"footprint beta", runFootprint, []string{"--prompt-len", "10", "--exact", "--layers", "4", "--beta", "-1"}, "--beta -1"},
		{"footprint dtype", runFootprint, []string{"--prompt-len", "10", "--dtype", "f32"}, "--dtype has no effect without --model"},
		{"tasks list stray", runTasks, []string{"list", "x"}, `unexpected arguments ["x"]`},
		{"tasks show index", runTasks, []string{"show", "--tokenizer", tok, "--task", "json_kv", "--length", "900", "--index", "-1"}, "index -1"},
		{"tasks show huge", runTasks, []string{"show", "--tokenizer", tok, "--task", "json_kv", "--length", "999999999999"}, "longer than 1048576 tokens"},
		{"tasks show queries", runTasks, []string{"show", "--tokenizer", tok, "--task", "json_kv", "--length", "900", "--queries", "3"}, "--queries applies to --train"},
		{"tasks show queries negative", runTasks, []string{"show", "--tokenizer", tok, "--task", "json_kv", "--length", "900", "--train", "--queries", "-3"}, "--queries -3"},
		{"tasks dump jitter", runTasks, []string{"dump", "--tokenizer", tok, "--tasks", "json_kv", "--lengths", "900", "--count", "1", "--out", filepath.Join(dir, "d.jsonl"), "--jitter", "1"}, "--jitter 1"},
		{"tasks dump workers", runTasks, []string{"dump", "--tokenizer", tok, "--tasks", "json_kv", "--lengths", "900", "--count", "1", "--out", filepath.Join(dir, "d.jsonl"), "--workers", "-1"}, "--workers -1"},
		{"prulong threads", runPruLong, []string{"--model", gqa, "--threads", "-1", "--out", filepath.Join(dir, "p"), "--data", filepath.Join(dir, "none.jsonl")}, "--threads -1"},
		{"duo threads", runDuo, []string{"--model", gqa, "--threads", "99999", "--out", filepath.Join(dir, "p"), "--data", filepath.Join(dir, "none.jsonl")}, "--threads 99999"},
		{"prulong bench threads", runPruLong, []string{"--model", gqa, "--bench", "--bench-threads", "1,99999"}, "--bench-threads 99999"},
		{"prulong stray", runPruLong, []string{"--model", gqa, "--out", filepath.Join(dir, "p"), "x", "--steps", "1"}, `unexpected arguments ["x" "--steps" "1"]`},
		{"prulong seed wraps", runPruLong, []string{"--model", gqa, "--out", filepath.Join(dir, "p"), "--seed", "18446744073709551615"}, "--seed 18446744073709551615: want at most 18446744073709550615"},
		{"prulong out is a file", runPruLong, []string{"--model", gqa, "--out", "../../README.md"}, "--out ../../README.md is a file"},
		{"prulong max minutes", runPruLong, []string{"--model", gqa, "--out", filepath.Join(dir, "p"), "--max-minutes", "NaN"}, "--max-minutes NaN"},
		{"tokenizer train huge vocab", runTokenizer, []string{"train", "--vocab-size", "99999999999", "--out", filepath.Join(dir, "t.json"), tok}, "--vocab-size 99999999999"},
		{"tokenizer train missing file", runTokenizer, []string{"train", "--out", filepath.Join(dir, "t.json"), filepath.Join(dir, "none.txt")}, "none.txt"},
		{"tokenizer train flag after files", runTokenizer, []string{"train", "--out", filepath.Join(dir, "t.json"), tok, "--vocab-size", "300"}, "--vocab-size after the training files"},
		{"tokenizer train out is config", runTokenizer, []string{"train", "--out", filepath.Join(dir, "tokenizer_config.json"), tok}, "beside --out"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := capture(t, func() error { return c.run(c.args) })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused commands left %d files", len(ents))
	}
}

// No command replaces a file it did not create unless told to with --force.
func TestNoOverwriteWithoutForce(t *testing.T) {
	dir := t.TempDir()
	mine := []byte("the user's own file\n")
	put := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, mine, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	untouched := func(p string) {
		t.Helper()
		if b, err := os.ReadFile(p); err != nil || string(b) != string(mine) {
			t.Errorf("%s was replaced (%v)", p, err)
		}
	}
	train := filepath.Join(dir, "train.txt")
	os.WriteFile(train, []byte(strings.Repeat("the quick brown fox jumps over the lazy dog\n", 50)), 0o644)
	tok := "../../eval/testdata/bytes_tokenizer.json"

	logits := put("l.safetensors")
	if err := runLogits([]string{"--model", gqa, "--ids", "1,2", "--out", logits}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("logits over an existing file: %v", err)
	}
	untouched(logits)
	if err := runLogits([]string{"--model", gqa, "--ids", "1,2", "--out", logits, "--force"}); err != nil {
		t.Errorf("logits --force: %v", err)
	}

	// tokenizer train next to an existing tokenizer_config.json
	cfg := put("tokenizer_config.json")
	tjson := filepath.Join(dir, "tokenizer.json")
	_, err := capture(t, func() error { return runTokenizer([]string{"train", "--vocab-size", "300", "--out", tjson, train}) })
	if err == nil || !strings.Contains(err.Error(), "tokenizer_config.json exists") {
		t.Errorf("tokenizer train beside an existing tokenizer_config.json: %v", err)
	}
	untouched(cfg)
	if _, err := os.Stat(tjson); err == nil {
		t.Error("tokenizer.json written although the command was refused")
	}
	if _, err := capture(t, func() error {
		return runTokenizer([]string{"train", "--vocab-size", "300", "--out", tjson, "--force", train})
	}); err != nil {
		t.Errorf("tokenizer train --force: %v", err)
	}

	prof := put("cpu.pprof")
	benchArgs := []string{"--model", gqa, "--ctx", "8", "--threads", "1", "--reps", "1", "--decode", "1", "--cpuprofile", prof}
	if _, err := capture(t, func() error { return runBench(benchArgs) }); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("bench --cpuprofile over an existing file: %v", err)
	}
	untouched(prof)
	if _, err := capture(t, func() error { return runBench(append(benchArgs, "--force")) }); err != nil {
		t.Errorf("bench --cpuprofile --force: %v", err)
	}
	if b, _ := os.ReadFile(prof); len(b) == 0 || string(b) == string(mine) {
		t.Errorf("bench --cpuprofile --force wrote no profile")
	}

	// prulong and duo: a folder with a user's masks TSV and log
	docs := filepath.Join(dir, "docs.jsonl")
	os.WriteFile(docs, []byte(`{"ids":[`+strings.TrimSuffix(strings.Repeat("7,", 40), ",")+`],"answer_spans":[[20,30]]}`+"\n"), 0o644)
	for _, c := range []struct {
		run  func([]string) error
		file string
	}{{runPruLong, "masks_sp0.5.tsv"}, {runDuo, "log.jsonl"}} {
		out := filepath.Join(dir, "run-"+c.file)
		os.Mkdir(out, 0o755)
		p := filepath.Join(out, c.file)
		os.WriteFile(p, mine, 0o644)
		args := []string{"--model", gqa, "--data", docs, "--steps", "1", "--seq-len", "32", "--sink", "2", "--window", "8", "--out", out}
		if _, err := capture(t, func() error { return c.run(args) }); err == nil || !strings.Contains(err.Error(), "--force") {
			t.Errorf("training into a folder with the user's %s: %v", c.file, err)
		}
		untouched(p)
		if _, err := capture(t, func() error { return c.run(append(args, "--force")) }); err != nil {
			t.Errorf("training with --force: %v", err)
		}
		// and the run's own folder is resumed (here: already finished) without --force
		if _, err := capture(t, func() error { return c.run(args) }); err != nil {
			t.Errorf("training again into its own folder: %v", err)
		}
	}

	for _, format := range []string{"jsonl", "bin"} {
		o := filepath.Join(dir, "docs."+format)
		existing := o
		if format == "bin" {
			existing = put("docs.mask")
		} else {
			put("docs.jsonl")
		}
		args := []string{"dump", "--tokenizer", tok, "--tasks", "json_kv", "--lengths", "600", "--count", "1", "--out", o, "--format", format}
		if _, err := capture(t, func() error { return runTasks(args) }); err == nil || !strings.Contains(err.Error(), "--force") {
			t.Errorf("tasks dump --format %s over an existing file: %v", format, err)
		}
		untouched(existing)
		if _, err := capture(t, func() error { return runTasks(append(args, "--force")) }); err != nil {
			t.Errorf("tasks dump --format %s --force: %v", format, err)
		}
	}
}
