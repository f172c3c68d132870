"""What a feature means, measured on the default GloVe run (issue 12): WordNet sense policy, the new concept
score against the old mono_score, and QVEC / intrusion for the SAE and its baselines.

    python -m benchmarks.labels [--seeds 0 1 2] [--minilm-layers 0 1 2 3 4 5 6] [--out PATH]

Quality figures, not timings (the machine is shared; the seconds are for orientation only). Inputs are those of
the default plan's first run (bundled GloVe 6B 50d, top 20k English words, topk SAE d_sae=1024 k=8), built the
way compute/pipeline.py builds them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from benchmarks import common
from compute import concepts, interpretability, labels
from compute.features import column_top

RESULTS_DIR = Path(__file__).parent / "results"
POLICIES = ("mfs", "share>=0.5", "share>=0.34", "share>=0.25", "share>=0.1", "any")
FLOOR_BINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.01)
TOP_FEATURES = 20


def glove_inputs():
    """(run config, vocabulary, X) of the default plan's GloVe run, as compute/pipeline.py builds them."""
    from compute import embeddings, vocabulary
    from compute.config import load_plan

    cfg = next(r for r in load_plan().runs if r.model == "glove-6b-50d")
    vocab = vocabulary.build(cfg.vocabulary)
    source = embeddings.load_static(cfg.model)
    rows = source.lookup(vocab.words)
    keep = np.flatnonzero(rows >= 0)
    return cfg, vocab.subset(keep), np.ascontiguousarray(source.vectors[rows[keep]], dtype=np.float32)


def policy_member(weights: np.ndarray, policy: str) -> np.ndarray:
    """Membership under a sense policy: 'mfs' = the dominant supersense only; 'share>=t' = every supersense
    with at least that share of the word's sense weight; 'any' = every supersense of any counted sense."""
    if policy == "mfs":
        member = np.zeros(weights.shape, bool)
        covered = np.flatnonzero(weights.sum(1) > 0)
        member[covered, weights[covered].argmax(1)] = True
        return member
    if policy == "any":
        return weights > 0
    return weights >= float(policy.split(">=")[1]) - 1e-6


def knn_coherence(member: np.ndarray, neighbours: np.ndarray) -> float:
    """Mean over labelled words of the share of their labelled nearest neighbours sharing a label with them."""
    M = sp.csr_matrix(member, dtype=np.float32)
    labelled = member.any(1)
    shares = []
    for i in np.flatnonzero(labelled):
        nb = neighbours[i][labelled[neighbours[i]]]
        if len(nb):
            shares.append(float(((M[nb] @ M[i].T).toarray().ravel() > 0).mean()))
    return float(np.mean(shares)) if shares else float("nan")


def policy_table(weights: np.ndarray, names: list[str], X: np.ndarray, k: int = 10, seed: int = 0) -> dict:
    """Coverage, labels per word, label sizes and embedding coherence (share of the k cosine-nearest
    neighbours sharing a label, against the same with labels shuffled across labelled words) per policy."""
    from sklearn.neighbors import NearestNeighbors

    Xu = X / np.linalg.norm(X, axis=1, keepdims=True)
    _, idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(Xu).kneighbors(Xu)
    idx = idx[:, 1:]
    rng = np.random.default_rng(seed)
    out = {}
    for policy in POLICIES:
        member = policy_member(weights, policy)
        covered = member.any(1)
        shuffled = member.copy()
        rows = np.flatnonzero(covered)
        shuffled[rows] = member[rng.permutation(rows)]
        coherence, chance = knn_coherence(member, idx), knn_coherence(shuffled, idx)
        counts = member.sum(0)
        out[policy] = {
            "coverage": float(covered.mean()),
            "labels_per_word": float(member[covered].sum(1).mean()),
            "knn10_same_label": coherence,
            "knn10_same_label_shuffled": chance,
            "lift": coherence / chance,
            "labels_with_20_words": int((counts >= concepts.MIN_LABEL_WORDS).sum()),
            "words_per_label": {names[j]: int(counts[j]) for j in np.argsort(-counts)},
        }
    return out


