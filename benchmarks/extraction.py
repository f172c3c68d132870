"""Benchmark 1: contextual extraction, MiniLM on the lee corpus, all 7 layers.

compute.contextual.extract (length-bucketed batches, every layer from one pass, vectorised scatter-add)
against benchmarks.extraction_baseline.naive_extract (one sentence per forward pass, default tokenizer
settings, Python loops per word), on the same sentences and words, repeats interleaved."""

from __future__ import annotations

import re

import numpy as np

from benchmarks.common import bench_threads, interleaved, ratio, row, stats, torch_threads

TARGET = 3.0


def _sentences(all_sentences: list[str], every: int, limit: int | None) -> list[str]:
    picked = all_sentences[::every]
    return picked[:limit] if limit else picked


def run(
    quick: bool = False,
    repeats: int | None = None,
    threads: int | None = None,
    every: int | None = None,
    batch_size: int = 64,
) -> dict:
    import torch

    from benchmarks.extraction_baseline import naive_extract
    from compute.contextual import extract, load_transformer, read_corpus

    repeats = repeats or (2 if quick else 5)
    threads = bench_threads() if threads is None else threads
    every = every or (1 if quick else 8)
    tok, model = load_transformer("minilm-l6")
    corpus = read_corpus("lee")
    sentences = _sentences(corpus, every, 16 if quick else None)
    # Words seen in these sentences, so both sides do corpus work only (as in extraction_baseline.py).
    words = sorted({w.lower() for s in sentences for w in re.findall(r"[^\W\d_]+", s)})
    n_tokens = sum(len(x) for x in tok(sentences, truncation=True)["input_ids"])
    warm = sentences[:4]

    with torch_threads(threads):
        # Warm both code paths on a few sentences (first-call allocations, tokenizer caches).
        naive_extract(tok, model, warm, words[:50])
        extract(tok, model, warm, words[:50], None, token_sample=100, batch_size=batch_size)
        times = interleaved(
            {
                "naive": lambda: naive_extract(tok, model, sentences, words),
                "pipeline": lambda: extract(
                    tok, model, sentences, words, None, token_sample=10000, batch_size=batch_size
                ),
            },
            repeats,
            warmup=False,
        )
        used_threads = torch.get_num_threads()

    naive_vecs, naive_n = times["_results"]["naive"]
    ex = times["_results"]["pipeline"]
    same = (naive_n == ex.n_contexts) & (naive_n > 0)
    max_diff = float(np.abs(naive_vecs - ex.word_vectors)[:, same].max()) if same.any() else None

    t_naive, t_pipe = stats(times["naive"]), stats(times["pipeline"])
    tps = lambda t: stats([n_tokens / x for x in t["values"]], "tokens/s")  # noqa: E731
    speedup = ratio(t_naive, t_pipe)
    figures = dict(
        naive_s=t_naive,
        pipeline_s=t_pipe,
        naive_tokens_per_s=tps(t_naive),
        pipeline_tokens_per_s=tps(t_pipe),
        speedup=speedup,
        naive_cpu_s=stats(times["_cpu"]["naive"]),
        pipeline_cpu_s=stats(times["_cpu"]["pipeline"]),
        max_abs_diff_vs_naive=max_diff,
        words_compared=int(same.sum()),
    )
    figures["cpu_time_speedup"] = ratio(figures["naive_cpu_s"], figures["pipeline_cpu_s"])
    params = dict(
        model="minilm-l6",
        corpus="lee",
        sentences=len(sentences),
        corpus_sentences=len(corpus),
        subset=f"every {every}th sentence of lee" if every > 1 else "all of lee",
        tokens=int(n_tokens),
        words=len(words),
        layers=int(model.config.num_hidden_layers) + 1,
        torch_threads=used_threads,
        batch_size=batch_size,
        repeats=repeats,
        isolated_types=int(ex.stats.get("n_isolated_types", 0)),
    )
    notes = [
        f"both sides run with torch threads = {used_threads} (LEXISCOPE_BENCH_THREADS): other jobs share "
        "these 2 cores, and 2 OpenMP threads under oversubscription slow both sides erratically",
        "pipeline time includes encoding, in isolation, the few words whose regex split differs "
        f"({params['isolated_types']} types)",
    ]
    table = [
        row(
            "1 extraction",
            f"MiniLM lee all layers ({len(sentences)} sent., {n_tokens} tok), tokens/s",
            figures["pipeline_tokens_per_s"]["median"],
            figures["naive_tokens_per_s"]["median"],
            speedup,
            f">= {TARGET:g}x",
            None if speedup is None else speedup >= TARGET,
            "tok/s",
        ),
    ]
    return dict(params=params, figures=figures, table=table, notes=notes)
