"""Reference outputs from Hugging Face transformers, to test a re-implementation against.

Run where torch and transformers are installed:

    python3 hf_reference.py build OUTDIR            # random-weight checkpoints of several Llama-family configs
    python3 hf_reference.py run MODEL_DIR IDS_FILE OUT.safetensors [--chunk N]
                                                     # logits of any checkpoint for given ids

`build` writes, for every config below, a folder with config.json, model.safetensors and
reference.safetensors holding: input_ids (int64 [T]), logits (float32 [T, vocab]),
greedy_prompt (int64 [64]) and greedy_output (int64 [24], greedy continuation, no EOS stop).
Logits are computed in float32 from the stored weights (bf16 weights are upcast), which is
what a float32 engine should reproduce to about 1e-4. Weights are drawn with a large initializer range and non-trivial norm weights and biases, so
that attention is peaked and a missing norm, bias or RoPE detail changes the logits visibly.
Edit CONFIGS to cover more cases; keep the checkpoints small (a few MB each).
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
}


def build(outdir, seed=0):
    for i, (name, (cfg_cls, model_cls, dtype, seq_len, fields)) in enumerate(CONFIGS.items()):
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
        model = getattr(T, model_cls).from_pretrained(d, dtype=torch.float32).eval()
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
        build(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    elif len(sys.argv) >= 5 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(__doc__)
        sys.exit(2)