def old_mono_score(acts: sp.csr_matrix, groups: np.ndarray, n_groups: int):
    """The stored `mono_score` before issue 12 (compute/features.py concept_scores): max_g m_fg / (sum_g m_fg +
    m_f,none), m = mean activation over a group's words; returns (mono (F,), best group (F,), -1 none)."""
    csr = acts.tocsr()
    F = acts.shape[1]
    means = np.zeros((F, n_groups))
    for g in range(n_groups):
        rows = np.flatnonzero(groups == g)
        if len(rows):
            means[:, g] = np.asarray(csr[rows].mean(0)).ravel()
    none = np.flatnonzero(groups < 0)
    m_none = np.asarray(csr[none].mean(0)).ravel() if len(none) else np.zeros(F)
    best = means.max(1)
    denom = means.sum(1) + m_none
    mono = np.divide(best, denom, out=np.zeros(F), where=denom > 0)
    return mono, np.where(best > 0, means.argmax(1), -1)


def ranking_figures(
    order: np.ndarray,
    share: np.ndarray,
    score: np.ndarray,
    names: list[str],
    best: np.ndarray,
    feature_names: list[str],
) -> dict:
    top = order[:TOP_FEATURES]
    return {
        "median_top10_share": float(np.nanmedian(share[top])),
        "mean_top10_share": float(np.nanmean(share[top])),
        "features": [
            {
                "feature": int(f),
                "score": float(score[f]),
                "label": names[best[f]] if best[f] >= 0 else None,
                "top10_share": float(share[f]),
                "name": feature_names[f],
            }
            for f in top
        ],
    }


def feature_figures(
    acts: sp.csr_matrix, words: list[str], lab: labels.Labels, groups: np.ndarray, group_names: list[str]
) -> dict:
    """The new score's top-20 ranking (supersenses + groups), the old mono_score's, and the floor table."""
    top_words, _ = column_top(acts, 50)
    s = concepts.concept_scores(acts, lab.member)
    share = concepts.top_label_share(top_words, lab.member, s.best)
    names = concepts.feature_labels(top_words, words, lab.names, s.best, s.best_f1)
    order = np.argsort(-s.best_f1, kind="stable")
    new = ranking_figures(order, share, s.best_f1, lab.names, s.best, names)
    new["best_f1_median"] = float(np.median(s.best_f1))
    new["labelled_features"] = int((s.best_f1 >= concepts.LABEL_FLOOR).sum())
    new["label_counts"] = {
        lab.names[j]: int(c) for j, c in zip(*np.unique(s.best[s.best_f1 >= concepts.LABEL_FLOOR], return_counts=True))
    }

    mono, best_group = old_mono_score(acts, groups, len(group_names))
    G = labels.group_labels(groups, group_names)
    old_share = concepts.top_label_share(top_words, G.member, best_group)
    old = ranking_figures(np.argsort(-mono, kind="stable"), old_share, mono, G.names, best_group, names)
    old["features_above_0.9"] = int((mono > 0.9).sum())

    floors = []
    for lo, hi in itertools.pairwise(FLOOR_BINS):
        sel = (s.best_f1 >= lo) & (s.best_f1 < hi)
        floors.append(
            {
                "f1_from": lo,
                "f1_to": min(hi, 1.0),
                "features": int(sel.sum()),
                "median_top10_share": float(np.nanmedian(share[sel])) if sel.any() else None,
            }
        )
    return {"new_score": new, "old_mono_score": old, "f1_bins": floors}


def sae_quality(model, X, acts) -> dict:
    from compute import sae as sae_lib

    density = acts.getnnz(0) / acts.shape[0]
    return {
        "fvu": sae_lib.fvu(model, X, acts),
        "l0": float(acts.getnnz(1).mean()),
        "dead_frac": float((density == 0).mean()),
    }


