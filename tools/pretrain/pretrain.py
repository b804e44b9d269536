"""Pre-train kvfoot's built-in model: a small Llama on data that kvfoot generates.

Inputs are `kvfoot tasks dump --format bin` outputs (PREFIX.bin: uint16 token ids of all documents
concatenated; PREFIX.mask: one byte per token, 1 on answer tokens; PREFIX.docs: int64 document
start offsets), one set per curriculum length, and kvfoot's tokenizer.json. The output is a
Hugging Face checkpoint (config.json, model.safetensors in bf16, tokenizer.json) that kvfoot and
transformers both load.

    python3 pretrain.py --tokenizer tokenizer.json --data DIR --out OUTDIR --ckpt CKPTDIR \
        --max-seconds 540 [--train-seconds 1100]

DIR holds train_L_*.{bin,mask,docs} for each curriculum length L (512, 1024, 2048, 4096);
tools/pretrain/data.sh makes them (tools/pretrain/README.md: the mix, the model and the
commands). Training resumes from CKPTDIR when a checkpoint is there, so one run may span
several commands of bounded length; --max-seconds stops cleanly (checkpoint written
atomically) before a command's limit. Rows begin with BOS (--no-bos: as the first model).

The run is budgeted in GPU seconds of training (--train-seconds, summed over resumes), not in
steps: the curriculum phase and the learning-rate schedule follow the fraction of that budget
spent, so a run fits the reference machine's time limits whatever its throughput. The step
count reached is in training_log.jsonl.
"""
import argparse, glob, json, math, os, shutil, sys, time

import numpy as np
import torch
import torch.nn.functional as F
import transformers as T

# (fraction of the run at which the phase ends, sequence length); the planning runs found a
# length curriculum necessary for a model this small to learn retrieval at all. The first
# model's log (models/kvfoot-small/training_log.jsonl) shows answer accuracy at 0.97 after
# 100 s at 512 and back within 30 s of each switch, while a token at 4096 costs only 1.17x
# one at 512: the longest length, the evaluation's, gets 60% of the run.
CURRICULUM = [(0.10, 512), (0.22, 1024), (0.40, 2048), (1.0, 4096)]


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--train-seconds", type=float, default=1100)
    p.add_argument("--extra", type=int, default=128,
                   help="tokens past L in every row, so positions just beyond a full-length prompt are trained")
    p.add_argument("--tokens-per-step", type=int, default=131072)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.02)
    p.add_argument("--answer-weight", type=float, default=3.0)
    p.add_argument("--layers", type=int, default=12)
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
    p.add_argument("--bos", action=argparse.BooleanOptionalAction, default=True,
                   help="begin every row with the BOS token, as kvfoot eval's prompts begin")
    p.add_argument("--init", default="",
                   help="start from these weights instead of random ones: a float32 safetensors file with Hugging "
                        "Face's names (kvfoot export --model M --out W.safetensors); the optimiser starts afresh")
    p.add_argument("--curriculum", default="",
                   help="length:end pairs, each length trained until that fraction of the run, e.g. 4096:1 "
                        "(default: 512:0.10,1024:0.22,2048:0.40,4096:1)")
    a = p.parse_args()
    if a.curriculum:
        global CURRICULUM
        try:
            CURRICULUM = [(float(e), int(L)) for L, e in (x.split(":") for x in a.curriculum.split(","))]
        except ValueError:
            sys.exit(f"--curriculum {a.curriculum!r}: want length:end pairs such as 2048:0.5,4096:1")
        ends = [e for e, _ in CURRICULUM]
        if ends != sorted(ends) or ends[-1] != 1.0 or ends[0] <= 0:
            sys.exit(f"--curriculum {a.curriculum!r}: the ends must rise to 1")
    return a


