"""transformers' speed on a random-weight Llama shape, bf16, batch 1, SDPA: the baseline of
kvfoot's GPU figures (issue 18). Run on the GPU machine, beside `kvfoot bench --device cuda`
(speed.sh runs both and prints one table):

    python3 hf_speed.py SHAPE TEST...

SHAPE is llama-3.1-8b or llama-3.2-1b (kvfoot's presets of the same names). A TEST is
    ppN          pre-fill of N tokens in one forward (last position's logits only)
    ppN/C        pre-fill of N tokens in chunks of C (a DynamicCache carried between them)
    tgG@dN[/C]   decode of G tokens after a pre-fill of N (in chunks of C), one token a forward
Prints one line per test: RESULT engine=transformers shape=S test=T tokens_per_second=X seconds=Y
Speed does not depend on the weights' values, so random weights are a fair comparison.
"""
import sys, time
import torch
import transformers as T

from shapes import SHAPES



def parse(test):
    """(prefill tokens, chunk, decode tokens) of a test name."""
    gen = 0
    if test.startswith("tg"):
        g, rest = test[2:].split("@d", 1)
        gen, test = int(g), "pp" + rest
    n, _, chunk = test[2:].partition("/")
    return int(n), int(chunk or n), gen


def sync():
    torch.cuda.synchronize()


@torch.inference_mode()
def prefill(model, ids, chunk):
    try:
        cache = T.DynamicCache(config=model.config)
    except TypeError:  # transformers before 4.56
        cache = T.DynamicCache()
    out = None
    for lo in range(0, ids.shape[1], chunk):
        out = model(input_ids=ids[:, lo:lo + chunk], past_key_values=cache, use_cache=True, logits_to_keep=1)
    return cache, out.logits[:, -1]


@torch.inference_mode()
def decode(model, cache, ids, gen):
    """gen tokens by model.generate (greedy) after a cache holding all of ids but the last: the
    way transformers users decode, one forward a token."""
    return model.generate(input_ids=ids, past_key_values=cache, max_new_tokens=gen, min_new_tokens=gen,
                          do_sample=False)


def main():
    shape, tests = sys.argv[1], sys.argv[2:]
    longest = max(sum(parse(t)[::2]) for t in tests)
    cfg = T.LlamaConfig(**SHAPES[shape], rms_norm_eps=1e-5, rope_theta=500000.0,
                        max_position_embeddings=max(131072, longest + 1))
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = T.LlamaForCausalLM(cfg)
    model = model.to(torch.bfloat16).eval()
    model.config._attn_implementation = "sdpa"
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, None
    print(f"# transformers {T.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"attention {model.config._attn_implementation}, {sum(p.numel() for p in model.parameters())/1e9:.2f}B params",
          flush=True)
    gen_ids = torch.randint(0, cfg.vocab_size, (1, longest + 1), device="cuda")
    cache, _ = prefill(model, gen_ids[:, :512], 512)  # warm up the kernels
    decode(model, cache, gen_ids[:, :513], 4)
    sync()
    for test in tests:
        n, chunk, gen = parse(test)
        ids = gen_ids[:, :n]
        sync()
        t0 = time.perf_counter()
        cache, last = prefill(model, ids, chunk)
        sync()
        t1 = time.perf_counter()
        if gen:
            decode(model, cache, gen_ids[:, :n + 1], gen)
            sync()
            secs, toks = time.perf_counter() - t1, gen
        else:
            secs, toks = t1 - t0, n
        print(f"RESULT engine=transformers shape={shape} test={test} tokens_per_second={toks/secs:.1f} seconds={secs:.3f}",
              flush=True)
        del cache, last
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
