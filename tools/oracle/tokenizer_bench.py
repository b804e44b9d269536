"""Encode throughput of the Hugging Face tokenizers library on one text file.

    python3 tokenizer_bench.py TOKENIZER.json TEXT_FILE [REPS]

Prints MB/s (median of REPS single-threaded encodes of the whole text) and the token count.
"""
import os, sys, time, statistics
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 7
n = len(text.encode("utf-8"))
times, ids = [], None
for _ in range(reps + 1):
    t = time.perf_counter()
    ids = tok.encode(text, add_special_tokens=False).ids
    times.append(time.perf_counter() - t)
times = times[1:]
print(f"hf-tokenizers {os.path.basename(os.path.dirname(sys.argv[1]))}: bytes={n} tokens={len(ids)} "
      f"MB/s median={n / statistics.median(times) / 1e6:.2f} min={n / max(times) / 1e6:.2f} "
      f"max={n / min(times) / 1e6:.2f} reps={reps}")
