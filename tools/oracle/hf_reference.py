"""Reference outputs from Hugging Face transformers, to test a re-implementation against.

Run where torch and transformers are installed:

    python3 hf_reference.py build OUTDIR [SEED] [--only NAME,NAME|arch21]
                                                     # random-weight checkpoints of several Llama-family configs
                                                     # (--only: just those; arch21: the Qwen3, Gemma 2/3 and
                                                     # sliding-window ones of issue 21)
    python3 hf_reference.py run MODEL_DIR IDS_FILE OUT.safetensors [--chunk N]
                                                     # logits of any checkpoint for given ids

`build` writes, for every config below, a folder with config.json, model.safetensors and
reference.safetensors holding: input_ids (int64 [T]), logits (float32 [T, vocab]),
greedy_prompt (int64 [64]) and greedy_output (int64 [24], greedy continuation, no EOS stop).
Logits are computed in float32 from the stored weights (bf16 weights are upcast), which is
what a float32 engine should reproduce to about 1e-4. Weights are drawn with a large initializer range and non-trivial norm weights and biases, so
that attention is peaked and a missing norm, bias or RoPE detail changes the logits visibly.
Edit CONFIGS to cover more cases; keep the checkpoints small (a few MB each). A config's
optional sixth element holds options: eager (reference with the eager attention, which
implements soft-capping and sliding windows literally), expect (config attributes asserted
after the reload, so that a renamed field fails here rather than in kvfoot's tests).

bf16 Gemma: transformers scales the embeddings by sqrt(hidden) as a tensor of the model's
dtype (bf16 when the model runs in bf16); the float32 reload would not round it, so the
reference rounds it to bf16 as the bf16 model does, and kvfoot does the same.
"""
import json, os, sys
import torch
import transformers as T
from safetensors.torch import save_file

CONFIGS = {
    # name: (config class, model class, dtype, sequence length, config fields)
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", torch.float32, 256, dict(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5,
        max_position_embeddings=1024, tie_word_embeddings=False)),
    "llama3-rope-scaling": ("LlamaConfig", "LlamaForCausalLM", torch.float32, 256, dict(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0, rms_norm_eps=1e-5,
        max_position_embeddings=2048, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 128})),
    "qwen2-bias": ("Qwen2Config", "Qwen2ForCausalLM", torch.float32, 200, dict(
        vocab_size=640, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=1000000.0, rms_norm_eps=1e-6,
        max_position_embeddings=2048, tie_word_embeddings=True)),
    "mistral-bf16": ("MistralConfig", "MistralForCausalLM", torch.bfloat16, 200, dict(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, rope_theta=10000.0, rms_norm_eps=1e-5,
        max_position_embeddings=2048, tie_word_embeddings=False, sliding_window=None)),
    # an explicit head_dim (32) different from hidden/heads (16), with Llama's attention_bias
    "llama-headdim-bias": ("LlamaConfig", "LlamaForCausalLM", torch.float32, 160, dict(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, attention_bias=True,
        rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=1024,
        tie_word_embeddings=False)),
    # SmolLM-style: multi-head attention, tied embeddings, linear rope scaling
    "llama-mha-linear": ("LlamaConfig", "LlamaForCausalLM", torch.float32, 160, dict(
        vocab_size=448, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=3, num_key_value_heads=3, rope_theta=10000.0, rms_norm_eps=1e-5,
        max_position_embeddings=1024, tie_word_embeddings=True,
        rope_scaling={"rope_type": "linear", "factor": 4.0})),

    # issue 21: the architectures people run in 2026, windows shorter than the sequence
    # Qwen3: per-head q/k RMSNorm, explicit head_dim (32, not hidden/heads = 16), untied
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", torch.float32, 200, dict(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, rope_theta=1000000.0,
        rms_norm_eps=1e-6, max_position_embeddings=1024, tie_word_embeddings=False),
        dict(eager=True, expect=dict(head_dim=32, layer_types=["full_attention"] * 2))),
    # Qwen3 tied, sliding window on the layers from max_window_layers on (1 and 2)
    "qwen3-window": ("Qwen3Config", "Qwen3ForCausalLM", torch.float32, 160, dict(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, rope_theta=10000.0,
        rms_norm_eps=1e-6, max_position_embeddings=1024, tie_word_embeddings=True,
        use_sliding_window=True, sliding_window=40, max_window_layers=1),
        dict(eager=True, expect=dict(sliding_window=40,
             layer_types=["full_attention", "sliding_attention", "sliding_attention"]))),
    # Gemma 2: (1 + w) norms, scaled embeddings, GeGLU, sandwich norms, both soft caps
    # small enough to bite, query_pre_attn_scalar unlike head_dim, alternating layers
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", torch.float32, 160, dict(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24,
        sliding_window=48, attn_logit_softcapping=3.0, final_logit_softcapping=4.0,
        hidden_activation="gelu_pytorch_tanh", rope_theta=10000.0, rms_norm_eps=1e-6,
        max_position_embeddings=1024, tie_word_embeddings=True),
        dict(eager=True, expect=dict(sliding_window=48, attn_logit_softcapping=3.0, final_logit_softcapping=4.0,
             layer_types=["sliding_attention", "full_attention"] * 2))),
    # Gemma 3 text: q/k norms, local layers with their own RoPE base, linear scaling
    # on the global layers only
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", torch.float32, 200, dict(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=20,
        sliding_window=40, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
        max_position_embeddings=1024, tie_word_embeddings=True,
        final_logit_softcapping=None, attn_logit_softcapping=None,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
        dict(eager=True, expect=dict(sliding_window=40,
             layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2))),
    # Gemma 3 in bf16, hidden 72: sqrt(72) = 8.485 rounds to 8.5 in bf16
    "gemma3-bf16": ("Gemma3TextConfig", "Gemma3ForCausalLM", torch.bfloat16, 160, dict(
        vocab_size=384, hidden_size=72, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
        sliding_window=24, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
        max_position_embeddings=1024, tie_word_embeddings=True,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
        dict(eager=True, bf16_embed_scale=True, expect=dict(sliding_window=24))),
    # Mistral's sliding window on every layer
    "mistral-window": ("MistralConfig", "MistralForCausalLM", torch.float32, 160, dict(
        vocab_size=448, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5,
        max_position_embeddings=1024, tie_word_embeddings=False, sliding_window=32),
        dict(eager=True, expect=dict(sliding_window=32))),
    # Qwen2 with use_sliding_window: windows on layers 1 and 2 (max_window_layers=1)
    "qwen2-window": ("Qwen2Config", "Qwen2ForCausalLM", torch.float32, 160, dict(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-6,
        max_position_embeddings=1024, tie_word_embeddings=False,
        use_sliding_window=True, sliding_window=36, max_window_layers=1),
        dict(eager=True, expect=dict(sliding_window=36,
             layer_types=["full_attention", "sliding_attention", "sliding_attention"]))),
}

