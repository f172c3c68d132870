"""Per-feature statistics of a trained SAE, interpretability scores and cross-layer matching.

`sae_output` builds the `/sae` OUTPUT dict of a run (see docs/store.md, section "SAE").
Shapes in names: n words, D input dim, F features, L labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from compute import concepts, interpretability, parallel
from compute.labels import Labels
from compute.linalg import unit_rows
from compute.sae import SAE, encode_numpy
from compute.sae import fvu as sae_fvu
from store import schema

TOP_WORDS = 50
QUANTILE_BINS, QUANTILE_WORDS = 5, 5
DECODER_NEIGHBORS = 20
CORRELATED = 10


def _top_rows(S_nF: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column of S, the m largest rows (descending) and their values."""
    m = min(m, S_nF.shape[0])
    part = np.argpartition(-S_nF, m - 1, axis=0)[:m]
    vals = np.take_along_axis(S_nF, part, axis=0)
    order = np.argsort(-vals, axis=0, kind="stable")
    return np.take_along_axis(part, order, axis=0).T, np.take_along_axis(vals, order, axis=0).T


def match_features(W_dec_L: np.ndarray, W_dec_next: np.ndarray, chunk: int = 4096):
    """For every decoder direction of layer L, the nearest one in the other layer by cosine:
    (idx (F,) int32, cos (F,) float32)."""
    A, B = unit_rows(W_dec_L, np.float32), unit_rows(W_dec_next, np.float32)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"W_dec_next: input dims differ ({A.shape[1]} vs {B.shape[1]})")
    idx = np.empty(len(A), dtype=np.int32)
    cos = np.empty(len(A), dtype=np.float32)
    for s in range(0, len(A), chunk):
        C = A[s : s + chunk] @ B.T
        idx[s : s + chunk] = C.argmax(1)
        cos[s : s + chunk] = C[np.arange(len(C)), idx[s : s + chunk]]
    return idx, cos


def column_top(acts_nF: sp.csr_matrix, m: int = TOP_WORDS):
    """Top-m rows per feature by activation: (words (F,m) int32, -1 padded; acts (F,m) float32, 0 padded)."""
    csc = acts_nF.tocsc()
    F = csc.shape[1]
    words = np.full((F, m), -1, dtype=np.int32)
    vals = np.zeros((F, m), dtype=np.float32)
    for f in range(F):
        lo, hi = csc.indptr[f], csc.indptr[f + 1]
        data, rows = csc.data[lo:hi], csc.indices[lo:hi]
        keep = data > 0
        data, rows = data[keep], rows[keep]
        order = np.lexsort((rows, -data))[:m]  # ties: lower row (more frequent word) first
        words[f, : len(order)] = rows[order]
        vals[f, : len(order)] = data[order]
    return words, vals


def quantile_groups(acts_nF: sp.csr_matrix, seed: int = 0, bins: int = QUANTILE_BINS, per_bin: int = QUANTILE_WORDS):
    """sae_vis-style interval groups: the range (0, max] of each feature split into `bins` equal-width
    intervals, highest first; from each, `per_bin` seeded random words, sorted by activation.
    Returns (words (F,bins,per_bin) int32 -1 padded, acts (F,bins,per_bin) float32 0 padded)."""
    rng = np.random.default_rng(seed)
    csc = acts_nF.tocsc()
    F = csc.shape[1]
    words = np.full((F, bins, per_bin), -1, dtype=np.int32)
    vals = np.zeros((F, bins, per_bin), dtype=np.float32)
    for f in range(F):
        lo, hi = csc.indptr[f], csc.indptr[f + 1]
        data, rows = csc.data[lo:hi], csc.indices[lo:hi]
        keep = data > 0
        data, rows = data[keep], rows[keep]
        if not len(data):
            continue
        top = data.max()
        # bin 0 = (4/5 max, max], ..., bin 4 = (0, 1/5 max]
        b = np.minimum(((top - data) / top * bins).astype(int), bins - 1)
        for q in range(bins):
            sel = np.flatnonzero(b == q)
            if len(sel) > per_bin:
                sel = rng.choice(sel, per_bin, replace=False)
            sel = sel[np.argsort(-data[sel], kind="stable")]
            words[f, q, : len(sel)] = rows[sel]
            vals[f, q, : len(sel)] = data[sel]
    return words, vals


