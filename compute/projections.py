"""Word maps and neighbours: one cosine k-NN graph feeds both the stored neighbours and UMAP."""

import importlib
import os
import sys
import warnings
from functools import cache

import numpy as np
from sklearn.decomposition import PCA

from compute.config import ProjectionConfig
from compute.linalg import unit_rows
from store.schema import NEIGHBORS, PROJECTIONS, Neighbors

# Up to this many rows the exact k-NN (chunked matrix products) beats building an approximate index.
EXACT_KNN_MAX = 60_000
CHUNK_ROWS = 2048
# How the UMAP maps start (see umap_maps). umap-learn's default, a spectral layout solved again for each map,
# was a third of the map time at 20k words and most of it at 400k; one PCA start shared by the 3-D and 2-D
# maps kept trustworthiness within 0.004 of it (benchmarks/map_quality.py, README "Performance").
MAP_INIT = "shared-pca"

# numba's default (OpenMP) threading layer leaves its threads spinning after each parallel UMAP/pynndescent
# call, and they starve torch's OpenMP threads: the SAE stage that follows the projections ran ~25x slower
# (benchmarks: 20 steps, F=4096, 0.6 s -> 15 s). The workqueue layer sleeps when idle. A user setting wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    if "numba" in sys.modules:  # imported already: its config was read, but no thread is launched yet
        sys.modules["numba"].config.THREADING_LAYER = "workqueue"


# umap-learn and pynndescent compile most of their numba functions without an on-disk cache, so every new
# process (each worker of each run) compiled them again: ~4 s of CPU before a 20k-word map's first epoch.
COMPILED_MODULES = (
    "umap.umap_", "umap.layouts", "umap.spectral", "umap.utils", "umap.distances", "umap.sparse",
    "pynndescent.pynndescent_", "pynndescent.utils", "pynndescent.distances", "pynndescent.rp_trees",
    "pynndescent.sparse",
)  # fmt: skip


@cache
def cache_compiled_umap() -> int:
    """Turns on numba's on-disk cache for the not yet compiled functions of COMPILED_MODULES (in the packages'
    __pycache__, else numba's user cache folder), so that a process loads what an earlier one compiled.
    Returns how many functions it turned on."""
    from numba.core.dispatcher import Dispatcher

    n = 0
    for name in COMPILED_MODULES:
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, Dispatcher) and not obj.signatures:
                try:
                    obj.enable_caching()
                except RuntimeError:  # no writable cache folder (numba says so here): compile as before
                    continue
                n += 1
    return n


def knn_cosine(X, k: int, seed: int = 0, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours by cosine, self first: (indices (n, k+1) int32, cosine distance (n, k+1)).

    Exact in chunks (O(chunk * n) memory) for moderate n, pynndescent beyond."""
    n = len(X)
    k1 = min(k + 1, n)
    U = unit_rows(X, np.float32)
    if n > EXACT_KNN_MAX:
        from pynndescent import NNDescent

        cache_compiled_umap()

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


UMAP_INITS = ("spectral", "pca", "tswspectral", "random")


def umap_graph(X, idx, dist, n_neighbors: int, seed: int = 0):
    """UMAP's fuzzy neighbour graph (sparse, symmetric) from the precomputed cosine k-NN."""
    cache_compiled_umap()
    from umap.umap_ import fuzzy_simplicial_set

    graph, _, _ = fuzzy_simplicial_set(
        X,
        n_neighbors,
        np.random.RandomState(seed),
        "cosine",
        knn_indices=idx[:, :n_neighbors],
        knn_dists=dist[:, :n_neighbors],
    )
    return graph


def initial_layout(X, graph, n_components: int, how: str = "pca", seed: int = 0) -> np.ndarray:
    """A starting layout for UMAP, computed once and shared by the maps: the first components of the 3-D
    layout are the 2-D one (PCA components and Laplacian eigenvectors are nested), so one solve serves both.
    Scaled and jittered as umap-learn does for its own string inits."""
    from umap.umap_ import noisy_scale_coords

    rs = np.random.RandomState(seed)
    if how == "pca":
        emb = PCA(n_components, random_state=seed).fit_transform(np.asarray(X, dtype=np.float32))
    elif how in ("spectral", "tswspectral"):
        from umap.spectral import spectral_layout, tswspectral_layout

        layout = spectral_layout if how == "spectral" else tswspectral_layout
        emb = layout(np.asarray(X, dtype=np.float32), graph, n_components, rs, metric="cosine")
    elif how == "random":
        emb = rs.uniform(-10.0, 10.0, size=(len(X), n_components))
    else:
        raise ValueError(f"init '{how}': expected one of {', '.join(UMAP_INITS)}")
    return noisy_scale_coords(np.asarray(emb, dtype=np.float32), rs, max_coord=10, noise=0.0001)


def umap_embed(
    X, idx, dist, n_components: int, cfg: ProjectionConfig, init="spectral", n_epochs: int | None = None
) -> np.ndarray:
    """One UMAP map from the precomputed k-NN graph. `init`: a string umap-learn accepts, or an (n, >=
    n_components) array (its first columns are used); `n_epochs` overrides the config's."""
    cache_compiled_umap()
    import umap

    n_neighbors = min(cfg.n_neighbors, idx.shape[1], len(X) - 1)
    if not isinstance(init, str):
        init = np.ascontiguousarray(np.asarray(init, dtype=np.float32)[:, :n_components])
    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=cfg.min_dist,
        metric="cosine",
        random_state=cfg.seed,
        n_epochs=n_epochs or cfg.umap_epochs,
        init=init,
        precomputed_knn=(idx[:, :n_neighbors], dist[:, :n_neighbors], None),
        verbose=False,
    )
    with warnings.catch_warnings():  # that a seed means one thread, and that the graph has no search index
        warnings.filterwarnings("ignore", message=r"(n_jobs value|precomputed_knn)", category=UserWarning)
        return reducer.fit_transform(X).astype(np.float32)


