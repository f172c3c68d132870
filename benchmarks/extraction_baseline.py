"""Contextual extraction: the naive approach (one sentence per forward pass) against compute.contextual.extract.

    python benchmarks/extraction_baseline.py [--corpus lee] [--limit N] [--threads T] [--out result.json]

naive_extract follows the usual example code: encode each sentence alone with default settings, then average
each word's sub-token vectors in Python (via the tokenizer's word_ids) and accumulate per word.
"""

import argparse
import json
import os
import re
import time

import numpy as np
import torch

from compute.contextual import extract, load_transformer, read_corpus, word_normalizer


def naive_extract(tokenizer, model, sentences, words, layers=None):
    """(word_vectors (L, n_words, d), n_contexts): one forward pass per sentence, Python loops per word."""
    layers = list(range(model.config.num_hidden_layers + 1)) if layers is None else list(layers)
    key = word_normalizer(tokenizer)
    wanted = {key(w) for w in words}
    sums, counts = {}, {}
    for s in sentences:
        enc = tokenizer(s, return_tensors="pt", truncation=True)
        with torch.no_grad():
            hs = model(**enc, output_hidden_states=True).hidden_states
        pieces = {}
        for t, wid in enumerate(enc.word_ids()):
            if wid is not None:
                pieces.setdefault(wid, []).append(t)
        for wid, idx in pieces.items():
            a, b = enc.word_to_chars(wid)
            k = key(s[a:b])
            if k not in wanted:
                continue
            vec = torch.stack([hs[l][0, idx].mean(0) for l in layers])
            sums[k] = sums.get(k, 0) + vec
            counts[k] = counts.get(k, 0) + 1
    d = model.config.hidden_size
    out = np.zeros((len(layers), len(words), d), np.float32)
    n = np.zeros(len(words), np.int32)
    for i, w in enumerate(words):
        k = key(w)
        if k in counts:
            out[:, i] = (sums[k] / counts[k]).numpy()
            n[i] = counts[k]
    return out, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--corpus", default="lee")
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tok, model = load_transformer(args.model)
    sentences = read_corpus(args.corpus)[: args.limit]
    # Words seen in the corpus, so both sides do only corpus work (no isolated encodings).
    words = sorted({w.lower() for s in sentences for w in re.findall(r"[^\W\d_]+", s)})
    n_tokens = sum(len(x) for x in tok(sentences, truncation=True)["input_ids"])

    # Wall time, and process CPU time (all threads): on a shared machine the CPU time is the steadier figure.
    t0, c0 = time.perf_counter(), time.process_time()
    naive, naive_n = naive_extract(tok, model, sentences, words)
    t_naive, c_naive = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    ex = extract(tok, model, sentences, words, None, token_sample=10000, batch_size=args.batch_size)
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0

    # Word boundaries differ slightly (word_ids splits "don't"); compare the words both found equally often.
    same = (naive_n == ex.n_contexts) & (naive_n > 0)
    result = dict(
        model=args.model,
        corpus=args.corpus,
        sentences=len(sentences),
        tokens=n_tokens,
        words=len(words),
        layers=len(ex.layers),
        threads=torch.get_num_threads(),
        batch_size=args.batch_size,
        naive_s=round(t_naive, 2),
        extract_s=round(t_fast, 2),
        naive_tokens_per_s=round(n_tokens / t_naive),
        extract_tokens_per_s=round(n_tokens / t_fast),
        speedup=round(t_naive / t_fast, 2),
        naive_cpu_s=round(c_naive, 2),
        extract_cpu_s=round(c_fast, 2),
        cpu_speedup=round(c_naive / c_fast, 2),
        load_average=os.getloadavg()[0],
        max_abs_diff=float(np.abs(naive - ex.word_vectors)[:, same].max()),
        words_compared=int(same.sum()),
    )
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