def correlated_features(acts_nF: sp.csr_matrix, m: int = CORRELATED):
    """Top-m other features per feature by cosine of their activation columns: (idx (F,m) int32 -1 padded,
    cos (F,m) float32)."""
    A = acts_nF.tocsc().astype(np.float64)
    G = (A.T @ A).toarray()
    norms = np.sqrt(np.diag(G))
    C = G / np.maximum(np.outer(norms, norms), 1e-30)
    np.fill_diagonal(C, -np.inf)
    idx, cos = _top_rows(C, m)
    idx = idx.astype(np.int32)
    cos = cos.astype(np.float32)
    undefined = (cos <= 0) | ~np.isfinite(cos)
    idx[undefined], cos[undefined] = -1, 0.0
    return idx, cos


def decoder_neighbors(sae: SAE, X: np.ndarray, m: int = DECODER_NEIGHBORS, chunk: int = 128):
    """The m words whose centred vectors (x - mu) are nearest each decoder direction by cosine. Blocks of `chunk`
    features: at 400k words a block of 512 held about 3 GB at once (scores, their negation, int64 positions)."""
    U_nD = unit_rows(np.asarray(X, np.float32) - sae.mu.numpy(), np.float32)
    W_FD = unit_rows(sae.W_dec.detach().numpy(), np.float32)
    F = len(W_FD)
    idx = np.empty((F, min(m, len(U_nD))), dtype=np.int32)
    cos = np.empty(idx.shape, dtype=np.float32)
    for s in range(0, F, chunk):
        i, c = _top_rows(U_nD @ W_FD[s : s + chunk].T, m)
        idx[s : s + chunk], cos[s : s + chunk] = i, c
    return idx, cos


