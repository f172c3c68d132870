"""Benchmark 7: across layers and across runs, on the default plan's data (MiniLM on lee, all 7 layers, and GloVe;
the plan's vocabulary of the top 20,000 English words plus concept groups).

- Aligned maps: compute.alignment.aligned_maps (AlignedUMAP) against independent per-layer maps (the pipeline's
  UMAP, compute.alignment.independent_maps), 2-D and 3-D. Steadiness = mean displacement of a word between
  neighbouring layers' maps after an orthogonal Procrustes fit, both maps centred and scaled to unit RMS radius;
  target: aligned at least 3x steadier. Faithfulness = neighbour preservation (k = 15) of each map. Time of each.
- Lineage: one SAE per layer (the plan's SAE settings), matched between neighbouring layers (compute.lineage):
  the cosine threshold, carry-over per layer, lineage lengths, and the time of the matching.
- Compare (compute.compare): linear CKA and top-10 neighbour Jaccard, GloVe vs MiniLM L6 and MiniLM L0 vs L6 on
  their shared words, beside the shuffled-rows CKA and random-overlap baselines.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import ortho_group

from benchmarks.common import bench_threads, row, stats, torch_threads

TARGET_STEADIER = 3.0
QUICK = {"top_n": 600, "sentences": 150, "epochs": 30, "sae": {"d_sae": 128, "k": 4, "steps": 150}}


def _plan_runs():
    from compute.config import load_plan

    plan = load_plan()
    glove = next(r for r in plan.runs if r.model == "glove-6b-50d")
    minilm = next(r for r in plan.runs if r.model == "minilm-l6")
    return glove, minilm


def _minilm_layers(cfg, quick: bool):
    """The plan's MiniLM word vectors at every layer: (vocabulary, (7, n, 384) float32)."""
    from compute import contextual, vocabulary

    vcfg = cfg.vocabulary.model_copy(update={"top_n": QUICK["top_n"]}) if quick else cfg.vocabulary
    vocab = vocabulary.build(vcfg)
    tok, model = contextual.load_transformer(cfg.model, "cpu")
    sentences = contextual.read_corpus(cfg.corpus or "lee")
    if quick:
        sentences = sentences[: QUICK["sentences"]]
    ext = contextual.extract(
        tok, model, sentences, vocab.words, None, token_sample=0, seed=cfg.geometry.seed, batch_size=cfg.batch_size
    )
    return vocab, ext.word_vectors


def _glove(cfg, quick: bool):
    from compute import embeddings, vocabulary

    vcfg = cfg.vocabulary.model_copy(update={"top_n": QUICK["top_n"]}) if quick else cfg.vocabulary
    vocab = vocabulary.build(vcfg)
    source = embeddings.load_static(cfg.model)
    rows = source.lookup(vocab.words)
    keep = np.flatnonzero(rows >= 0)
    return vocab.subset(keep), source.vectors[rows[keep]]


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _maps(layers, pcfg, dims) -> tuple[dict, list]:
    from compute import alignment

    figures, table = {}, []
    for dim in dims:
        indep, t_ind, c_ind = _timed(lambda dim=dim: alignment.independent_maps(layers, dim, pcfg))
        aligned, t_al, c_al = _timed(lambda dim=dim: alignment.aligned_maps(layers, dim, pcfg))
        s_ind, s_al = alignment.steadiness(indep), alignment.steadiness(aligned)
        p_ind = [alignment.neighbour_preservation(X, m, pcfg.n_neighbors) for X, m in zip(layers, indep)]
        p_al = [alignment.neighbour_preservation(X, m, pcfg.n_neighbors) for X, m in zip(layers, aligned)]
        steadier = float(s_ind.mean() / s_al.mean())
        f = {
            "independent_displacement": s_ind.round(4).tolist(),
            "aligned_displacement": s_al.round(4).tolist(),
            "independent_mean": float(s_ind.mean()),
            "aligned_mean": float(s_al.mean()),
            "steadier": steadier,
            "independent_preservation": np.round(p_ind, 4).tolist(),
            "aligned_preservation": np.round(p_al, 4).tolist(),
            "independent_s": stats([t_ind]),
            "aligned_s": stats([t_al]),
            "independent_cpu_s": stats([c_ind]),
            "aligned_cpu_s": stats([c_al]),
            "time_ratio": t_al / t_ind,
            "cpu_time_ratio": c_al / c_ind,
        }
        figures[f"{dim}d"] = f
        table += [
            row(
                "7 layers",
                f"{dim}-D maps, 7 layers: mean word displacement between neighbouring layers (lower is steadier)",
                f["aligned_mean"],
                f["independent_mean"],
                steadier,
                f">= {TARGET_STEADIER:g}x steadier",
                steadier >= TARGET_STEADIER,
            ),
            row(
                "7 layers",
                f"{dim}-D maps: neighbour preservation (k={pcfg.n_neighbors}), mean over layers",
                float(np.mean(p_al)),
                float(np.mean(p_ind)),
            ),
            row(
                "7 layers",
                f"{dim}-D maps, all 7 layers: time (CPU {c_al:.0f} s vs {c_ind:.0f} s)",
                t_al,
                t_ind,
                t_ind / t_al,
                unit="s",
            ),
        ]
    return figures, table


