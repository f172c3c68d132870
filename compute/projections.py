"""Word maps and neighbours: one cosine k-NN graph feeds both the stored neighbours and UMAP."""

import os
import sys

import numpy as np
from sklearn.decomposition import PCA

from compute.config import ProjectionConfig
from compute.linalg import unit_rows
from store.schema import NEIGHBORS, PROJECTIONS, Neighbors

# Up to this many rows the exact k-NN (chunked matrix products) beats building an approximate index.
EXACT_KNN_MAX = 60_000
CHUNK_ROWS = 2048

# numba's default (OpenMP) threading layer leaves its threads spinning after each parallel UMAP/pynndescent
# call, and they starve torch's OpenMP threads: the SAE stage that follows the projections ran ~25x slower
# (benchmarks: 20 steps, F=4096, 0.6 s -> 15 s). The workqueue layer sleeps when idle. A user setting wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    if "numba" in sys.modules:  # imported already: its config was read, but no thread is launched yet
        sys.modules["numba"].config.THREADING_LAYER = "workqueue"


def knn_cosine(X, k: int, seed: int = 0, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours by cosine, self first: (indices (n, k+1) int32, cosine distance (n, k+1)).

    Exact in chunks (O(chunk * n) memory) for moderate n, pynndescent beyond."""
    n = len(X)
    k1 = min(k + 1, n)
    U = unit_rows(X, np.float32)
    if n > EXACT_KNN_MAX:
        from pynndescent import NNDescent

        index = NNDescent(U, metric="cosine", n_neighbors=max(k1, 16), random_state=seed, low_memory=True)
        idx, dist = index.neighbor_graph
        return _self_first(idx[:, :k1], dist[:, :k1])
    import torch

    U_t = torch.from_numpy(U)
    idx = np.empty((n, k1), dtype=np.int32)
    dist = np.empty((n, k1), dtype=np.float32)
    for start in range(0, n, CHUNK_ROWS):
        sims = U_t[start : start + CHUNK_ROWS] @ U_t.T
        rows = torch.arange(len(sims))
        sims[rows, start + rows] = float("inf")  # self is always first
        top, part = torch.topk(sims, k1, dim=1)
        d = (1.0 - top).clamp_(0.0, 2.0)
        d[:, 0] = 0.0
        idx[start : start + CHUNK_ROWS] = part.numpy()
        dist[start : start + CHUNK_ROWS] = d.numpy()
        if progress:
            progress(min(1.0, (start + CHUNK_ROWS) / n))
    return idx, dist


def _self_first(idx, dist):
    idx = np.asarray(idx, dtype=np.int32).copy()
    dist = np.asarray(dist, dtype=np.float32).copy()
    rows = np.arange(len(idx))
    bad = idx[:, 0] != rows
    if bad.any():  # approximate search may miss self: put it first, drop the last neighbour
        idx[bad, 1:] = idx[bad, :-1]
        dist[bad, 1:] = dist[bad, :-1]
        idx[bad, 0] = rows[bad]
        dist[bad, 0] = 0.0
    return idx, dist


def neighbors_output(idx, dist, k: int, group: Neighbors = NEIGHBORS) -> dict:
    """Stored neighbours exclude the word itself."""
    return {group.indices: idx[:, 1 : k + 1].astype(np.int32), group.cos: (1.0 - dist[:, 1 : k + 1]).astype(np.float32)}


def umap_embed(X, idx, dist, n_components: int, cfg: ProjectionConfig) -> np.ndarray:
    import umap

    n_neighbors = min(cfg.n_neighbors, idx.shape[1], len(X) - 1)
    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=cfg.min_dist,
        metric="cosine",
        random_state=cfg.seed,
        n_epochs=cfg.umap_epochs,
        precomputed_knn=(idx[:, :n_neighbors], dist[:, :n_neighbors], None),
        verbose=False,
    )
    return reducer.fit_transform(X).astype(np.float32)


def projections_output(X, cfg: ProjectionConfig, progress=None) -> dict:
    """Neighbours, UMAP 3D/2D and PCA 2D for the word map, from one k-NN graph."""

    def step(name, frac):
        if progress:
            progress(name, frac)

    out = {}
    k = max(cfg.neighbors, cfg.n_neighbors)
    idx, dist = knn_cosine(X, k, cfg.seed, progress=lambda f: step("neighbours", f))
    out.update(neighbors_output(idx, dist, cfg.neighbors))
    if len(X) > cfg.n_neighbors + 1:
        if cfg.umap3d:
            step("umap 3d", 0.0)
            out[PROJECTIONS.umap3d] = umap_embed(X, idx, dist, 3, cfg)
        if cfg.umap2d:
            step("umap 2d", 0.0)
            out[PROJECTIONS.umap2d] = umap_embed(X, idx, dist, 2, cfg)
    if cfg.pca2:
        out[PROJECTIONS.pca2] = (
            PCA(2, random_state=cfg.seed).fit_transform(np.asarray(X, dtype=np.float64)).astype(np.float32)
        )
    step("projections", 1.0)
    return out