def analyse_sae(
    X: np.ndarray,
    sae_cfg,
    words: list[str],
    lab: labels.Labels,
    ss: labels.Labels,
    groups: np.ndarray,
    group_names: list[str],
    seed: int,
    log,
    t0: float,
    tag: str,
) -> dict:
    """Train the SAE and its frozen-decoder twin on X; every figure of one (run, seed)."""
    from compute import sae as sae_lib

    model = sae_lib.fit(X, sae_cfg)
    acts = sae_lib.encode_numpy(model, X)
    log(f"{tag}: SAE trained ({time.time() - t0:.0f} s)")
    frozen = sae_lib.fit(X, sae_cfg, freeze_decoder=True)
    acts_rd = sae_lib.encode_numpy(frozen, X)
    log(f"{tag}: frozen-decoder SAE trained ({time.time() - t0:.0f} s)")
    entry = {
        "sae": sae_quality(model, X, acts),
        "random_decoder": sae_quality(frozen, X, acts_rd),
        "features": feature_figures(acts, words, lab, groups, group_names),
        "features_random_decoder": feature_figures(acts_rd, words, lab, groups, group_names),
        "bases": {
            basis: {k: v for k, v in r.items() if k != "per_feature"}  # the per-feature DistRatios stay out
            for basis, r in interpretability.basis_report(
                acts, X, ss.weights, ss.names, seed=seed, random_decoder_acts=acts_rd
            ).items()
        },
    }
    log(
        f"{tag}: new top-20 median share {entry['features']['new_score']['median_top10_share']:.2f}, "
        f"old {entry['features']['old_mono_score']['median_top10_share']:.2f} ({time.time() - t0:.0f} s)"
    )
    return entry


def run_labels(words: list[str], groups: np.ndarray, group_names: list[str]):
    reader = labels.open_wordnet()
    if reader is None:
        raise SystemExit(labels.wordnet_missing_line(labels.wordnet_dir()))
    ss = labels.supersenses(words, reader=reader)
    return ss, labels.combine(ss, labels.group_labels(groups, group_names))


def run_glove(seeds=(0,), log=print) -> dict:
    t0 = time.time()
    cfg, vocab, X = glove_inputs()
    words, groups = list(vocab.words), np.asarray(vocab.groups)
    ss, lab = run_labels(words, groups, vocab.group_names)
    log(f"labels: {len(words)} words, coverage {ss.coverage:.3f} ({time.time() - t0:.0f} s)")
    out = {
        "inputs": {
            "model": cfg.model,
            "words": len(words),
            "d": int(X.shape[1]),
            "sae": cfg.sae.model_dump(mode="json"),
            "wordnet_dir": str(labels.wordnet_dir()),
            "min_share": labels.MIN_SHARE,
            "min_label_words": concepts.MIN_LABEL_WORDS,
            "label_floor": concepts.LABEL_FLOOR,
        },
        "supersense_coverage": ss.coverage,
        "sense_policies": policy_table(ss.weights.toarray(), ss.names, X),
    }
    log(f"policies done ({time.time() - t0:.0f} s)")
    out["seeds"] = {
        str(seed): analyse_sae(
            X,
            cfg.sae.model_copy(update={"seed": seed}),
            words,
            lab,
            ss,
            groups,
            vocab.group_names,
            seed,
            log,
            t0,
            f"glove seed {seed}",
        )
        for seed in seeds
    }
    out["seconds"] = time.time() - t0
    return out


def run_minilm(layers, log=print) -> dict:
    """The default plan's MiniLM run (lee corpus, 20k words): every figure per layer, SAE seed 0."""
    from compute import contextual, vocabulary
    from compute.config import load_plan

    t0 = time.time()
    cfg = next(r for r in load_plan().runs if r.model == "minilm-l6")
    tokenizer, model = contextual.load_transformer(cfg.model, "cpu")
    vocab = vocabulary.build(cfg.vocabulary)
    ext = contextual.extract(
        tokenizer,
        model,
        contextual.read_corpus(cfg.corpus or "lee"),
        vocab.words,
        layers,
        token_sample=0,
        seed=0,
        batch_size=cfg.batch_size,
        device="cpu",
    )
    words, groups = list(vocab.words), np.asarray(vocab.groups)
    ss, lab = run_labels(words, groups, vocab.group_names)
    log(f"minilm: vectors and labels ({time.time() - t0:.0f} s)")
    out = {
        "inputs": {"model": cfg.model, "words": len(words), "sae": cfg.sae.model_dump(mode="json")},
        "supersense_coverage": ss.coverage,
        "layers": {},
    }
    for i, layer in enumerate(ext.layers):
        X = np.ascontiguousarray(ext.word_vectors[i], dtype=np.float32)
        out["layers"][str(layer)] = analyse_sae(
            X, cfg.sae, words, lab, ss, groups, vocab.group_names, cfg.sae.seed, log, t0, f"minilm L{layer}"
        )
    out["seconds"] = time.time() - t0
    return out