def load_weights(path):
    """The tensors of a float32 safetensors file, by name."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {e['dtype']}; --init takes float32 weights (kvfoot export writes them)")
        lo, hi = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data, dtype="<f4", count=(hi - lo) // 4, offset=lo).reshape(e["shape"]).copy())
    return out


class Stream:
    """Documents of one curriculum length; each row starts at a document and runs on into
    the next ones for `length` tokens (BOS first, with --bos). Rows are drawn uniformly over
    documents, so each file's share of the rows is its share of the tokens."""

    def __init__(self, data, L, length, vocab, bos):
        ids, mask, docs, src, off = [], [], [], [], 0
        files = sorted(glob.glob(os.path.join(data, f"train_{L}_*.bin")))
        if not files:
            sys.exit(f"{data}: no train_{L}_*.bin")
        self.names = [os.path.basename(f)[len(f"train_{L}_"):-4] for f in files]
        for k, f in enumerate(files):
            prefix = f[:-4]
            i = np.fromfile(prefix + ".bin", dtype=np.uint16)
            m = np.fromfile(prefix + ".mask", dtype=np.uint8)
            d = np.fromfile(prefix + ".docs", dtype=np.int64)
            if len(i) != len(m) or len(d) == 0:
                sys.exit(f"{prefix}: .bin has {len(i)} tokens, .mask {len(m)}, .docs {len(d)} documents")
            if i.max() >= vocab:
                sys.exit(f"{prefix}.bin: token id {i.max()} is outside the tokenizer's {vocab} (another tokenizer's data?)")
            ids.append(i), mask.append(m), docs.append(d + off), src.append(np.full(len(d), k))
            off += len(i)
        self.ids, self.mask, docs, src = np.concatenate(ids), np.concatenate(mask), np.concatenate(docs), np.concatenate(src)
        print(f"length {L}: {len(files)} files, {len(docs)} documents, {len(self.ids)/1e6:.1f}M tokens", flush=True)
        self.bos = bos
        # tokens read per row: the row's length, plus the last target unless BOS comes first
        self.read = length + (0 if bos is not None else 1)
        # rows start at document starts that leave room for a full row
        fits = docs + self.read <= len(self.ids)
        self.starts, self.src = docs[fits], src[fits]
        if len(self.starts) == 0:
            sys.exit(f"{data}: no document of length {L} leaves {self.read} tokens")

    def batch(self, rng, rows):
        """Token ids and answer mask, rows x (length + 1), and each row's file index."""
        k = rng.integers(len(self.starts), size=rows)
        idx = self.starts[k][:, None] + np.arange(self.read)[None, :]
        x, m = self.ids[idx].astype(np.int64), self.mask[idx].astype(np.float32)
        if self.bos is not None:
            x = np.concatenate([np.full((rows, 1), self.bos, dtype=np.int64), x], axis=1)
            m = np.concatenate([np.zeros((rows, 1), dtype=np.float32), m], axis=1)
        return torch.from_numpy(x), torch.from_numpy(m), self.src[k]


def phase(frac):
    for end, L in CURRICULUM:
        if frac < end:
            return L
    return CURRICULUM[-1][1]


