"""Helpers shared by the tests (`from helpers import ...`; test modules never import each other): the
small GloVe run of the shared fixtures, and `synthetic_sae` / `synthetic_sae_run`, a run with a stand-in
SAE section, so dashboard tests and the latency benchmark do not depend on SAE training (the SAE paths
are spelled out as docs/store.md lists them, independently of store/schema.py)."""

import json

import h5py
import numpy as np
import scipy.sparse as sp

from store import RunWriter

SMALL_GLOVE_RUN = {
    "name": "glove-small",
    "model": "glove-6b-50d",
    "vocabulary": {"top_n": 2000, "concept_groups": "default"},
    "projections": {"n_neighbors": 10, "umap_epochs": 100},
    "sae": {"arch": "topk", "d_sae": 256, "k": 8, "seed": 0},
}


def linked_store(root, runs: dict):
    """A store at `root` holding hard links (copies across file systems) of stored runs: {store root: [run ids]}.
    Tests that add files (comparisons, jobs) to a store of shared runs use one, so the shared stores stay as
    built."""
    import os
    import shutil
    from pathlib import Path

    root = Path(root)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    for src, ids in runs.items():
        for run_id in ids:
            a, b = Path(src) / "runs" / f"{run_id}.h5", root / "runs" / f"{run_id}.h5"
            try:
                os.link(a, b)
            except OSError:
                shutil.copy(a, b)
    return root


# -- a stand-in SAE --------------------------------------------------------------------------