def feature_map(W_dec: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D UMAP of the decoder directions (cosine metric, seeded), from their exact cosine k-NN. Below 4,096
    points umap-learn would compute every pairwise distance through a Python call per pair (4.2 M calls, most of
    the map's time at 2,048 features); the k-NN graph is the same exact one."""
    import umap

    from compute.projections import cache_compiled_umap, knn_cosine

    cache_compiled_umap()  # a worker that drew no word map before loads umap's compiled functions
    F = len(W_dec)
    if F < 4:
        return np.zeros((F, 2), dtype=np.float32)
    W = np.asarray(W_dec, np.float32)
    k = min(15, F - 1)
    idx, dist = knn_cosine(W, k, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = umap.UMAP(
            n_components=2,
            metric="cosine",
            n_neighbors=k,
            min_dist=0.1,
            random_state=seed,
            precomputed_knn=(idx[:, :k], dist[:, :k], None),
            force_approximation_algorithm=True,  # use the k-NN given, not umap-learn's all-pairs path
        ).fit_transform(W)
    return emb.astype(np.float32)


def sae_output(
    sae: SAE,
    X: np.ndarray,
    words: Sequence[str],
    labs: Labels,
    cfg,
    history,
    seed: int = 0,
    progress=None,
    baseline: SAE | None = None,
    pending_map=None,
) -> dict:
    """The `/sae` OUTPUT dict of a run (paths relative to the run root); see docs/store.md "SAE". `labs`: the
    run's labels (compute/labels.py); `baseline`: the frozen-random-decoder SAE of the same config, scored
    beside it (QVEC, intrusion, FVU) when given; `pending_map`: the decoder map (feature_map) as a pending
    piece (compute.parallel), when one was started; waiting for it keeps calling `progress`."""
    step = progress or (lambda stage, frac: None)
    X = np.asarray(X, dtype=np.float32)
    if len(words) != X.shape[0]:
        raise ValueError(f"words: {len(words)} words but X has {X.shape[0]} rows")
    acts = encode_numpy(sae, X)
    n, F = acts.shape
    density = (acts.getnnz(0) / max(n, 1)).astype(np.float32)
    max_act = np.asarray(acts.max(0).toarray()).ravel().astype(np.float32)
    step("features", 0.1)

    top_words, top_acts = column_top(acts)
    scores = concepts.concept_scores(acts, labs.member)
    names = concepts.feature_labels(top_words, words, labs.names, scores.best, scores.best_f1)
    q_words, q_acts = quantile_groups(acts, seed)
    step("features", 0.3)
    nb_idx, nb_cos = decoder_neighbors(sae, X)
    corr_idx, corr_cos = correlated_features(acts)
    step("features", 0.5)
    base_acts = encode_numpy(baseline, X) if baseline is not None else None
    report = interpretability.basis_report(acts, X, labs.weights, labs.names, seed, base_acts)
    step("features", 0.7)
    W_dec = sae.W_dec.detach().numpy().astype(np.float32)
    if pending_map is not None:
        fmap = parallel.result(pending_map, lambda: step("features", 0.7))
    else:
        fmap = feature_map(W_dec, seed)
    step("features", 1.0)

    attrs = dict(
        arch=sae.arch,
        d_sae=int(F),
        **cfg.summary_attrs(),
        fvu=sae_fvu(sae, X, acts),
        l0=float(acts.getnnz(1).mean()) if n else 0.0,
        dead_frac=float((density == 0).mean()),
        config=sae.config,
        min_label_words=concepts.MIN_LABEL_WORDS,
        label_floor=concepts.LABEL_FLOOR,
    )
    for basis, r in report.items():
        suffix = "" if basis == "sae" else f"_{basis}"
        attrs[f"intrusion{suffix}"] = r["intrusion"]
        attrs[f"qvec{suffix}"] = r["qvec_mean"]
    if base_acts is not None:
        attrs["fvu_random_decoder"] = sae_fvu(baseline, X, base_acts)
        attrs["l0_random_decoder"] = float(base_acts.getnnz(1).mean()) if n else 0.0
    out = {
        schema.SAE.path: attrs,
        # the weights, read back by compute.sae.from_run
        **{getattr(schema.SAE, name): array for name, array in sae.to_arrays().items()},
        schema.SAE.acts.path: acts,
        schema.SAE.density: density,
        schema.SAE.max_act: max_act,
        schema.SAE.concept_precision: scores.precision,
        schema.SAE.concept_recall: scores.recall,
        schema.SAE.concept_f1: scores.f1,
        schema.SAE.mono_score: scores.best_f1,
        schema.SAE.best_label: scores.best.astype(np.int16),
        schema.SAE.feature_label: names,
        schema.SAE.top_words: top_words,
        schema.SAE.top_acts: top_acts,
        schema.SAE.quantile_words: q_words,
        schema.SAE.quantile_acts: q_acts,
        schema.SAE.decoder_neighbors: nb_idx,
        schema.SAE.decoder_neighbor_cos: nb_cos,
        schema.SAE.correlated: corr_idx,
        schema.SAE.correlated_cos: corr_cos,
        schema.SAE.feature_map: fmap,
        schema.SAE.feature_intrusion: report["sae"]["per_feature"],
    }
    hist = history if history is not None else sae.history
    for col, path in schema.SAE.history.datasets().items():
        vals = np.asarray(hist[col])
        out[path] = vals.astype(np.int64 if col in ("step", "dead") else np.float32)
    return out


def sae_similarity_output(sae: SAE, full_vocab: Sequence[str], X_full: np.ndarray) -> dict:
    """WordSim353 / SimLex-999 Spearman on the SAE codes (dense activations of the raw vectors) beside the
    raw vectors' values: attrs `<name>_spearman_sae`, `<name>_covered_sae`, `<name>_spearman_raw`."""
    from compute import similarity

    def codes(rows: np.ndarray) -> np.ndarray:
        return encode_numpy(sae, rows).toarray()

    attrs = {}
    for suffix, transform in (("_sae", codes), ("_raw", None)):
        for name, r in similarity.word_similarity(full_vocab, X_full, transform=transform).items():
            attrs[f"{name}_spearman{suffix}"] = r["spearman"]
            attrs[f"{name}_covered{suffix}"] = r["covered"]
    # "/sae", not "sae": the same HDF5 group, but a different key, so that merging this dict into
    # sae_output's with dict.update adds these attributes instead of replacing sae_output's.
    return {f"/{schema.SAE.path}": attrs}