def map_start(X, idx, dist, cfg: ProjectionConfig, dims=(3, 2), init: str | None = None):
    """How the maps of `dims` start: for "shared-<how>" (MAP_INIT) one `initial_layout` with max(dims) columns,
    whose first d columns start the d-D map; a plain umap-learn init string is returned as it is (each map then
    computes its own; umap-learn's default: "spectral")."""
    init = init or MAP_INIT
    if not init.startswith("shared-"):
        return init
    how = init.removeprefix("shared-")
    n_neighbors = min(cfg.n_neighbors, idx.shape[1], len(X) - 1)
    graph = umap_graph(X, idx, dist, n_neighbors, cfg.seed) if how != "pca" else None
    return initial_layout(X, graph, max(dims), how, cfg.seed)


def umap_maps(
    X,
    idx,
    dist,
    cfg: ProjectionConfig,
    dims=(3, 2),
    init=None,
    n_epochs: int | None = None,
    progress=None,
) -> dict:
    """{d: UMAP map (n, d)} for each d in `dims`, all from the one precomputed k-NN graph, started as `map_start`
    says (`init` may also be a start it computed)."""
    if not dims:
        return {}
    if init is None or isinstance(init, str):
        if progress:
            progress("umap init", 0.0)
        init = map_start(X, idx, dist, cfg, dims, init)
    maps = {}
    for d in dims:
        if progress:
            progress(f"umap {d}d", 0.0)
        maps[d] = umap_embed(X, idx, dist, d, cfg, init=init, n_epochs=n_epochs)
    return maps


def word_knn(X, cfg: ProjectionConfig, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """The one cosine k-NN graph of a word set that its stored neighbours and its UMAP maps share."""
    return knn_cosine(X, max(cfg.neighbors, cfg.n_neighbors), cfg.seed, progress=progress)


def map_dims(cfg: ProjectionConfig, n: int) -> list[int]:
    """The UMAP maps a word set of n rows gets: 3 and/or 2, none when it is too small for its k-NN graph."""
    if n <= cfg.n_neighbors + 1:
        return []
    return [d for d, on in ((3, cfg.umap3d), (2, cfg.umap2d)) if on]


def word_maps(X, knn, cfg: ProjectionConfig, dims, init=None, n_epochs=None, progress=None) -> dict:
    """{schema path: UMAP map} for `dims`, from the word set's k-NN graph `knn` (word_knn); `init` as for
    umap_maps. A module-level function of plain arrays, so that compute.parallel can run it in a worker: a map
    computed alone from the start `map_start` made for all the dims equals the one umap_maps makes with the
    others."""
    idx, dist = knn
    maps = umap_maps(X, idx, dist, cfg, list(dims), init, n_epochs, progress=progress)
    return {{3: PROJECTIONS.umap3d, 2: PROJECTIONS.umap2d}[d]: emb for d, emb in maps.items()}


def projections_output(
    X, cfg: ProjectionConfig, progress=None, init: str | None = None, n_epochs: int | None = None
) -> dict:
    """Neighbours, UMAP 3D/2D and PCA 2D for the word map, from one k-NN graph (see umap_maps for `init`)."""

    def step(name, frac):
        if progress:
            progress(name, frac)

    knn = word_knn(X, cfg, progress=lambda f: step("neighbours", f))
    out = neighbors_output(*knn, cfg.neighbors)
    out.update(word_maps(X, knn, cfg, map_dims(cfg, len(X)), init, n_epochs, progress=step))
    if cfg.pca2:
        out[PROJECTIONS.pca2] = (
            PCA(2, random_state=cfg.seed).fit_transform(np.asarray(X, dtype=np.float64)).astype(np.float32)
        )
    step("projections", 1.0)
    return out


def trustworthiness(X, emb, k: int = 15, sample: int = 20_000, seed: int = 0, chunk: int = 256) -> float:
    """Trustworthiness of a map (Venna & Kaski 2001; sklearn.manifold.trustworthiness), cosine in the original
    space, Euclidean on the map, on a seeded sample of `sample` rows: 1 - 2/(n k (2n - 3k - 1)) * sum over
    each point's k map neighbours that are not among its k original neighbours of (original rank - k).
    1 = every map neighbour is a true neighbour. Computed in row chunks, so 20k rows need ~100 MB instead of
    sklearn's several n x n matrices."""
    from sklearn.neighbors import NearestNeighbors

    n = len(X)
    rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if n > sample else np.arange(n)
    m = len(rows)
    if k >= m / 2:
        raise ValueError(f"k ({k}) should be less than half the {m} rows")
    U = unit_rows(np.asarray(X)[rows])
    near = (
        NearestNeighbors(n_neighbors=k).fit(np.asarray(emb, dtype=np.float64)[rows]).kneighbors(return_distance=False)
    )
    penalty = 0
    for s in range(0, m, chunk):
        D = 1.0 - U[s : s + chunk] @ U.T
        D[np.arange(len(D)), s + np.arange(len(D))] = np.inf  # a point is not its own neighbour
        d_map = np.take_along_axis(D, near[s : s + chunk], axis=1)
        rank = (D[:, None, :] < d_map[:, :, None]).sum(-1) + 1  # its rank among the original neighbours
        penalty += int(np.maximum(rank - k, 0).sum())
    return float(1.0 - penalty * 2.0 / (m * k * (2.0 * m - 3.0 * k - 1.0)))
