"""Word maps of neighbouring layers fitted jointly (umap-learn's AlignedUMAP), so that a word keeps its place
from layer to layer, and the measure of how steady a sequence of maps is.

Layers are related through their shared vocabulary: relation l maps a row of layer l to the row of the same word
in layer l+1 (the identity when every layer has the same words)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numba
import numpy as np
from scipy.linalg import orthogonal_procrustes
from umap.layouts import clip, rdist
from umap.sparse import arr_intersect, arr_union
from umap.utils import tau_rand_int

from compute.config import ProjectionConfig


def shared_rows(words_a: Sequence[str], words_b: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the words present in both vocabularies, in the order of `words_a`: (rows_a, rows_b) int64,
    one to one (a word listed twice on either side is matched by its first row only)."""
    where_b: dict[str, int] = {}
    for j, w in enumerate(words_b):
        where_b.setdefault(w, j)
    rows_a, rows_b = [], []
    for i, w in enumerate(words_a):
        j = where_b.pop(w, None)
        if j is not None:
            rows_a.append(i)
            rows_b.append(j)
    return np.asarray(rows_a, dtype=np.int64), np.asarray(rows_b, dtype=np.int64)


def layer_relations(vocabularies: Sequence[Sequence[str]]) -> list[dict[int, int]]:
    """AlignedUMAP's relations: for each pair of neighbouring layers, {row in layer l: row in layer l+1}."""
    out = []
    for a, b in pairwise(vocabularies):
        rows_a, rows_b = shared_rows(a, b)
        out.append(dict(zip(rows_a.tolist(), rows_b.tolist())))
    return out


def identity_relations(n_rows: Sequence[int]) -> list[dict[int, int]]:
    """Relations for layers that share one vocabulary, row for row."""
    return [{i: i for i in range(min(a, b))} for a, b in pairwise(n_rows)]


# ---------------------------------------------------------------- AlignedUMAP


@numba.njit(cache=True)
def _neighbourhood_similarities(graphs_indptr, graphs_indices, relations):
    """umap.aligned_umap.build_neighborhood_similarities with the same output, in O(edges) rather than
    O(n^2) per pair of layers: umap-learn 0.5.12 rebuilds the set of related rows once per row (its in1d), which
    took ~80 s for 7 layers of 4,000 words and grows with n^2 (hours at 20,000). The set is built once per pair
    here, as in umap-learn's fix (lmcinnes/umap pull request 1272)."""
    result = np.zeros(relations.shape, dtype=np.float32)
    center = (relations.shape[1] - 1) // 2
    n_rel = relations.shape[2]
    for i in range(relations.shape[0]):
        base_indptr = graphs_indptr[i]
        base_indices = graphs_indices[i]
        for j in range(relations.shape[1]):
            other = i + j - center
            if other < 0 or other >= len(graphs_indptr):
                continue
            comp_indptr = graphs_indptr[other]
            comp_indices = graphs_indices[other]
            rel = relations[i, j]
            related = np.zeros(len(comp_indptr) - 1, dtype=np.bool_)  # rows of `other` some row maps to
            for k in range(n_rel):
                if rel[k] >= 0:
                    related[rel[k]] = True
            for k in range(n_rel):
                c = rel[k]
                if c < 0:
                    continue
                raw = base_indices[base_indptr[k] : base_indptr[k + 1]]
                base = rel[raw[raw < n_rel]]
                base = base[base >= 0]
                comp = comp_indices[comp_indptr[c] : comp_indptr[c + 1]]
                comp = comp[related[comp]]
                inter = arr_intersect(base, comp).shape[0]
                union = arr_union(base, comp).shape[0]
                result[i, j, k] = inter / union if union > 0 else 1.0
    return result


# AlignedUMAP's pull of a word towards its place in the neighbouring layers, and how many layers either side
# pull. umap-learn's defaults (0.01, 3) made the default plan's MiniLM maps (20,000 words, 7 layers) only 2.4x
# steadier than independent maps; 0.1 with one layer either side made them 3.9x steadier, for 11% lower
# neighbour preservation and a cheaper layout (benchmarks/layers.py; docs/layers.md).
REGULARISATION = 0.1
WINDOW = 1


