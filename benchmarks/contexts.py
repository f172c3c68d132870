"""Features in context (compute/contexts.py): what the bigger corpus and the token pass cost, and which
`sae.train_on` is better for contextual runs.

1. corpus: the default plan's MiniLM corpus (Lee, plus every English STS-B split when LEXISCOPE_STS_DIR is
   set) vs Lee alone: sentences, tokens, and the extraction time of both, side by side.
2. train_on: for every MiniLM layer, an SAE of the default plan's settings trained on the word-type vectors and
   one trained on `train_tokens` corpus token vectors; both scored on the word vectors (FVU, dead share, mean
   best concept F1 over the run's labels, DistRatio intrusion) and on held-out corpus tokens (FVU, dead share).
3. token pass: peak RSS of `contexts.token_pass`, each measured in a fresh process (so memory freed by earlier
   steps cannot hide the pass's own), above the RSS once the model, SAEs and sentences are loaded:
   - the default corpus through MiniLM with every layer's SAE of step 2 (trained on tokens);
   - synthetic corpora of SYNTHETIC_SIZES sentences (seeded random sentences of the vocabulary's words), through
     a 2-layer random-init BERT of width 64 with MiniLM's tokenizer. This measures the pass's own memory as the
     corpus grows (encodings, running tops, word contexts; at most one batch of hidden states per layer), not
     MiniLM's arithmetic, which this shared 2-core machine cannot do for 100k sentences in a benchmark's time.

python -m benchmarks --only contexts [--quick]
(quick: 300 / 1,200 sentences, 3 layers, 100 SAE steps, 1k and 5k synthetic sentences)
"""

from __future__ import annotations

import gc
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from benchmarks.common import PeakMemory, bench_threads, rss_bytes
from compute.config import load_plan