def lr_at(frac, a):
    if frac < a.warmup:
        return a.lr * max(frac, 1e-3) / a.warmup
    t = min(1.0, (frac - a.warmup) / (1 - a.warmup))
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main():
    a = parse()
    t0 = time.time()
    tok = json.load(open(a.tokenizer))
    vocab = 1 + max(max(tok["model"]["vocab"].values()), max((t["id"] for t in tok.get("added_tokens", [])), default=0))
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
    if a.bos and bos is None:
        sys.exit(f"{a.tokenizer}: no <|begin_of_text|> token for --bos (use --no-bos)")
    streams = {L: Stream(a.data, L, L + a.extra, vocab, bos if a.bos else None) for _, L in CURRICULUM}
    os.makedirs(a.ckpt, exist_ok=True)
    ck = os.path.join(a.ckpt, "state.pt")
    step, log, trained = 0, [], 0.0
    rng = np.random.default_rng(a.seed)
    if a.init and not os.path.exists(ck):
        sd = load_weights(a.init)
        params = dict(model.named_parameters())
        missing = sorted(set(params) - set(sd))
        unknown = sorted(set(sd) - set(params))
        wrong = [k for k in sd if k in params and tuple(sd[k].shape) != tuple(params[k].shape)]
        if missing or unknown or wrong:
            sys.exit(f"--init {a.init}: missing {missing[:4]}, unknown {unknown[:4]}, other shapes {wrong[:4]} "
                     f"(the model's flags must match the weights': --layers, --hidden, ...)")
        with torch.no_grad():
            for k, v in sd.items():
                params[k].copy_(v)
        print(f"initialised from {a.init}", flush=True)
    if os.path.exists(ck):
        st = torch.load(ck, map_location=dev, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, log, trained = st["step"], st["log"], st["trained"]
        rng.bit_generator.state = st["rng"]
        print(f"resumed at step {step}, {trained:.0f}s of {a.train_seconds:.0f}s trained", flush=True)
    print(f"params {nparams/1e6:.2f}M vocab {vocab} tokens/step {a.tokens_per_step}", flush=True)

    def state():
        return {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "log": log,
                "rng": rng.bit_generator.state, "trained": trained}
    fwd = torch.compile(model) if a.compile else model
    model.train()
    last = time.time()
    stopped = False
    torch.cuda.synchronize()
    tick = time.time()
    while trained < a.train_seconds:
        frac = trained / a.train_seconds
        L = phase(frac)
        rows = max(1, a.tokens_per_step // (L + a.extra))
        x, m, src = streams[L].batch(rng, rows)
        x, m = x.to(dev, non_blocking=True), m.to(dev, non_blocking=True)
        inp, tgt, w = x[:, :-1], x[:, 1:], 1 + (a.answer_weight - 1) * m[:, 1:]
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, a)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = fwd(input_ids=inp).logits
        ce = F.cross_entropy(logits.float().reshape(-1, vocab), tgt.reshape(-1), reduction="none").view_as(tgt)
        loss = (ce * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % a.log_every == 0:
            torch.cuda.synchronize()
            now = time.time()
            trained += now - tick
            tick = now
            with torch.no_grad():
                am = m[:, 1:] > 0
                hit = (logits.argmax(-1) == tgt) & am
                acc = hit.sum().item() / max(1, am.sum().item())
                ans_loss = (ce * am).sum().item() / max(1, am.sum().item())
                # teacher-forced answer accuracy of each task in this batch (noisy: few rows each)
                hits, answers = hit.sum(1).tolist(), am.sum(1).tolist()
                by_task = {}
                for r, k in enumerate(src):
                    h, n = by_task.get(streams[L].names[k], (0, 0))
                    by_task[streams[L].names[k]] = (h + hits[r], n + answers[r])
            rec = {"step": step, "len": L, "loss": round(loss.item(), 4), "answer_loss": round(ans_loss, 4),
                   "answer_acc": round(acc, 4),
                   "answer_acc_by_task": {t: round(h / n, 3) for t, (h, n) in sorted(by_task.items()) if n},
                   "lr": round(opt.param_groups[0]["lr"], 6),
                   "tok_s": round(a.log_every * rows * (L + a.extra) / (now - last)), "trained_s": round(trained, 1),
                   "elapsed": round(now - t0, 1)}
            last = now
            log.append(rec)
            print(json.dumps(rec), flush=True)
        if step % a.ckpt_every == 0 or time.time() - t0 > a.max_seconds:
            save_atomic(state(), ck)
            tick = time.time()
            if time.time() - t0 > a.max_seconds and trained < a.train_seconds:
                print(f"stopping at step {step} after {time.time()-t0:.0f}s; resume with the same command", flush=True)
                stopped = True
                break
    if not stopped:
        save_atomic(state(), ck)
    # the Hugging Face checkpoint of the current weights, in bf16
    tmp = a.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    shutil.copy(a.tokenizer, os.path.join(tmp, "tokenizer.json"))
    with open(os.path.join(tmp, "training_log.jsonl"), "w") as f:
        for r in log:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(tmp, "pretrain_args.json"), "w") as f:
        json.dump({**vars(a), "params": nparams, "steps": step, "trained_s": round(trained, 1)}, f, indent=1)
    shutil.rmtree(a.out, ignore_errors=True)
    os.replace(tmp, a.out)
    print(f"wrote {a.out} at step {step} ({trained:.0f}s of {a.train_seconds:.0f}s trained)", flush=True)


if __name__ == "__main__":
    main()