BASES = ("", "_raw", "_rotated", "_random_decoder")


def stored_figures(store_root: Path) -> dict:
    """What the pipeline stored, per run of a store: QVEC and intrusion of the SAE and its baselines, the FVUs,
    and the median top-10 label share of the top-20 features by the stored concept score and by the old one."""
    from store import Catalog
    from store.schema import LABELS, SAE, WORDS

    out, catalog = {}, Catalog(store_root)
    for run_id in catalog.run_ids():
        run = catalog.open(run_id)
        if not run.has(SAE.mono_score):
            continue
        a = run.attrs_of(SAE.path)
        acts, member = run.csr(SAE.acts), run.csr(LABELS.member)
        top, best, score = run.array(SAE.top_words), run.array(SAE.best_label), run.array(SAE.mono_score)
        groups = run.array(WORDS.group)
        share = concepts.top_label_share(top, member, best)
        mono, best_group = old_mono_score(acts, groups, int(groups.max()) + 1)
        old_share = concepts.top_label_share(top, labels.group_labels(groups, run.group_names).member, best_group)
        out[run_id] = {
            "model": run.model,
            "layer": run.layer,
            "new_median_top10_share": float(np.nanmedian(share[np.argsort(-score, kind="stable")[:TOP_FEATURES]])),
            "old_median_top10_share": float(np.nanmedian(old_share[np.argsort(-mono, kind="stable")[:TOP_FEATURES]])),
            **{f"{m}{b}": float(a[f"{m}{b}"]) for b in BASES for m in ("qvec", "intrusion") if f"{m}{b}" in a},
            **{k: float(a[k]) for k in ("fvu", "fvu_random_decoder") if k in a},
        }
    return out


def _summary(entry: dict) -> dict:
    return {
        "new_median_top10_share": entry["features"]["new_score"]["median_top10_share"],
        "old_median_top10_share": entry["features"]["old_mono_score"]["median_top10_share"],
        **{b: {k: round(v, 4) for k, v in r.items() if isinstance(v, float)} for b, r in entry["bases"].items()},
    }


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="python -m benchmarks.labels", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[0],
        help="GloVe SAE seeds (the default plan uses 0); none: skip the GloVe run",
    )
    ap.add_argument("--minilm-layers", type=int, nargs="*", default=[], help="MiniLM layers to measure too")
    ap.add_argument("--out", type=Path, default=None, help="results JSON; other parts already in it are kept")
    ap.add_argument("--store", type=Path, default=None, help="read the figures every run of this store holds")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or RESULTS_DIR / f"labels-{day}.json"
    results = common.load_results(out)
    results.update(
        updated=common.now_iso(),
        machine=common.machine(),
        versions=common.versions(),
        note="quality figures on a shared CPU machine; seconds are for orientation only",
    )
    commands = results.setdefault("commands", {})
    if args.seeds:
        commands["glove"] = "python -m benchmarks.labels --seeds " + " ".join(map(str, args.seeds))
        results.update(run_glove(args.seeds))
        print(json.dumps({s: _summary(e) for s, e in results["seeds"].items()}, indent=1))
    if args.minilm_layers:
        commands["minilm"] = "python -m benchmarks.labels --seeds --minilm-layers " + " ".join(
            map(str, args.minilm_layers)
        )
        results["minilm"] = run_minilm(args.minilm_layers)
        print(json.dumps({f"L{k}": _summary(e) for k, e in results["minilm"]["layers"].items()}, indent=1))
    if args.store:
        commands["stored"] = f"python -m benchmarks.labels --seeds --store {args.store}"
        results["stored"] = stored_figures(args.store)
        print(json.dumps(results["stored"], indent=1))
    common.save_results(out, results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
