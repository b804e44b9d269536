"""Gradient references from PyTorch autograd, to test package train against.

Run where torch and transformers are installed:

    python3 grad_reference.py MODEL_DIR OUT.safetensors SEQ_LEN SINK WINDOW [--weights] [--no-logits]

The model runs in float64 through transformers' own Llama/Qwen2/Mistral/Qwen3/Gemma 3
modules, with the eager attention function replaced by PruLong's gated attention: per KV
head g, out = z_g * full + (1 - z_g) * streaming, both exact, streaming seeing the first
SINK positions and the WINDOW most recent ones (itself included). A layer with its own
sliding window (the sliding_window the model passes, or module.sliding_window: Gemma's
local layers, Mistral's and Qwen's with a sliding_window) is not gated: it attends within its window, as the model does, and
its gates get no gradient. Gemma 2's attention soft cap applies to the scaled scores
before the mask, as its eager attention does. OUT holds:

  input_ids [T] (int64, seeded), gates [layers, kv_heads] (uniform, seeded),
  ce_loss [1]      mean next-token cross-entropy over positions 0..T-2,
  ce_gates [L, KV] dLoss/dgates, ce_inputs [T, hidden] dLoss/d(input embeddings: the
                   embedding module's output, which Gemma 3 scales and Gemma 2 does not;
                   metadata inputs_scaled says which),
  ce.<param name>  dLoss/dparam for every parameter that gets one (with --weights;
                   not an untied embedding: the embeddings enter as a leaf),
  mse_rows [R]     the rows of the DuoAttention loss,
  mse_loss [1]     mean over mse_rows of the mean squared difference between the last
                   hidden state (after the final norm) with gates and with full attention,
  mse_gates, mse_inputs  its gradients,
  full_logits [T, vocab] logits with full attention through the gated function
                   (the stock model's to 1e-4, asserted here: its
                   eager softmax runs in float32); left out with --no-logits (the
                   built-in model's: 8 MB, and its logits have a test of their own).
"""
import sys
import torch
import torch.nn.functional as F
import transformers as T
from safetensors.torch import save_file

STATE = {"gates": None, "sink": 0, "window": 1}


def gated_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    # query [B, H, T, d]; key, value [B, KV, T, d]
    _, H, n, d = query.shape
    if scaling is None:
        scaling = d ** -0.5
    rep = H // key.shape[1]
    k = key.repeat_interleave(rep, dim=1)  # HF's repeat_kv layout: query head h reads KV head h // rep
    v = value.repeat_interleave(rep, dim=1)
    s = torch.matmul(query, k.transpose(2, 3)) * scaling
    softcap = kwargs.get("softcap")
    if softcap is None:
        softcap = getattr(module, "attn_logit_softcapping", None)
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    i = torch.arange(n, device=query.device)[:, None]
    j = torch.arange(n, device=query.device)[None, :]
    causal = j <= i

    def attend(mask):
        p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.matmul(p, v)

    local = kwargs.get("sliding_window")
    if local is None:
        local = getattr(module, "sliding_window", None)
    if local is not None:
        causal = causal & (i - j < local)  # transformers' sliding_window_overlay
    if torch.is_tensor(attention_mask) and attention_mask.dim() == 4:
        m = attention_mask[0, 0, :n, -n:]
        allowed = m if m.dtype == torch.bool else m > torch.finfo(m.dtype).min / 2
        assert torch.equal(allowed, causal), f"layer {module.layer_idx}: the model's mask differs from the rebuilt one"
    out = attend(causal)
    if STATE["gates"] is not None and local is None:
        stream = causal & ((j < STATE["sink"]) | (i - j < STATE["window"]))
        z = STATE["gates"][module.layer_idx].repeat_interleave(rep).view(1, H, 1, 1)
        out = z * out + (1 - z) * attend(stream)
    return out.transpose(1, 2).contiguous(), None


def patch():
    import importlib
    for name in ["llama", "qwen2", "mistral", "qwen3", "gemma2", "gemma3"]:
        mod = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        mod.eager_attention_forward = gated_attention


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    weights = "--weights" in sys.argv
    model_dir, out, seq_len, sink, window = args[0], args[1], int(args[2]), int(args[3]), int(args[4])
    torch.manual_seed(0)
    stock = T.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager").eval()
    cfg = stock.config
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, cfg.vocab_size, (1, seq_len), generator=g)
    kv = cfg.num_key_value_heads
    gates = torch.rand(cfg.num_hidden_layers, kv, generator=g, dtype=torch.float64)
    gates[0, 0], gates[-1, -1] = 0.0, 1.0  # the ends of the range
    with torch.no_grad():
        stock_logits = stock(ids).logits[0]
    patch()
    model = T.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager").eval()
    STATE.update(sink=sink, window=window)
    res = {"input_ids": ids[0].clone(), "gates": gates.float().clone()}

    with torch.no_grad():
        STATE["gates"] = None
        full_logits = model(ids).logits[0]
        diff = (full_logits - stock_logits).abs().max().item()
        # the stock eager attention takes its softmax in float32
        print(f"{model_dir}: gated function with full attention vs stock model: max |logit diff| {diff:.3g}")
        assert diff < 1e-4, diff
        emb0 = model.get_input_embeddings()(ids)
        # Gemma 3 scales the embeddings in its embedding module (the inputs below are
        # scaled), Gemma 2 in the model's forward (they are not): the test needs to know
        inputs_scaled = not torch.equal(emb0[0], model.get_input_embeddings().weight[ids[0]])
        teacher = model.model(inputs_embeds=emb0).last_hidden_state[0]
    if "--no-logits" not in sys.argv:
        res["full_logits"] = full_logits.float().contiguous()

    # cross-entropy with gates
    z = gates.clone().requires_grad_()
    STATE["gates"] = z
    emb = emb0.clone().requires_grad_()
    model.zero_grad()
    logits = model(inputs_embeds=emb).logits[0]
    loss = F.cross_entropy(logits[:-1], ids[0, 1:])
    loss.backward()
    res["ce_loss"] = loss.detach().float().reshape(1)
    res["ce_gates"] = z.grad.float().contiguous()
    res["ce_inputs"] = emb.grad[0].float().contiguous()
    if weights:
        # the input embeddings are a leaf here (ce_inputs), so an untied embedding
        # matrix gets no gradient of its own
        for n, p in model.named_parameters():
            if p.grad is not None:
                res["ce." + n] = p.grad.float().contiguous()

    # DuoAttention's distillation loss with gates
    rows = torch.cat([torch.arange(seq_len - 24, seq_len), torch.tensor([0, 5, seq_len // 2])])
    z = gates.clone().requires_grad_()
    STATE["gates"] = z
    emb = emb0.clone().requires_grad_()
    model.zero_grad()
    h = model.model(inputs_embeds=emb).last_hidden_state[0]
    loss = ((h[rows] - teacher[rows]) ** 2).mean(-1).sum() / len(rows)
    loss.backward()
    res["mse_rows"] = rows.clone()
    res["mse_loss"] = loss.detach().float().reshape(1)
    res["mse_gates"] = z.grad.float().contiguous()
    res["mse_inputs"] = emb.grad[0].float().contiguous()

    save_file(res, out, metadata={"oracle": "grad-1", "sink": str(sink), "window": str(window),
                                  "inputs_scaled": str(int(inputs_scaled))})
    print(f"{model_dir}: ce {res['ce_loss'].item():.6f} mse {res['mse_loss'].item():.6g} -> {out}")


if __name__ == "__main__":
    if len(sys.argv) < 6:
        print(__doc__)
        sys.exit(2)
    main()