def aligned_maps(
    layers: Sequence[np.ndarray],
    n_components: int,
    cfg: ProjectionConfig,
    relations: list[dict[int, int]] | None = None,
    regularisation: float = REGULARISATION,
    window: int = WINDOW,
    knns: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    starts: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """One word map per layer, fitted jointly: (n_l, n_components) float32 each.

    `layers` are the per-layer (n_l, d) word vectors; `relations` link neighbouring layers (default: the same
    rows in every layer). Cosine metric, n_neighbors / min_dist / umap_epochs / seed from `cfg`. `knns`: each
    layer's cosine k-NN (compute.projections.knn_cosine), when the caller has it already; `starts`: each layer's
    starting layout (its first n_components columns are used; default: its spectral layout, as AlignedUMAP's).
    A word that UMAP leaves unconnected is placed at its place in the nearest layer that has one, or at the map's
    centre.

    This is umap-learn's AlignedUMAP optimisation (its graphs, neighbourhood similarities, Procrustes-chained
    starts and aligned layout), without what AlignedUMAP.fit also does and throws away: a complete UMAP fit
    per layer (layout included) just for its graph, and a spectral layout per layer per map."""
    from umap.aligned_umap import expand_relations, procrustes_align
    from umap.umap_ import find_ab_params, make_epochs_per_sample

    from compute import projections

    if len(layers) < 2:
        raise ValueError(f"layers: aligned maps need at least 2 layers, got {len(layers)}")
    relations = relations if relations is not None else identity_relations([len(X) for X in layers])
    if len(relations) != len(layers) - 1:
        raise ValueError(f"relations: {len(layers)} layers need {len(layers) - 1} relations, got {len(relations)}")
    if any(not r for r in relations):
        raise ValueError("relations: two neighbouring layers share no word")
    smallest = min(len(X) for X in layers)
    if smallest <= n_components + 1:
        raise ValueError(f"layers: a layer has {smallest} words, too few for a {n_components}-D map")
    n_neighbors = min(cfg.n_neighbors, smallest - 1)
    n_epochs = cfg.umap_epochs or 200  # AlignedUMAP's default
    data = [np.ascontiguousarray(X, dtype=np.float32) for X in layers]
    knns = knns or [projections.knn_cosine(X, n_neighbors, cfg.seed) for X in data]
    graphs = [projections.umap_graph(X, idx, dist, n_neighbors, cfg.seed) for X, (idx, dist) in zip(data, knns)]
    if starts is None:  # spectral, as AlignedUMAP starts: PCA starts cost 0.005 more trustworthiness (docs/layers.md)
        starts = [projections.initial_layout(X, g, n_components, "spectral", cfg.seed) for X, g in zip(data, graphs)]

    R = expand_relations(list(relations), window)
    indptr, indices = numba.typed.List(), numba.typed.List()
    heads, tails, epochs_per_sample = [], [], []
    for g in graphs:
        coo = g.tocoo()
        indptr.append(g.indptr.astype(np.int32))
        indices.append(g.indices.astype(np.int32))
        heads.append(coo.row.astype(np.int32))
        tails.append(coo.col.astype(np.int32))
        epochs_per_sample.append(make_epochs_per_sample(coo.data, n_epochs).astype(np.float64))
    weights = _neighbourhood_similarities(indptr, indices, R)

    embeddings = []
    for i, start in enumerate(starts):
        emb = np.asarray(start, dtype=np.float32)[:, :n_components]
        emb = emb * (10.0 / np.abs(emb).max())
        if i:  # rotated onto the layer below through the words they share
            anchors = R[i][window - 1]
            emb = procrustes_align(embeddings[-1], emb, np.vstack([anchors[anchors >= 0], np.where(anchors >= 0)[0]]))
        embeddings.append(np.ascontiguousarray(emb, dtype=np.float32))
    a, b = find_ab_params(1.0, cfg.min_dist)
    rng = np.random.RandomState(cfg.seed)
    seeds = rng.randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max, 3).astype(np.int64)
    maps = optimize_aligned(
        embeddings, heads, tails, n_epochs, epochs_per_sample, weights, R, seeds, a, b, regularisation
    )
    out = []
    for m, g in zip(maps, graphs):
        m = np.asarray(m, dtype=np.float32).copy()
        m[np.asarray(g.sum(axis=1)).ravel() == 0] = np.nan  # words without any neighbour edge
        out.append(m)
    return _fill_unplaced(out, relations)


# umap.layouts._optimize_layout_aligned_euclidean_single_epoch, line for line, on one array of every layer's
# points (rows off[m]:off[m+1]) and padded (layers, edges) arrays instead of numba typed lists: the same layouts
# bit for bit (tests/test_alignment.py), 4.2x faster, since every typed-list access in its inner loop cost more
# than the arithmetic around it. (umap-learn's is also compiled afresh on every call, ~20 s per map and worker.)
@numba.njit(fastmath=True, cache=True)
def _pulled(grad, value, emb, off, relations, weights, m, row, d, lambda_):
    """`grad` less the pull of coordinate d of row `row` of layer m (at `value`) towards the same word in the
    layers within the window below it: umap-learn's regularisation term, in its order."""
    n_embeddings = off.shape[0] - 1
    window_size = (relations.shape[1] - 1) // 2
    for offset in range(-window_size, window_size):
        neighbor_m = m + offset
        if n_embeddings > neighbor_m >= 0 != offset:
            identified_index = relations[m, offset + window_size, row]
            if identified_index >= 0:
                grad -= clip(
                    (lambda_ * np.exp(-(np.abs(offset) - 1)))
                    * weights[m, offset + window_size, row]
                    * (value - emb[off[neighbor_m] + identified_index, d])
                )
    return grad


