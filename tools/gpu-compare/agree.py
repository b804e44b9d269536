"""agree.py KVFOOT OUTDIR: how far kvfoot's GPU logits are from a float32 reference, beside
transformers' own bf16 run on the same GPU (issue 18, point 4), and greedy continuations of the
built-in model on the GPU against the CPU's.

Models: the built-in one (models/kvfoot-small, bf16 weights) and random-weight checkpoints of
shapes the GPU kernels take (head dimension 64 or 128), made here by transformers with a large
initializer range (peaked attention, so that a wrong detail shows). For each, the logits of
every position of 256 random tokens from: transformers float32 (the reference; TF32 off),
transformers bf16 (SDPA), kvfoot on the CPU (float32) and kvfoot on the GPU (bf16 weights,
activations and KV, float32 accumulation). Prints relative L2 distances to the reference and
argmax agreement. Run from the repository root on the GPU machine.
"""
import json, os, subprocess, sys

import torch
import transformers as T
from safetensors.torch import load_file

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

CHECKPOINTS = {
    # name: (config class, model class, config fields)
    "llama-d64": ("LlamaConfig", "LlamaForCausalLM", dict(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, rope_theta=10000.0, tie_word_embeddings=False)),
    "llama3-rope-d128": ("LlamaConfig", "LlamaForCausalLM", dict(
        vocab_size=512, hidden_size=512, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, head_dim=128, rope_theta=500000.0, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64})),
    "qwen2-bias-d64": ("Qwen2Config", "Qwen2ForCausalLM", dict(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, rope_theta=1000000.0, tie_word_embeddings=False)),
    "mistral-d128": ("MistralConfig", "MistralForCausalLM", dict(
        vocab_size=512, hidden_size=256, intermediate_size=768, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=128, rope_theta=10000.0, sliding_window=None, tie_word_embeddings=False)),
}


def build(out):
    dirs = {}
    for name, (cfg_cls, model_cls, fields) in CHECKPOINTS.items():
        d = os.path.join(out, name)
        torch.manual_seed(len(name))
        cfg = getattr(T, cfg_cls)(**fields, initializer_range=0.08, rms_norm_eps=1e-5, max_position_embeddings=4096)
        m = getattr(T, model_cls)(cfg).to(torch.float32)
        with torch.no_grad():  # non-trivial norms and biases
            for n, p in m.named_parameters():
                if n.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
                elif n.endswith(".bias"):
                    p.normal_(0, 0.1)
        m.save_pretrained(d)
        dirs[name] = d
    return dirs


@torch.no_grad()
def hf_logits(d, ids, dtype):
    m = T.AutoModelForCausalLM.from_pretrained(d, dtype=dtype, attn_implementation="sdpa").cuda().eval()
    out = m(input_ids=torch.tensor([ids], device="cuda")).logits[0].float().cpu()
    del m
    torch.cuda.empty_cache()
    return out


def kvfoot_logits(kvfoot, d, ids, device, out):
    path = os.path.join(out, f"{os.path.basename(d)}.{device}.safetensors")
    cmd = [kvfoot, "logits", "--ids", ",".join(map(str, ids)), "--out", path, "--force", "--device", device]
    if d:
        cmd += ["--model", d]
    subprocess.run(cmd, check=True)
    return load_file(path)["logits"].float()


def rel(a, ref):
    return ((a - ref).norm() / ref.norm()).item()


def agree(a, ref):
    return (a.argmax(-1) == ref.argmax(-1)).float().mean().item()


def greedy(kvfoot, out, prompts):
    """Greedy continuations on the CPU and the GPU; each difference with the CPU's logit margin
    (top-1 minus top-2) at the first position where they part."""
    same, diffs = 0, []
    for ids in prompts:
        got = {}
        for device in ("cpu", "cuda"):
            r = subprocess.run([kvfoot, "generate", "--prompt-ids", ",".join(map(str, ids)), "--max-tokens", "32",
                                "--ignore-eos", "--format", "json", "--device", device],
                               check=True, capture_output=True, text=True)
            got[device] = json.loads(r.stdout)["ids"]
        if got["cpu"] == got["cuda"]:
            same += 1
            continue
        k = next(i for i, (a, b) in enumerate(zip(got["cpu"], got["cuda"])) if a != b)
        lg = kvfoot_logits(kvfoot, "", ids + got["cpu"][:k], "cpu", out)[-1]
        top = lg.topk(2).values
        gap = (top[0] - top[1]).item()
        diffs.append((k, gap, (lg.max() - lg[got["cuda"][k]]).item()))
    return same, diffs


def main():
    kvfoot, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    print(f"# {torch.cuda.get_device_name()}, transformers {T.__version__}, torch {torch.__version__}")
    print("| model | transformers bf16 vs f32: rel L2 | argmax | kvfoot GPU vs f32: rel L2 | argmax | kvfoot CPU vs f32: rel L2 |")
    print("|:--|--:|--:|--:|--:|--:|")
    models = {"kvfoot-small (built-in)": "models/kvfoot-small", **build(os.path.join(out, "ckpt"))}
    for name, d in models.items():
        vocab = json.load(open(os.path.join(d, "config.json")))["vocab_size"]
        ids = torch.randint(0, vocab, (256,), generator=g).tolist()
        ref = hf_logits(d, ids, torch.float32)
        hf16 = hf_logits(d, ids, torch.bfloat16)
        gpu = kvfoot_logits(kvfoot, d, ids, "cuda", out)
        cpu = kvfoot_logits(kvfoot, d, ids, "cpu", out)
        print(f"| {name} | {rel(hf16, ref):.2e} | {agree(hf16, ref):.3f} | {rel(gpu, ref):.2e} | {agree(gpu, ref):.3f} | {rel(cpu, ref):.2e} |",
              flush=True)
    # greedy: prompts of the built-in model's vocabulary, random and of its tasks' text
    prompts = [torch.randint(0, 4000, (n,), generator=g).tolist() for n in (8, 32, 128, 512) for _ in range(4)]
    same, diffs = greedy(kvfoot, out, prompts)
    print(f"\ngreedy, 32 tokens, built-in model: {same}/{len(prompts)} continuations equal on the GPU and the CPU")
    for k, gap, lost in diffs:
        print(f"  parted at token {k}: the CPU's top-2 logit gap there {gap:.4f}; the GPU's choice {lost:.4f} below the CPU's top")


if __name__ == "__main__":
    main()
