package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tokenizer"
)

func init() {
	register("generate", "generate tokens from a prompt with a KV cache policy", runGenerate)
}

// generateOutput is the --format json answer: one object per run.
type generateOutput struct {
	Model                  string  `json:"model"`
	Policy                 string  `json:"policy"`
	PromptTokens           int     `json:"prompt_tokens"`
	IDs                    []int   `json:"ids"`
	StopReason             string  `json:"stop_reason"`
	PrefillSeconds         float64 `json:"prefill_seconds"`
	DecodeSeconds          float64 `json:"decode_seconds"`
	PrefillTokensPerSecond float64 `json:"prefill_tokens_per_second"`
	DecodeTokensPerSecond  float64 `json:"decode_tokens_per_second,omitempty"`
	// Footprint is what the cache's meter measured (docs/METHODS.md §1.1).
	Footprint footprint.Report `json:"footprint"`
}

func runGenerate(args []string) (err error) {
	fs := newFlags("generate")
	dir := fs.String("model", "", "model folder (config.json and safetensors weights; default: the built-in model)")
	promptIDs := fs.String("prompt-ids", "", "prompt as comma-separated token ids")
	promptText := fs.String("prompt", "", "prompt text, encoded with the model folder's tokenizer.json (output is then text)")
	chat := fs.Bool("chat", false, "with --prompt: wrap it as a user turn in the folder's chat template")
	addSpecial := fs.Bool("add-special", true, "with --prompt: add the tokenizer's special tokens (BOS), as its post-processor says (the built-in model was trained with BOS first, as kvfoot eval prompts it)")
	maxTokens := fs.Int("max-tokens", 64, "tokens to generate at most")
	chunk := fs.Int("chunk", 0, "pre-fill chunk size in tokens (0: the whole prompt at once)")
	policy := fs.String("policy", "full", "KV cache policy spec, e.g. full or streaming:sink=4,window=64")
	greedy := fs.Bool("greedy", false, "pick the most likely token (the default when --temperature is 0)")
	temperature := fs.Float64("temperature", 0, "sampling temperature (0: greedy)")
	topK := fs.Int("top-k", 0, "sample among the k most likely tokens (0: all)")
	topP := fs.Float64("top-p", 1, "sample among the most likely tokens whose probability reaches p")
	seed := fs.Uint64("seed", 0, "sampling seed")
	stop := fs.String("stop-ids", "", "comma-separated ids that end generation (default: the config's eos_token_id)")
	ignoreEOS := fs.Bool("ignore-eos", false, "do not stop at the config's eos_token_id")
	format := fs.String("format", "text", "output: text (ids as they come) or json (one object)")
	threads := addThreadsFlag(fs)
	device := deviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := setThreads(*threads); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	if *greedy && *temperature != 0 {
		return fmt.Errorf("--greedy and --temperature %g contradict each other", *temperature)
	}
	if *chunk < 0 {
		return fmt.Errorf("--chunk %d: want ≥ 0", *chunk)
	}
	if *temperature == 0 {
		for _, f := range []string{"top-k", "top-p", "seed"} {
			if isSet(fs, f) {
				return fmt.Errorf("--%s has no effect with greedy decoding: give --temperature T > 0 to sample", f)
			}
		}
	}
	if *stop != "" && *ignoreEOS {
		return fmt.Errorf("--stop-ids replaces the eos_token_id stop; --ignore-eos has nothing to ignore")
	}
	if isSet(fs, "prompt") == isSet(fs, "prompt-ids") {
		return fmt.Errorf("give exactly one of --prompt TEXT and --prompt-ids 1,2,3")
	}
	if isSet(fs, "add-special") && (*chat || !isSet(fs, "prompt")) {
		return fmt.Errorf("--add-special applies to --prompt without --chat (a chat template writes its own special tokens; --prompt-ids are used as given)")
	}
	if isSet(fs, "prompt") && *promptText == "" {
		return fmt.Errorf("--prompt is empty")
	}
	if *chat && !isSet(fs, "prompt") {
		return fmt.Errorf("--chat needs --prompt")
	}
	var prompt []int
	if !isSet(fs, "prompt") {
		if prompt, err = parseIDs("--prompt-ids", *promptIDs); err != nil {
			return err
		}
	}
	m, tok, modelDir, err := loadModelWith(*dir, isSet(fs, "prompt"))
	if err != nil {
		return err
	}
	defer m.Close()
	*dir = modelDir
	if tok != nil {
		if prompt, err = encodePrompt(tok, *promptText, *chat, *addSpecial); err != nil {
			return err
		}
	}
	dev, err := openDevice(*device)
	if err != nil {
		return err
	}
	defer dev.close()
	cacheOpts, err := dev.load(m)
	if err != nil {
		return err
	}
	defer recoverFault(&err)
	meter := footprint.NewMeter(m.Config.Layers, m.Config.KVHeads)
	cache, err := kv.New(kv.Shape(m.Shape()), *policy, append(cacheOpts, kv.WithObserver(meter))...)
	if err != nil {
		return fmt.Errorf("--policy: %w", err)
	}
	opts := model.GenerateOptions{
		MaxTokens: *maxTokens,
		Chunk:     *chunk,
		Sampling:  model.Sampling{Temperature: *temperature, TopK: *topK, TopP: *topP, Seed: *seed},
	}
	switch {
	case *stop != "":
		if opts.Stop, err = parseIDs("--stop-ids", *stop); err != nil {
			return err
		}
		for _, id := range opts.Stop {
			if id >= m.Config.Vocab {
				return fmt.Errorf("--stop-ids: %d is outside the model's vocabulary [0, %d)", id, m.Config.Vocab)
			}
		}
	case !*ignoreEOS:
		opts.Stop = m.Config.EOS
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var stream *tokenizer.Stream // text output for a --prompt
	if *format == "text" {
		opts.OnToken = func(id int) bool {
			out.WriteString(strconv.Itoa(id))
			out.WriteByte(' ')
			out.Flush()
			return true
		}
		if tok != nil {
			stream = tok.NewStream(true)
			opts.OnToken = func(id int) bool {
				out.WriteString(stream.Next(id))
				out.Flush()
				return true
			}
		}
	}
	res, err := model.Generate(m, cache, prompt, opts)
	if err != nil {
		return err
	}
	if *format == "text" {
		if stream != nil {
			out.WriteString(stream.Flush())
		}
		out.WriteByte('\n')
		return nil
	}
	o := generateOutput{
		Model: *dir, Policy: *policy, PromptTokens: res.PromptTokens, IDs: res.IDs, StopReason: res.StopReason,
		PrefillSeconds: res.Prefill.Seconds(), DecodeSeconds: res.Decode.Seconds(),
		Footprint: meter.Report(false),
	}
	if o.PrefillSeconds > 0 {
		o.PrefillTokensPerSecond = float64(res.PromptTokens) / o.PrefillSeconds
	}
	if len(res.IDs) > 1 && o.DecodeSeconds > 0 {
		o.DecodeTokensPerSecond = float64(len(res.IDs)-1) / o.DecodeSeconds
	}
	enc := json.NewEncoder(out)
	return enc.Encode(o)
}

// encodePrompt encodes --prompt with the model folder's tokenizer; with chat,
// as a user turn of the folder's chat template (which writes BOS itself).
func encodePrompt(tok *tokenizer.Tokenizer, text string, chat, addSpecial bool) ([]int, error) {
	if !chat {
		if !addSpecial {
			return tok.Encode(text), nil
		}
		return tok.EncodeWithSpecial(text), nil
	}
	s, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: text}}, true)
	if err != nil {
		return nil, fmt.Errorf("--chat: %w", err)
	}
	return tok.Encode(s), nil
}
