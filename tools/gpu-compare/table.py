"""table.py SHAPE DIR: speed.sh's table from kvfoot's JSON and transformers' RESULT lines in DIR."""
import json, os, sys

from shapes import SHAPES

PEAK_FLOPS, PEAK_BYTES = 989e12, 3.35e12  # H100 SXM: bf16 dense tensor cores, HBM3


def load(path):
    return json.load(open(path)) if os.path.exists(path) else {"rows": []}


def main():
    shape, d = sys.argv[1], sys.argv[2]
    c = SHAPES[shape]
    L, H, Hq, Hkv, D, F, V = (c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"],
                              c["num_key_value_heads"], c["head_dim"], c["intermediate_size"], c["vocab_size"])
    layer = H * Hq * D * 2 + 2 * H * Hkv * D + 3 * H * F  # q, o, k, v, gate, up, down
    weight_bytes = 2 * (L * layer + V * H)  # a decode step reads every matrix and the LM head

    def prefill_flops(n):  # per token: the matrices, and causal attention over (n+1)/2 entries
        return 2 * L * layer + 4 * L * Hq * D * (n + 1) / 2

    full = {r["test"]: r for r in load(f"{d}/{shape}.full.json")["rows"]}
    mask = {r["test"]: r for r in load(f"{d}/{shape}.headmask.json")["rows"]}
    hf = {}
    if os.path.exists(f"{d}/{shape}.hf.txt"):
        for line in open(f"{d}/{shape}.hf.txt"):
            if line.startswith("RESULT"):
                kv = dict(f.split("=", 1) for f in line.split()[1:])
                hf[kv["test"].split("/")[0]] = float(kv["tokens_per_second"])
    dev = load(f"{d}/{shape}.full.json").get("device", "?")
    print(f"\n{shape} (random weights, bf16, batch 1) on {dev}; pre-fill in chunks of 32768\n")
    print("| test | transformers tok/s | kvfoot tok/s | kvfoot / transformers | kvfoot, fraction of the limit | headmask 0.7 tok/s | headmask KV / full KV |")
    print("|:--|--:|--:|--:|--:|--:|--:|")
    for test, r in full.items():
        n = r["context"]
        if n == 512:
            continue  # the warm-up
        k, t = r["tokens_per_second"], hf.get(test)
        if test.startswith("pp"):
            frac = f"{k * prefill_flops(n) / PEAK_FLOPS:.2f} of 989 TFLOP/s"
        else:
            frac = f"{k * (weight_bytes + r['kv_bytes']) / PEAK_BYTES:.2f} of 3.35 TB/s"
        m = mask.get(test)
        mk = f"{m['tokens_per_second']:.1f}" if m else "-"
        ratio = f"{m['kv_bytes'] / r['kv_bytes']:.3f}" if m and test.startswith("tg") and r.get("kv_bytes") else "-"
        print(f"| {test} | {t:.1f} | {k:.1f} | {k / t:.2f}x | {frac} | {mk} | {ratio} |" if t else
              f"| {test} | - | {k:.1f} | - | {frac} | {mk} | {ratio} |")


if __name__ == "__main__":
    main()