@numba.njit(fastmath=True, cache=True)
def _aligned_epoch(
    emb,
    off,
    heads,
    tails,
    n_edges,
    eps,
    a,
    b,
    weights,
    relations,
    rng_state,
    gamma,
    lambda_,
    dim,
    alpha,
    per_neg,
    next_neg,
    next_s,
    n,
):
    n_embeddings = heads.shape[0]
    max_n_edges = 0
    for m in range(n_embeddings):
        if n_edges[m] >= max_n_edges:
            max_n_edges = n_edges[m]
    embedding_order = np.arange(n_embeddings).astype(np.int32)
    np.random.seed(abs(rng_state[0]))
    np.random.shuffle(embedding_order)
    for i in range(max_n_edges):
        for m in embedding_order:
            if i < n_edges[m] and next_s[m, i] <= n:
                base = off[m]
                j = heads[m, i]
                k = tails[m, i]
                current = emb[base + j]
                other = emb[base + k]
                dist_squared = rdist(current, other)
                if dist_squared > 0.0:
                    grad_coeff = -2.0 * a * b * pow(dist_squared, b - 1.0)
                    grad_coeff /= a * pow(dist_squared, b) + 1.0
                else:
                    grad_coeff = 0.0
                for d in range(dim):
                    grad_d = clip(grad_coeff * (current[d] - other[d]))
                    grad_d = _pulled(grad_d, current[d], emb, off, relations, weights, m, j, d, lambda_)
                    current[d] += clip(grad_d) * alpha
                    other_grad_d = clip(grad_coeff * (other[d] - current[d]))
                    other_grad_d = _pulled(other_grad_d, other[d], emb, off, relations, weights, m, k, d, lambda_)
                    other[d] += clip(other_grad_d) * alpha
                next_s[m, i] += eps[m, i]
                if per_neg[m, i] > 0:
                    n_neg_samples = int((n - next_neg[m, i]) / per_neg[m, i])
                else:
                    n_neg_samples = 0
                size = off[m + 1] - base
                for _p in range(n_neg_samples):
                    k = tau_rand_int(rng_state) % size
                    other = emb[base + k]
                    dist_squared = rdist(current, other)
                    if dist_squared > 0.0:
                        grad_coeff = 2.0 * gamma * b
                        grad_coeff /= (0.001 + dist_squared) * (a * pow(dist_squared, b) + 1)
                    elif j == k:
                        continue
                    else:
                        grad_coeff = 0.0
                    for d in range(dim):
                        if grad_coeff > 0.0:
                            grad_d = clip(grad_coeff * (current[d] - other[d]))
                        else:
                            grad_d = 0.0
                        grad_d = _pulled(grad_d, current[d], emb, off, relations, weights, m, j, d, lambda_)
                        current[d] += clip(grad_d) * alpha
                next_neg[m, i] += n_neg_samples * per_neg[m, i]


