"""Pre-train kvfoot's built-in model: a small Llama on data that kvfoot generates.

Inputs are `kvfoot tasks dump --format bin` outputs (PREFIX.bin: uint16 token ids of all documents
concatenated; PREFIX.mask: one byte per token, 1 on answer tokens; PREFIX.docs: int64 document
start offsets), one set per curriculum length, and kvfoot's tokenizer.json. The output is a
Hugging Face checkpoint (config.json, model.safetensors in bf16, tokenizer.json) that kvfoot and
transformers both load.

    python3 pretrain.py --tokenizer tokenizer.json --data DIR --out OUTDIR --ckpt CKPTDIR \
        --max-seconds 540 [--total-tokens 150e6]

DIR holds train_L.{bin,mask,docs} for each curriculum length L (512, 1024, 2048, 4096).
Training resumes from CKPTDIR when a checkpoint is there, so one run may span several
commands of bounded length; --max-seconds stops cleanly (checkpoint written atomically) before
the limit. The run is deterministic given the seed, the data and the resume points.
"""
import argparse, json, math, os, shutil, sys, time

import numpy as np
import torch
import torch.nn.functional as F
import transformers as T

# (fraction of the run at which the phase ends, sequence length); the planning runs found a
# length curriculum necessary for a model this small to learn retrieval at all.
CURRICULUM = [(0.12, 512), (0.25, 1024), (0.45, 2048), (1.0, 4096)]


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--total-tokens", type=float, default=150e6)
    p.add_argument("--tokens-per-step", type=int, default=131072)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.02)
    p.add_argument("--answer-weight", type=float, default=3.0)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=1408)
    p.add_argument("--rope-theta", type=float, default=50000.0)
    p.add_argument("--max-seconds", type=float, default=540)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--compile", action="store_true")
    return p.parse_args()


class Stream:
    """Documents of one curriculum length, cropped or packed to exactly L tokens per row."""

    def __init__(self, prefix, length):
        self.ids = np.fromfile(prefix + ".bin", dtype=np.uint16)
        self.mask = np.fromfile(prefix + ".mask", dtype=np.uint8)
        self.docs = np.fromfile(prefix + ".docs", dtype=np.int64)
        if len(self.ids) != len(self.mask) or len(self.docs) == 0:
            sys.exit(f"{prefix}: .bin has {len(self.ids)} tokens, .mask {len(self.mask)}, .docs {len(self.docs)} documents")
        self.length = length
        # rows start at document starts that leave room for a full row
        self.starts = self.docs[self.docs + length + 1 <= len(self.ids)]
        if len(self.starts) == 0:
            sys.exit(f"{prefix}: no document start leaves {length + 1} tokens")

    def batch(self, rng, rows):
        s = rng.choice(self.starts, size=rows)
        idx = s[:, None] + np.arange(self.length + 1)[None, :]
        return torch.from_numpy(self.ids[idx].astype(np.int64)), torch.from_numpy(self.mask[idx].astype(np.float32))


def phase(frac):
    for end, L in CURRICULUM:
        if frac < end:
            return L
    return CURRICULUM[-1][1]


def lr_at(step, total, a):
    warm = max(1, int(a.warmup * total))
    if step < warm:
        return a.lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main():
    a = parse()
    t0 = time.time()
    tok = json.load(open(a.tokenizer))
    vocab = len(tok["model"]["vocab"]) + sum(1 for t in tok.get("added_tokens", []) if t["id"] >= len(tok["model"]["vocab"]))
    specials = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    bos = specials.get("<|begin_of_text|>")
    eos = specials.get("<|end_of_text|>")
    cfg = T.LlamaConfig(vocab_size=vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                        max_position_embeddings=4096, rope_theta=a.rope_theta, rms_norm_eps=1e-5,
                        tie_word_embeddings=False, bos_token_id=bos, eos_token_id=eos,
                        attn_implementation="sdpa")
    torch.manual_seed(a.seed)
    dev = "cuda"
    model = T.LlamaForCausalLM(cfg).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    nodecay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    total_steps = int(a.total_tokens // a.tokens_per_step)
    streams = {L: Stream(os.path.join(a.data, f"train_{L}"), L) for _, L in CURRICULUM}
    os.makedirs(a.ckpt, exist_ok=True)
    ck = os.path.join(a.ckpt, "state.pt")
    step, log = 0, []
    rng = np.random.default_rng(a.seed)
    if os.path.exists(ck):
        st = torch.load(ck, map_location=dev, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, log = st["step"], st["log"]
        rng.bit_generator.state = st["rng"]
        print(f"resumed at step {step}/{total_steps}", flush=True)
    print(f"params {nparams/1e6:.2f}M vocab {vocab} steps {total_steps} tokens/step {a.tokens_per_step}", flush=True)
    fwd = torch.compile(model) if a.compile else model
    model.train()
    last = time.time()
    stopped = False
    while step < total_steps:
        L = phase(step / total_steps)
        rows = max(1, a.tokens_per_step // L)
        x, m = streams[L].batch(rng, rows)
        x, m = x.to(dev, non_blocking=True), m.to(dev, non_blocking=True)
        inp, tgt, w = x[:, :-1], x[:, 1:], 1 + (a.answer_weight - 1) * m[:, 1:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total_steps, a)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = fwd(input_ids=inp).logits
        ce = F.cross_entropy(logits.float().reshape(-1, vocab), tgt.reshape(-1), reduction="none").view_as(tgt)
        loss = (ce * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % a.log_every == 0 or step == total_steps:
            with torch.no_grad():
                am = m[:, 1:] > 0
                acc = ((logits.argmax(-1) == tgt) & am).sum().item() / max(1, am.sum().item())
                ans_loss = (ce * am).sum().item() / max(1, am.sum().item())
            now = time.time()
            rec = {"step": step, "len": L, "loss": round(loss.item(), 4), "answer_loss": round(ans_loss, 4),
                   "answer_acc": round(acc, 4), "lr": round(opt.param_groups[0]["lr"], 6),
                   "tok_s": round(a.log_every * rows * L / (now - last)), "elapsed": round(now - t0, 1)}
            last = now
            log.append(rec)
            print(json.dumps(rec), flush=True)
        if step % a.ckpt_every == 0 or time.time() - t0 > a.max_seconds:
            save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "log": log,
                         "rng": rng.bit_generator.state}, ck)
            if time.time() - t0 > a.max_seconds and step < total_steps:
                print(f"stopping at step {step}/{total_steps} after {time.time()-t0:.0f}s; resume with the same command", flush=True)
                stopped = True
                break
    if not stopped:
        save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "log": log,
                     "rng": rng.bit_generator.state}, ck)
    # the Hugging Face checkpoint of the current weights, in bf16
    tmp = a.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    shutil.copy(a.tokenizer, os.path.join(tmp, "tokenizer.json"))
    with open(os.path.join(tmp, "training_log.jsonl"), "w") as f:
        for r in log:
            f.write(json.dumps(r) + "\n")
    shutil.rmtree(a.out, ignore_errors=True)
    os.replace(tmp, a.out)
    print(f"wrote {a.out} at step {step}/{total_steps}", flush=True)


if __name__ == "__main__":
    main()
