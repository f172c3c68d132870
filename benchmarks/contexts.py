"""Features in context (compute/contexts.py): what the bigger corpus and the token pass cost, and which
`sae.train_on` is better for contextual runs.

1. corpus: the default plan's MiniLM corpus (Lee, plus every English STS-B split when LEXISCOPE_STS_DIR is
   set) vs Lee alone: sentences, tokens, and the extraction time of both, side by side.
2. train_on: for every MiniLM layer, an SAE of the default plan's settings trained on the word-type vectors and
   one trained on `train_tokens` corpus token vectors; both scored on the word vectors (FVU, dead share, mean
   concept score) and on held-out corpus tokens (FVU, dead share).
3. token pass: time and peak RSS above the starting RSS, on the default corpus with every layer's SAE, and on a
   100k-sentence synthetic corpus (seeded random sentences of the vocabulary's words). The synthetic run uses a
   2-layer random-init BERT of width 64 with MiniLM's tokenizer: it measures the pass's own memory (encodings,
   running tops, word contexts; at most one batch of hidden states per layer), not MiniLM's arithmetic, which
   this shared 2-core machine cannot do for 100k sentences in a benchmark's time.

python -m benchmarks --only contexts [--quick]
(quick: 300 / 1,200 sentences, 3 layers, 100 SAE steps, 5k synthetic sentences)
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import PeakMemory, bench_threads, rss_bytes
from compute.config import load_plan

HELD_OUT = 20_000  # corpus tokens the SAEs are scored on, never trained on


def _minilm_run():
    from compute import pipeline, sts

    plan = load_plan()
    cfg = next(r for r in plan.runs if r.model == "minilm-l6")
    return pipeline.prepare_corpus(cfg, sts.folder_of(cfg.sts, plan.sts_dir)), sts.folder_of(cfg.sts, plan.sts_dir)


def _scores(model, X, groups, n_groups) -> dict:
    from compute import features, sae

    acts = sae.encode_numpy(model, X)
    out = dict(fvu=sae.fvu(model, X, acts), dead=float((acts.getnnz(0) == 0).mean()))
    if n_groups:
        out["mono_mean"] = float(np.mean(features.concept_scores(acts, groups, n_groups)[1]))
    return out


def run(quick: bool = False, threads: int | None = None) -> dict:
    import torch

    from compute import contextual, sae, vocabulary

    torch.set_num_threads(bench_threads() if threads is None else threads or torch.get_num_threads())
    cfg, folder = _minilm_run()
    tok, model = contextual.load_transformer(cfg.model)
    lee = contextual.read_corpora("lee")
    sentences = contextual.read_corpora(cfg.corpus, folder)
    if quick:
        lee, sentences = lee[:300], sentences[:1200]
    vocab = vocabulary.build(cfg.vocabulary)
    layers = [0, 3, 6] if quick else list(range(model.config.num_hidden_layers + 1))
    n_train = 4000 if quick else cfg.sae.train_tokens
    held_out = 2000 if quick else HELD_OUT
    out = dict(corpus=cfg.corpus, n_sentences=len(sentences), n_sentences_lee=len(lee), layers=layers)

    # 1. what the bigger corpus costs: extraction of the word vectors (+ token sample), Lee vs Lee + STS-B
    timings = {}
    for name, corpus in (("lee", lee), ("default", sentences)):
        t0 = time.perf_counter()
        ext = contextual.extract(
            tok, model, corpus, vocab.words, layers, token_sample=n_train + held_out, seed=0, batch_size=cfg.batch_size
        )
        timings[name] = time.perf_counter() - t0
        out[f"tokens_{name}"] = ext.stats["n_tokens"]
        out[f"isolated_types_{name}"] = ext.stats["n_isolated_types"]
    out["extract_s"] = timings
    out["extract_ratio"] = timings["default"] / timings["lee"]

    # 2. train_on: words vs tokens, scored on words and on held-out tokens
    sae_cfg = cfg.sae.model_copy(update={"steps": 100} if quick else {})
    table, saes = [], {}
    for i, layer in enumerate(ext.layers):
        T = ext.token_vectors[i]
        perm = np.random.default_rng(0).permutation(len(T))
        train_T, held_T = T[perm[:n_train]], T[perm[n_train:]]
        row = {"layer": layer}
        for train_on, X_train in (("words", ext.word_vectors[i]), ("tokens", train_T)):
            t0 = time.perf_counter()
            m = sae.fit(X_train, sae_cfg.model_copy(update={"train_on": train_on}))
            if train_on == "tokens":
                saes[layer] = m
            row[f"{train_on}_train_s"] = time.perf_counter() - t0
            w = _scores(m, ext.word_vectors[i], vocab.groups, len(vocab.group_names))
            t = _scores(m, held_T, np.full(len(held_T), -1, np.int16), 0)
            row.update({f"{train_on}:word_{k}": v for k, v in w.items()})
            row.update({f"{train_on}:token_{k}": v for k, v in t.items()})
        table.append(row)
    out["train_on"] = table
    out["train_on_sizes"] = dict(train_tokens=len(train_T), held_out_tokens=len(held_T), words=len(vocab.words))
    mean = {k: float(np.mean([r[k] for r in table])) for k in table[0] if ":" in k}
    out["train_on_mean"] = mean

    # 3. the token pass: default corpus, every layer's SAE (trained on tokens), time and peak RSS
    del ext
    out["token_pass_default"] = _measure_pass(tok, model, sentences, vocab.words, saes, cfg)
    # ... and 100k synthetic sentences through a small random-init BERT (see the module docstring)
    out["token_pass_synthetic"] = _synthetic(tok, vocab.words, 5_000 if quick else 100_000, cfg, sae_cfg)
    out["note"] = "2-core VM shared with other helpers; torch threads = 1; times are indicative"
    out["table"] = _table(out)
    return out


def _row(measure, pipeline, baseline, unit="", ratio=None, target="", met=None) -> dict:
    return dict(
        benchmark="contexts",
        measure=measure,
        pipeline=pipeline,
        baseline=baseline,
        unit=unit,
        ratio=ratio,
        target=target,
        met=met,
    )


def _table(out: dict) -> list[dict]:
    e = out["extract_s"]
    rows = [
        _row(
            "extraction: default corpus (lexiscope) vs Lee alone (baseline)",
            e["default"],
            e["lee"],
            "s",
            e["lee"] / e["default"],
        )
    ]
    for r in out["train_on"]:
        rows.append(
            _row(
                f"L{r['layer']} word FVU: train_on tokens (lexiscope) vs words",
                r["tokens:word_fvu"],
                r["words:word_fvu"],
            )
        )
        rows.append(
            _row(f"L{r['layer']} held-out token FVU: tokens vs words", r["tokens:token_fvu"], r["words:token_fvu"])
        )
    for key in ("token_pass_default", "token_pass_synthetic"):
        p = out[key]
        rows.append(
            _row(
                f"{key}: peak RSS above start vs one batch of all layers ({p['sentences']:,} sentences)",
                p["peak_rss_above_start_mb"],
                p["one_batch_all_layers_mb"],
                "MiB",
            )
        )
    return rows


def _measure_pass(tok, model, sentences, words, saes, cfg) -> dict:
    from compute import contexts

    rows = []
    base = rss_bytes()
    with PeakMemory(0.05) as mem:
        t0 = time.perf_counter()
        contexts.token_pass(
            tok,
            model,
            sentences,
            words,
            saes,
            cfg.contexts,
            batch_size=cfg.batch_size,
            on_batch=lambda layer, n: rows.append(n),
        )
        seconds = time.perf_counter() - t0
    d = model.config.hidden_size
    biggest = max(rows)
    return dict(
        sentences=len(sentences),
        layers=len(saes),
        seconds=seconds,
        peak_rss_above_start_mb=(mem.peak - base) / 2**20,
        largest_batch_rows=biggest,
        one_batch_all_layers_mb=biggest * d * 4 * (model.config.num_hidden_layers + 1) / 2**20,
    )


def _synthetic(tok, words, n: int, cfg, sae_cfg) -> dict:
    import torch
    from transformers import BertConfig, BertModel

    from compute import sae

    rng = np.random.default_rng(0)
    pool = np.asarray([w for w in words[:5000] if w.isalpha()], dtype=object)
    lengths = rng.integers(6, 20, n)
    sentences = [" ".join(rng.choice(pool, k)).capitalize() + "." for k in lengths]
    torch.manual_seed(0)
    small = BertModel(
        BertConfig(
            vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
        )
    ).eval()
    X = torch.randn(2000, 64).numpy()
    saes = {layer: sae.fit(X, sae_cfg.model_copy(update={"d_sae": 512, "k": 8, "steps": 50})) for layer in (0, 1, 2)}

    out = _measure_pass(tok, small, sentences, list(pool), saes, cfg)
    out["model"] = "random-init BERT, 2 layers, width 64, MiniLM tokenizer"
    return out