def _lineage(layers, sae_cfg) -> tuple[dict, list]:
    from compute import lineage, sae

    decoders, acts, fit_s = [], [], []
    for X in layers:
        model, t, _ = _timed(lambda X=X: sae.fit(X, sae_cfg, device="cpu"))
        fit_s.append(t)
        decoders.append(model.W_dec.detach().cpu().numpy())
        acts.append(sae.encode_numpy(model, X))
    (ups, _, lin), t_match, c_match = _timed(lambda: lineage.trace_layers(decoders, acts))
    # Null: the upper layer's decoder turned by a random rotation (its own geometry kept, any correspondence
    # with the lower layer lost); the share of features whose best match still reaches the threshold.
    rotation = ortho_group.rvs(decoders[0].shape[1], random_state=0)
    null = [lineage.decoder_matches(a, b @ rotation)[1] for a, b in zip(decoders[:-1], decoders[1:])]
    null_share = [float(np.mean(c >= t)) for c, t in zip(null, lin.thresholds)]
    # Controls for L0 -> L1: every layer's SAE starts from the same seeded decoder, so some of a match may be
    # shared initialisation; refit L1 with another seed. And the ceiling: L0 refitted with another seed.
    other_seed = sae_cfg.model_copy(update={"seed": sae_cfg.seed + 1})
    l1_other = sae.fit(layers[1], other_seed, device="cpu").W_dec.detach().cpu().numpy()
    l0_other = sae.fit(layers[0], other_seed, device="cpu").W_dec.detach().cpu().numpy()
    t0 = lin.thresholds[0]
    controls = {
        "L0_L1_other_seed_share_above": float(np.mean(lineage.decoder_matches(decoders[0], l1_other)[1] >= t0)),
        "L0_L0_other_seed_share_above": float(np.mean(lineage.decoder_matches(decoders[0], l0_other)[1] >= t0)),
    }
    lengths = np.concatenate([(c >= 0).sum(axis=1) for c in lin.chains])
    cos_up = [float(np.median(u.cos)) for u in ups]
    agree = [float(np.mean(u.cos_idx == u.corr_idx)) for u in ups]
    F = len(decoders[0])
    f = {
        "d_sae": F,
        "threshold": lin.thresholds.round(4).tolist(),
        "carried_up": lin.carried_up.tolist(),
        "carried_from_below": lin.carried_from_below.tolist(),
        "median_best_cos_up": np.round(cos_up, 4).tolist(),
        "cos_and_corr_agree_up": np.round(agree, 4).tolist(),
        "rotated_null_share_above": null_share,
        "rotated_null_max_cos": [float(c.max()) for c in null],
        **controls,
        "lineage_length_mean": float(lengths.mean()),
        "full_depth_share": float(np.mean(lengths == len(layers))),
        "match_s": stats([t_match]),
        "match_cpu_s": stats([c_match]),
        "sae_fit_s": stats(fit_s),
    }
    table = [
        row(
            "7 layers",
            f"lineage: features (of {F}) carried to the next layer, L0..L5 (threshold {lin.thresholds[0]:.3f})",
            " / ".join(str(c) for c in lin.carried_up[:-1]),
            None,
        ),
        row(
            "7 layers",
            "lineage: share of features matched above the threshold, L0->L1 (baseline: the upper "
            "decoder randomly rotated)",
            float(lin.carried_up[0] / F),
            null_share[0],
        ),
        row(
            "7 layers",
            "lineage controls: share above the threshold, L0->L1 with L1's SAE fitted from another seed "
            "(baseline: L0 against L0 refitted from another seed, the reproducibility ceiling)",
            controls["L0_L1_other_seed_share_above"],
            controls["L0_L0_other_seed_share_above"],
        ),
        row(
            "7 layers",
            "lineage: matching all 6 pairs of layers (decoder cosine + activation correlation)",
            t_match,
            unit="s",
        ),
    ]
    return f, table