def synthetic_sae(
    X: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    d_sae: int,
    k: int = 8,
    seed: int = 0,
    words=None,
    group_names=None,
) -> dict:
    """A TopK 'SAE' without training: decoder = normalised random word vectors, activations = top-k of
    ReLU(x̂·W_decᵀ). Every per-feature summary the dashboard reads is derived from it, by the
    definitions in docs/store.md, so the views get realistic, consistent data."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    Xn = (X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-8)).astype(np.float32)
    W_dec = Xn[rng.choice(n, d_sae, replace=n < d_sae)] + 0.05 * rng.standard_normal((d_sae, d))
    W_dec = (W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)).astype(np.float32)
    top_NK = np.empty((n, k), np.int32)
    val_NK = np.empty((n, k), np.float32)
    chunk = max(256, (1 << 24) // d_sae)  # rows per block: ~200 MB of pre-activations and indices
    for lo in range(0, n, chunk):
        pre = np.maximum(Xn[lo : lo + chunk] @ W_dec.T, 0)
        top = np.argpartition(-pre, k - 1, axis=1)[:, :k]
        top_NK[lo : lo + chunk], val_NK[lo : lo + chunk] = top, np.take_along_axis(pre, top, axis=1)
    acts = sp.csr_matrix((val_NK.ravel(), top_NK.ravel(), np.arange(0, n * k + 1, k, dtype=np.int64)), shape=(n, d_sae))
    acts.eliminate_zeros()
    acts.sort_indices()
    csc = acts.tocsc()
    density = (np.diff(csc.indptr) / n).astype(np.float32)
    max_act = np.asarray(csc.max(axis=0).todense()).ravel().astype(np.float32)
    top_words = np.full((d_sae, 50), -1, np.int32)
    top_acts = np.zeros((d_sae, 50), np.float32)
    qw = np.full((d_sae, 5, 5), -1, np.int32)
    qa = np.zeros((d_sae, 5, 5), np.float32)
    for f in range(d_sae):
        rows, vals = csc.indices[csc.indptr[f] : csc.indptr[f + 1]], csc.data[csc.indptr[f] : csc.indptr[f + 1]]
        order = np.argsort(-vals)[:50]
        top_words[f, : len(order)], top_acts[f, : len(order)] = rows[order], vals[order]
        if len(vals):
            edges = np.linspace(0, vals.max(), 6)
            for q in range(5):
                inside = np.flatnonzero((vals > edges[q]) & (vals <= edges[q + 1]))[:5]
                qw[f, q, : len(inside)], qa[f, q, : len(inside)] = rows[inside], vals[inside]
    # The concept score (docs/store.md "SAE") over the groups as labels `group.<name>` (the run's /labels).
    G = max(1, n_groups)
    member = np.zeros((n, G), bool)
    for g in range(n_groups):
        member[group == g, g] = True
    A, M = acts.toarray().astype(np.float64), member.astype(np.float64)
    totals = A.sum(0)
    precision = (A.T @ M) / np.maximum(totals, 1e-30)[:, None]
    recall = ((A > 0).astype(np.float64).T @ M) / np.maximum(M.sum(0), 1)[None, :]
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-30), 0)
    f1[:, member.sum(0) < 20] = 0
    best = np.where(f1.max(1) > 0, f1.argmax(1), -1).astype(np.int16)
    names = [f"group.{group_names[g] if group_names is not None else g}" for g in range(G)]
    feature_label = [
        (f"{names[best[f]]} {f1[f].max():.2f} · " if best[f] >= 0 and f1[f].max() >= 0.1 else "")
        + ", ".join(str(words[r]) if words is not None else f"w{r}" for r in top_words[f, :3] if r >= 0)
        for f in range(d_sae)
    ]
    cos = W_dec @ W_dec.T
    np.fill_diagonal(cos, -np.inf)
    correlated = np.argsort(-cos, axis=1)[:, :10].astype(np.int32)
    dec_nb = np.zeros((d_sae, 20), np.int32)
    dec_cos = np.zeros((d_sae, 20), np.float32)
    step = max(1, min(512, (1 << 25) // max(1, n)))  # at most ~400 MB of similarities and indices
    for lo in range(0, d_sae, step):
        sims = W_dec[lo : lo + step] @ Xn.T
        part = np.argpartition(-sims, 19, axis=1)[:, :20]
        s = np.take_along_axis(sims, part, axis=1)
        o = np.argsort(-s, axis=1)
        dec_nb[lo : lo + step], dec_cos[lo : lo + step] = np.take_along_axis(part, o, 1), np.take_along_axis(s, o, 1)
    centred = W_dec - W_dec.mean(0)
    fmap = (centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T).astype(np.float32)
    steps = np.arange(0, 1000, 50)
    return {
        "sae": {
            "arch": "topk",
            "d_sae": d_sae,
            "k": k,
            "fvu": 0.2,
            "l0": float(acts.nnz / n),
            "dead_frac": float((density == 0).mean()),
            "intrusion": 0.5,
            "intrusion_raw": 0.4,
            "intrusion_rotated": 0.45,
            "intrusion_random_decoder": 0.42,
            "qvec": 0.08,
            "qvec_raw": 0.15,
            "qvec_rotated": 0.16,
            "qvec_random_decoder": 0.07,
        },
        "sae/W_dec": W_dec,
        "sae/acts": acts,
        "sae/density": density,
        "sae/max_act": max_act,
        "labels/names": names,
        "labels/member": sp.csr_matrix(member.astype(np.float32)),
        "labels/weights": sp.csr_matrix(member.astype(np.float32)),
        "sae/concept_precision": precision.astype(np.float32),
        "sae/concept_recall": recall.astype(np.float32),
        "sae/concept_f1": f1.astype(np.float32),
        "sae/mono_score": f1.max(axis=1).astype(np.float32),
        "sae/best_label": best,
        "sae/feature_label": feature_label,
        "sae/top_words": top_words,
        "sae/top_acts": top_acts,
        "sae/quantile_words": qw,
        "sae/quantile_acts": qa,
        "sae/decoder_neighbors": dec_nb,
        "sae/decoder_neighbor_cos": dec_cos,
        "sae/correlated": correlated,
        "sae/correlated_cos": np.take_along_axis(cos, correlated, 1).astype(np.float32),
        "sae/feature_map": fmap,
        "sae/feature_intrusion": rng.random(d_sae).astype(np.float32),
        "sae/history/step": steps,
        "sae/history/loss": (1 / (1 + steps / 100)).astype(np.float32),
    }


def synthetic_sae_run(src_path, root, run_id: str, d_sae: int = 256, k: int = 8, seed: int = 0) -> str:
    """Copy a precomputed run (without its /sae) into store `root` as `run_id`, adding synthetic_sae."""
    with h5py.File(src_path, "r") as src:
        a = dict(src.attrs)
        X = src["embeddings"][()]
        group = src["words/group"][()] if "words/group" in src else np.full(len(X), -1)
        n_groups = len(src["groups/names"]) if "groups/names" in src else 0
        with RunWriter(
            root,
            run_id,
            model=a["model"],
            layer=int(a["layer"]),
            n_layers=int(a["n_layers"]),
            source=a["source"],
            config=json.loads(a["config"]),
            config_hash=a["config_hash"],
            family=a.get("family"),
        ) as w:
            for name in src:
                if name not in ("sae", "labels"):  # the stand-in SAE comes with labels of its own
                    src.copy(src[name], w.f, name=name)
            words = src["words/text"].asstr()[()]
            names = list(src["groups/names"].asstr()[()]) if n_groups else None
            w.write_all(synthetic_sae(X, group, n_groups, d_sae, k, seed, words=words, group_names=names))
    return run_id