ARCH21 = ["qwen3", "qwen3-window", "gemma2", "gemma3", "gemma3-bf16", "mistral-window", "qwen2-window"]


def build(outdir, seed=0, only=None):
    # the seed of each config is its index in CONFIGS, whichever are built
    for i, (name, spec) in enumerate(CONFIGS.items()):
        if only is not None and name not in only:
            continue
        cfg_cls, model_cls, dtype, seq_len, fields = spec[:5]
        opts = spec[5] if len(spec) > 5 else {}
        torch.manual_seed(seed * 1000 + i)
        cfg = getattr(T, cfg_cls)(**fields)
        cfg.initializer_range = 0.15
        model = getattr(T, model_cls)(cfg).eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                elif n.endswith("bias"):
                    p.copy_(0.1 * torch.randn_like(p))
        model = model.to(dtype)
        d = os.path.join(outdir, name)
        model.save_pretrained(d, safe_serialization=True)
        # The reference computes in float32 from the stored (possibly bf16) weights. Reload
        # them rather than calling model.float(): model.to(bf16) also rounded the RoPE
        # inverse-frequency buffer to bf16, and .float() does not undo that.
        kw = {"attn_implementation": "eager"} if opts.get("eager") else {}
        model = getattr(T, model_cls).from_pretrained(d, dtype=torch.float32, **kw).eval()
        for attr, want in opts.get("expect", {}).items():
            got = getattr(model.config, attr)
            assert got == want, f"{name}: config.{attr} = {got!r} after the reload, want {want!r}"
        if opts.get("bf16_embed_scale"):
            emb = model.get_input_embeddings()
            if torch.is_tensor(emb.embed_scale):
                with torch.no_grad():
                    emb.embed_scale.copy_(emb.embed_scale.to(torch.bfloat16).float())
            else:
                emb.embed_scale = float(torch.tensor(emb.embed_scale).to(torch.bfloat16).float())
            print(name, "embed_scale", float(emb.embed_scale))
        ids = torch.randint(0, cfg.vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(seed + 7))
        with torch.no_grad():
            logits = model(ids).logits.float()[0]
            # an explicit mask: otherwise generate infers one from pad_token_id and hides
            # every prompt token equal to it (and shifts the positions after it)
            gen = model.generate(ids[:, :64], attention_mask=torch.ones_like(ids[:, :64]), max_new_tokens=24, min_new_tokens=24, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
        save_file({"input_ids": ids[0].clone(), "logits": logits.contiguous(),
                   "greedy_prompt": ids[0, :64].clone(), "greedy_output": gen[0, 64:].clone()},
                  os.path.join(d, "reference.safetensors"), metadata={"oracle": "2"})
        print(name, "ok")


def run(model_dir, ids_file, out):
    model = T.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = [int(x) for x in open(ids_file).read().replace(",", " ").split()]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits.float()[0]
    save_file({"input_ids": torch.tensor(ids), "logits": logits.contiguous()}, out)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "build":
        argv, only = sys.argv[2:], None
        if "--only" in argv:
            k = argv.index("--only")
            names = argv[k + 1].split(",")
            argv = argv[:k] + argv[k + 2:]
            only = set(ARCH21 if names == ["arch21"] else names)
            unknown = only - set(CONFIGS)
            if unknown:
                print("unknown configs:", ", ".join(sorted(unknown)), "- known:", ", ".join(CONFIGS))
                sys.exit(2)
        build(argv[0], int(argv[1]) if len(argv) > 1 else 0, only)
    elif len(sys.argv) >= 5 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(__doc__)
        sys.exit(2)