def _compare(glove_vocab, X_glove, vocab, layers, repeats) -> tuple[dict, list]:
    from compute import compare

    masks = {name: vocab.groups == g for g, name in enumerate(vocab.group_names)}
    pairs = {
        "glove_vs_minilm_L6": (glove_vocab.words, X_glove, vocab.words, layers[-1]),
        "minilm_L0_vs_L6": (vocab.words, layers[0], vocab.words, layers[-1]),
    }
    figures, table = {}, []
    for name, (wa, Xa, wb, Xb) in pairs.items():
        labels = (
            masks if wa is vocab.words else {n: glove_vocab.groups == g for g, n in enumerate(glove_vocab.group_names)}
        )
        c, t, _ = _timed(
            lambda wa=wa, Xa=Xa, wb=wb, Xb=Xb, labels=labels: compare.compare_runs(
                wa, Xa, wb, Xb, labels_a=labels, repeats=repeats
            )
        )
        top, bottom = compare.extremes(c.jaccard, 10)
        figures[name] = {
            "shared_words": len(c.words),
            "cka": c.cka,
            "cka_shuffled": stats(c.cka_shuffled, ""),
            "cka_labels": {
                k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                for k, v in c.cka_labels.items()
            },
            "jaccard_mean": float(c.jaccard.mean()),
            "jaccard_median": float(np.median(c.jaccard)),
            "jaccard_random": c.jaccard_random,
            "agree_most": [c.words[i] for i in top],
            "agree_least": [c.words[i] for i in bottom],
            "compare_s": t,
        }
        label = name.replace("_vs_", " vs ").replace("_", " ")
        table += [
            row(
                "7 compare",
                f"{label}: linear CKA on {len(c.words)} shared words (baseline: rows shuffled)",
                c.cka,
                float(np.mean(c.cka_shuffled)),
            ),
            row(
                "7 compare",
                f"{label}: mean top-10 neighbour Jaccard (baseline: random sets)",
                float(c.jaccard.mean()),
                c.jaccard_random,
            ),
        ]
    return figures, table