HELD_OUT = 20_000  # corpus tokens the SAEs are scored on, never trained on
SYNTHETIC_SIZES = (10_000, 30_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


def _minilm_run():
    from compute import pipeline, sts

    plan = load_plan()
    cfg = next(r for r in plan.runs if r.model == "minilm-l6")
    return pipeline.prepare_corpus(cfg, sts.folder_of(cfg.sts, plan.sts_dir)), sts.folder_of(cfg.sts, plan.sts_dir)


def _scores(model, X, labs=None) -> dict:
    from compute import concepts, interpretability, sae

    acts = sae.encode_numpy(model, X)
    out = dict(fvu=sae.fvu(model, X, acts), dead=float((acts.getnnz(0) == 0).mean()))
    if labs is not None:
        out["concept_f1"] = float(np.mean(concepts.concept_scores(acts, labs.member).best_f1))
        out["intrusion"] = interpretability.dist_ratio(acts, X, positive_only=True)[1]
    return out


def run(quick: bool = False, threads: int | None = None) -> dict:
    import torch

    from compute import contextual, labels, sae, vocabulary

    n_threads = bench_threads() if threads is None else threads or torch.get_num_threads()
    torch.set_num_threads(n_threads)
    cfg, folder = _minilm_run()
    tok, model = contextual.load_transformer(cfg.model)
    lee = contextual.read_corpora("lee")
    sentences = contextual.read_corpora(cfg.corpus, folder)
    if quick:
        lee, sentences = lee[:300], sentences[:1200]
    vocab = vocabulary.build(cfg.vocabulary)
    labs = labels.run_labels(vocab.words, vocab.groups, vocab.group_names)
    layers = [0, 3, 6] if quick else list(range(model.config.num_hidden_layers + 1))
    n_train = 4000 if quick else cfg.sae.train_tokens
    held_out = 2000 if quick else HELD_OUT
    out = dict(
        corpus=cfg.corpus, n_sentences=len(sentences), n_sentences_lee=len(lee), layers=layers, n_labels=len(labs.names)
    )

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
                saes[layer] = (m.to_arrays(), m.config)
            row[f"{train_on}_train_s"] = time.perf_counter() - t0
            row.update({f"{train_on}:word_{k}": v for k, v in _scores(m, ext.word_vectors[i], labs).items()})
            row.update({f"{train_on}:token_{k}": v for k, v in _scores(m, held_T).items()})
        table.append(row)
        print(f"[contexts] L{layer}: {row}", flush=True)
    out["train_on"] = table
    out["train_on_sizes"] = dict(train_tokens=len(train_T), held_out_tokens=len(held_T), words=len(vocab.words))
    out["train_on_mean"] = {k: float(np.nanmean([r[k] for r in table])) for k in table[0] if ":" in k}

    # 3. the token pass, each in a fresh process: the default corpus with every layer's SAE, then synthetic sizes
    del ext
    gc.collect()
    job = dict(threads=n_threads, batch_size=cfg.batch_size, contexts=cfg.contexts.model_dump())
    out.update(_token_pass_memory(job, sentences, vocab.words, saes, QUICK_SIZES if quick else SYNTHETIC_SIZES))
    out["note"] = "2-core VM shared with other helpers; torch threads = 1; times are indicative"
    out["table"] = _table(out)
    return out


def _token_pass_memory(job: dict, sentences, words, saes, sizes) -> dict:
    """Peak memory of the token pass on `sentences` with `saes` ({layer: (arrays, config)}) and on synthetic
    corpora of `sizes` sentences, each in a fresh process."""
    spawn = get_context("spawn")
    out = {}
    default = dict(job, model="minilm-l6", sentences=sentences, words=words, saes=saes)
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        out["token_pass_default"] = pool.submit(_pass_child, default).result()
    print(f"[contexts] default: {out['token_pass_default']}", flush=True)
    # glibc keeps freed heap memory (its mmap threshold rises with the large per-batch arrays): the same pass with
    # a fixed threshold shows how much of the peak is the allocator's retention, not memory the pass holds
    os.environ[MMAP_ENV] = str(2**20)
    try:
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            r = pool.submit(_pass_child, default).result()
    finally:
        os.environ.pop(MMAP_ENV)
    out["token_pass_default_fixed_mmap_threshold"] = dict(r, env=f"{MMAP_ENV}={2**20}")
    print(f"[contexts] default, {MMAP_ENV}: {r}", flush=True)
    pool_words = [w for w in words[:5000] if w.isalpha()]
    out["token_pass_synthetic"] = []
    for n in sizes:
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            r = pool.submit(_pass_child, dict(job, model="synthetic", n=n, words=pool_words)).result()
        out["token_pass_synthetic"].append(r)
        print(f"[contexts] synthetic {n:,}: {r}", flush=True)
    out["synthetic_model"] = "random-init BERT, 2 layers, width 64, MiniLM tokenizer; SAEs 512 features, k 8"
    return out


def memory(quick: bool = False) -> dict:
    """Step 3 alone (the token pass's peak memory), with SAEs of the default plan's shape fitted 50 steps on
    Gaussian data instead of step 2's: the pass holds the same arrays whatever the weights (a TopK SAE fires
    exactly k features per token)."""
    import torch

    from compute import contextual, sae, vocabulary

    n_threads = bench_threads()
    torch.set_num_threads(n_threads)
    cfg, folder = _minilm_run()
    sentences = contextual.read_corpora(cfg.corpus, folder)[: 1200 if quick else None]
    vocab = vocabulary.build(cfg.vocabulary)
    X = np.random.default_rng(0).standard_normal((4096, 384)).astype(np.float32)
    m = sae.fit(X, cfg.sae.model_copy(update={"steps": 50}))
    saes = {layer: (m.to_arrays(), m.config) for layer in ([0, 3, 6] if quick else range(7))}
    job = dict(threads=n_threads, batch_size=cfg.batch_size, contexts=cfg.contexts.model_dump())
    out = _token_pass_memory(job, sentences, vocab.words, saes, QUICK_SIZES if quick else SYNTHETIC_SIZES)
    out["saes"] = "default shape (2,048 features, k 16) fitted 50 steps on Gaussian data"
    return out


def _synthetic(words: list[str], n: int) -> list[str]:
    rng = np.random.default_rng(0)
    pool = np.asarray(words, dtype=object)
    return [" ".join(rng.choice(pool, k)).capitalize() + "." for k in rng.integers(6, 20, n)]


def _pass_child(job: dict) -> dict:
    """In a fresh process: load the model and SAEs, build the sentences, then measure the token pass alone."""
    import torch

    from compute import contexts, contextual, sae
    from compute.config import ContextsConfig

    torch.set_num_threads(job["threads"])
    tok, model = contextual.load_transformer("minilm-l6")
    if job["model"] == "synthetic":
        from transformers import BertConfig, BertModel

        sentences = _synthetic(job["words"], job["n"])
        torch.manual_seed(0)
        model = BertModel(
            BertConfig(
                vocab_size=tok.vocab_size,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=128,
            )
        ).eval()
        X = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
        cfg = sae.stored_config({"arch": "topk", "d_sae": 512, "k": 8, "steps": 50, "d_in": 64})
        saes = {layer: sae.fit(X, cfg) for layer in (0, 1, 2)}
    else:
        sentences = job["sentences"]
        saes = {layer: sae.from_arrays(a, c) for layer, (a, c) in job["saes"].items()}
    job.pop("saes", None), job.pop("sentences", None)
    rows = []
    gc.collect()
    base = _reset_peak_rss()
    with PeakMemory(0.02) as mem:
        t0 = time.perf_counter()
        out = contexts.token_pass(
            tok,
            model,
            sentences,
            job["words"],
            saes,
            ContextsConfig(**job["contexts"]),
            batch_size=job["batch_size"],
            on_batch=lambda layer, n: rows.append(n),
        )
        seconds = time.perf_counter() - t0
    hwm = _peak_rss()
    n_tokens = next(iter(out.values()))["contexts"]["n_tokens"]
    d, L = model.config.hidden_size, model.config.num_hidden_layers + 1
    return dict(
        model=job["model"],
        sentences=len(sentences),
        tokens=int(n_tokens),
        layers=len(saes),
        seconds=seconds,
        start_rss_mb=base / 2**20,
        peak_rss_above_start_mb=(max(mem.peak, hwm) - base) / 2**20,
        peak_from="kernel high-water mark (VmHWM, reset before the pass)" if hwm else "RSS sampled every 20 ms",
        largest_batch_rows=max(rows),
        one_batch_all_layers_mb=max(rows) * d * 4 * L / 2**20,
    )


def _reset_peak_rss() -> int:
    """Reset this process's kernel peak-RSS mark (Linux /proc/self/clear_refs, 5), so that the peak read after
    the pass is the pass's own and not the model loading's; returns the RSS now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return rss_bytes()


def _peak_rss() -> int:
    """VmHWM (bytes) of this process, 0 where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return 0


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
        for what, label in (("word_fvu", "word FVU"), ("word_dead", "word dead share"), ("token_fvu", "token FVU")):
            rows.append(
                _row(
                    f"L{r['layer']} {label}: train_on tokens (lexiscope) vs words",
                    r[f"tokens:{what}"],
                    r[f"words:{what}"],
                )
            )
        rows.append(
            _row(
                f"L{r['layer']} mean best concept F1: tokens vs words",
                r["tokens:word_concept_f1"],
                r["words:word_concept_f1"],
            )
        )
    before = [dict(p, model=f"{p['model']}, before the flat token arrays") for p in out.get("token_pass_before", [])]
    fixed = out.get("token_pass_default_fixed_mmap_threshold")
    for p in [
        out["token_pass_default"],
        *([dict(fixed, model="minilm-l6, fixed mmap threshold")] if fixed else []),
        *out["token_pass_synthetic"],
        *before,
    ]:
        rows.append(
            _row(
                f"token pass ({p['model']}, {p['sentences']:,} sentences): peak RSS above start vs one batch of all layers",
                p["peak_rss_above_start_mb"],
                p["one_batch_all_layers_mb"],
                "MiB",
            )
        )
    return rows