def _padded(arrays, dtype) -> np.ndarray:
    out = np.zeros((len(arrays), max(len(a) for a in arrays)), dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def optimize_aligned(embeddings, heads, tails, n_epochs, epochs_per_sample, weights, R, seeds, a, b, lambda_):
    """umap.layouts.optimize_layout_aligned_euclidean (move_other=True, sequential epochs, its default gamma,
    learning rate and negative sampling rate) with the epoch function _aligned_epoch: the same layouts, as a
    list of (n_l, dim) float32 arrays."""
    negative_sample_rate, alpha0 = 5.0, 1.0
    off = np.concatenate([[0], np.cumsum([len(e) for e in embeddings])]).astype(np.int64)
    emb = np.ascontiguousarray(np.concatenate(list(embeddings)), dtype=np.float32)
    n_edges = np.array([len(h) for h in heads], np.int64)
    per_negative = _padded([e.astype(np.float32) / negative_sample_rate for e in epochs_per_sample], np.float32)
    next_negative = per_negative.copy()
    next_sample = _padded([e.astype(np.float32) for e in epochs_per_sample], np.float32)
    eps = _padded(list(epochs_per_sample), np.float64)
    heads, tails = _padded(list(heads), np.int32), _padded(list(tails), np.int32)
    dim, alpha = emb.shape[1], alpha0
    for n in range(n_epochs):
        _aligned_epoch(
            emb, off, heads, tails, n_edges, eps, float(a), float(b), weights, R, seeds, 1.0, lambda_, dim, alpha,
            per_negative, next_negative, next_sample, n,
        )  # fmt: skip
        alpha = alpha0 * (1.0 - n / n_epochs)
    return [emb[off[i] : off[i + 1]] for i in range(len(off) - 1)]


def _fill_unplaced(maps: list[np.ndarray], relations: list[dict[int, int]]) -> list[np.ndarray]:
    """Rows without a place (NaN) take the place of the same word in the layer below or above, else the centre."""
    for layer, m in enumerate(maps):
        bad = np.flatnonzero(~np.isfinite(m).all(axis=1))
        if not len(bad):
            continue
        below = {v: k for k, v in relations[layer - 1].items()} if layer else {}
        above = relations[layer] if layer < len(relations) else {}
        for row in bad.tolist():
            for other, rel in ((layer - 1, below), (layer + 1, above)):
                r = rel.get(row)
                if r is not None and np.isfinite(maps[other][r]).all():
                    m[row] = maps[other][r]
                    break
            else:
                m[row] = np.nanmean(m, axis=0)
    return maps


def independent_maps(layers: Sequence[np.ndarray], n_components: int, cfg: ProjectionConfig) -> list[np.ndarray]:
    """Each layer's map fitted on its own, as compute.projections does for a run: the baseline for the
    aligned maps."""
    from compute import projections

    out = []
    for X in layers:
        idx, dist = projections.knn_cosine(X, cfg.n_neighbors, cfg.seed)
        out.append(projections.umap_embed(X, idx, dist, n_components, cfg))
    return out


# ---------------------------------------------------------------- steadiness


def _standardise(P: np.ndarray) -> np.ndarray:
    """Centred and scaled to a root-mean-square distance of 1 from the centre."""
    P = np.asarray(P, dtype=np.float64)
    P = P - P.mean(axis=0)
    rms = np.sqrt((P**2).sum(axis=1).mean())
    return P / rms if rms > 0 else P


def procrustes_displacement(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per row, how far a point moves from map A to map B once B is rotated (or reflected) onto A: the
    Euclidean distance after both maps are centred and scaled to unit root-mean-square radius, and B is fitted
    to A by an orthogonal Procrustes rotation. (n,) float64, in units of the maps' RMS radius."""
    A, B = _standardise(A), _standardise(B)
    if A.shape != B.shape:
        raise ValueError(f"maps: shapes differ ({A.shape} vs {B.shape})")
    R, _ = orthogonal_procrustes(B, A)
    return np.linalg.norm(B @ R - A, axis=1)


def steadiness(maps: Sequence[np.ndarray], relations: list[dict[int, int]] | None = None) -> np.ndarray:
    """Mean displacement of a word between each pair of neighbouring maps, over their shared words
    (procrustes_displacement): (n_layers - 1,) float64. Lower is steadier."""
    relations = relations if relations is not None else identity_relations([len(m) for m in maps])
    out = []
    for layer, rel in enumerate(relations):
        rows_a = np.fromiter(rel.keys(), dtype=np.int64, count=len(rel))
        rows_b = np.fromiter(rel.values(), dtype=np.int64, count=len(rel))
        out.append(procrustes_displacement(maps[layer][rows_a], maps[layer + 1][rows_b]).mean())
    return np.asarray(out)


def neighbour_preservation(X: np.ndarray, Y: np.ndarray, k: int = 15, seed: int = 0) -> float:
    """How faithful a map is to its vectors: the mean share of a word's k nearest neighbours by cosine in X
    (n, d) that are also among its k nearest in the map Y (n, c), Euclidean. 1 = every neighbourhood kept;
    k / (n - 1) for a random map."""
    from sklearn.neighbors import NearestNeighbors

    from compute import projections

    idx_x, _ = projections.knn_cosine(X, k, seed)
    _, idx_y = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y)
    # Drop each word itself (not always first when two words share a place).
    not_self = idx_y != np.arange(len(Y))[:, None]
    idx_y = np.take_along_axis(idx_y, np.argsort(~not_self, axis=1, kind="stable"), axis=1)[:, :k]
    hits = 0
    for s in range(0, len(X), 4096):
        a, b = idx_x[s : s + 4096, 1 : k + 1], idx_y[s : s + 4096]
        hits += int((a[:, :, None] == b[:, None, :]).any(axis=2).sum())
    return hits / (len(X) * k)