def run(quick: bool = False) -> dict:
    import numba

    from compute.config import ProjectionConfig

    threads = bench_threads()
    glove_cfg, minilm_cfg = _plan_runs()
    p = minilm_cfg.projections
    pcfg = ProjectionConfig(
        n_neighbors=p.n_neighbors,
        min_dist=p.min_dist,
        seed=p.seed,
        umap_epochs=QUICK["epochs"] if quick else p.umap_epochs,
    )
    sae_cfg = minilm_cfg.sae.model_copy(update=QUICK["sae"]) if quick else minilm_cfg.sae
    numba_threads = numba.get_num_threads()
    if threads:
        numba.set_num_threads(min(threads, numba_threads))
    try:
        with torch_threads(threads or None):
            (vocab, X), t_extract, _ = _timed(lambda: _minilm_layers(minilm_cfg, quick))
            layers = [np.ascontiguousarray(x) for x in X]
            maps_f, maps_t = _maps(layers, pcfg, (2,) if quick else (2, 3))
            lin_f, lin_t = _lineage(layers, sae_cfg)
            glove_vocab, X_glove = _glove(glove_cfg, quick)
            cmp_f, cmp_t = _compare(glove_vocab, X_glove, vocab, layers, repeats=2 if quick else 5)
    finally:
        numba.set_num_threads(numba_threads)
    params = {
        "model": minilm_cfg.model,
        "corpus": minilm_cfg.corpus,
        "words": len(vocab),
        "layers": len(layers),
        "glove_words": len(glove_vocab),
        "n_neighbors": pcfg.n_neighbors,
        "umap_epochs": pcfg.umap_epochs,
        "seed": pcfg.seed,
        "sae": sae_cfg.model_dump(mode="json"),
        "threads": threads,
        "extract_s": round(t_extract, 1),
    }
    notes = [
        (
            "each side of the map comparison ran once (minutes each), one after the other in one process, on 2 cores "
            "shared with other jobs: read the CPU times and the ratios, not the wall times"
        ),
        (
            "displacement is in units of each map's RMS radius, after an orthogonal Procrustes fit of the upper "
            "layer's map onto the lower's over their shared words"
        ),
        (
            "neighbour preservation: share of a word's 15 cosine neighbours (in the vectors) among its 15 nearest in "
            "the map; a random map would score about 15 / n"
        ),
    ]
    return {
        "params": params,
        "figures": {"maps": maps_f, "lineage": lin_f, "compare": cmp_f},
        "table": maps_t + lin_t + cmp_t,
        "notes": notes,
    }


def stored_steadiness(store_root) -> dict:
    """Aligned 2-D word maps of a store's MiniLM run (all layers), fitted here with the pipeline's settings, against
    the independent per-layer 2-D maps the store holds: steadiness and neighbour preservation of each."""
    from compute import alignment
    from compute.config import ProjectionConfig
    from store import Catalog
    from store.schema import EMBEDDINGS, PROJECTIONS

    catalog = Catalog(store_root)
    runs = sorted((catalog.open(r) for r in catalog.run_ids() if r.startswith("minilm")), key=lambda r: r.layer)
    X = [r.array(EMBEDDINGS) for r in runs]
    independent = [r.array(PROJECTIONS.umap2d) for r in runs]
    pcfg = ProjectionConfig(**runs[0].config.get("projections", {}))
    aligned, seconds = _timed(lambda: alignment.aligned_maps(X, 2, pcfg))[:2]
    s_al, s_in = alignment.steadiness(aligned), alignment.steadiness(independent)
    return {
        "runs": [r.run_id for r in runs],
        "aligned_per_pair": np.round(s_al, 4).tolist(),
        "independent_per_pair": np.round(s_in, 4).tolist(),
        "steadier": float(np.mean(s_in) / np.mean(s_al)),
        "preservation_aligned": [round(alignment.neighbour_preservation(x, m), 4) for x, m in zip(X, aligned)],
        "preservation_independent": [round(alignment.neighbour_preservation(x, m), 4) for x, m in zip(X, independent)],
        "aligned_fit_s": round(seconds, 1),
    }


if __name__ == "__main__":
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m benchmarks.layers", description="steadiness on a stored default plan")
    ap.add_argument("--store", type=Path, required=True, help="a store holding the default plan's MiniLM run")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = ap.parse_args()
    figures = stored_steadiness(args.store)
    print(json.dumps(figures))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
