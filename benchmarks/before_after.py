"""The code this branch changes or proposes to change, in both versions, so that the benchmarks can measure
before and after side by side in one process even once the proposals have landed in compute/.

before: compute.features.feature_map and decoder_neighbors as they were. proposed: their replacements (the
exact diff is in the h4-perf report); compute.projections itself already holds the new UMAP start."""

from __future__ import annotations

import numpy as np


def feature_map_before(W_dec, seed: int = 0):
    """compute.features.feature_map before this change (umap-learn's small-data path), kept for the before
    figures."""
    import umap

    F = len(W_dec)
    if F < 4:
        return np.zeros((F, 2), dtype=np.float32)
    return (
        umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, F - 1), min_dist=0.1, random_state=seed)
        .fit_transform(np.asarray(W_dec, np.float32))
        .astype(np.float32)
    )


def decoder_neighbors_before(sae, X, m: int = 20, chunk: int = 512):
    """compute.features.decoder_neighbors before this change ((n, 512) blocks), kept for the before figures."""
    from compute.features import _top_rows
    from compute.linalg import unit_rows as _unit_rows

    U_nD = _unit_rows(np.asarray(X, np.float32) - sae.mu.numpy())
    W_FD = _unit_rows(sae.W_dec.detach().numpy())
    idx = np.empty((len(W_FD), min(m, len(U_nD))), dtype=np.int32)
    cos = np.empty(idx.shape, dtype=np.float32)
    for s in range(0, len(W_FD), chunk):
        idx[s : s + chunk], cos[s : s + chunk] = _top_rows(U_nD @ W_FD[s : s + chunk].T, m)
    return idx, cos


def feature_map_proposed(W_dec, seed: int = 0, init: str = "spectral") -> np.ndarray:
    """The proposed compute.features.feature_map: the same UMAP (2-D, cosine, 15 neighbours, min_dist 0.1,
    umap-learn's default epochs), but from an exact k-NN by matrix products (compute.projections.knn_cosine)
    instead of umap-learn's small-data path, whose sklearn.pairwise_distances calls the numba cosine once
    per pair from Python."""
    from compute.config import ProjectionConfig
    from compute.projections import knn_cosine, umap_embed

    F = len(W_dec)
    if F < 4:
        return np.zeros((F, 2), dtype=np.float32)
    cfg = ProjectionConfig(n_neighbors=min(15, F - 1), min_dist=0.1, seed=seed)
    idx, dist = knn_cosine(W_dec, cfg.n_neighbors, seed)
    return umap_embed(np.asarray(W_dec, np.float32), idx, dist, 2, cfg, init=init)


def decoder_neighbors_blocked(sae, X, m: int = 20, chunk: int = 128):
    """The proposed compute.features.decoder_neighbors: (chunk, n) cosine blocks and torch.topk along the
    words, instead of (n, 512) blocks whose negation and int64 argpartition are 3x the block again."""
    import torch

    from compute.linalg import unit_rows as _unit_rows

    U_nD = torch.from_numpy(_unit_rows(np.asarray(X, np.float32) - sae.mu.numpy()))
    W_FD = torch.from_numpy(_unit_rows(sae.W_dec.detach().numpy()))
    m = min(m, len(U_nD))
    idx = np.empty((len(W_FD), m), dtype=np.int32)
    cos = np.empty(idx.shape, dtype=np.float32)
    for s in range(0, len(W_FD), chunk):
        c, i = torch.topk(W_FD[s : s + chunk] @ U_nD.T, m, dim=1)
        idx[s : s + chunk], cos[s : s + chunk] = i.numpy(), c.numpy()
    return idx, cos
