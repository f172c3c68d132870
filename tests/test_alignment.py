"""Aligned word maps across layers: the relations, the faster neighbourhood-similarity kernel against
umap-learn's own, the steadiness measure against scipy's Procrustes, and AlignedUMAP maps on small synthetic
layers (steadier than independent maps, seeded, with differing vocabularies)."""

from itertools import pairwise

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import procrustes
from scipy.stats import ortho_group
from umap.aligned_umap import build_neighborhood_similarities, expand_relations

from compute import alignment
from compute.config import ProjectionConfig


def test_shared_rows_and_relations():
    a, b = ["x", "y", "z", "w", "z"], ["z", "q", "x", "x"]
    rows_a, rows_b = alignment.shared_rows(a, b)  # one to one: first rows of duplicated words
    assert rows_a.tolist() == [0, 2] and rows_b.tolist() == [2, 0]
    rel = alignment.layer_relations([a, b, ["x"]])
    assert rel == [{0: 2, 2: 0}, {2: 0}]
    assert alignment.identity_relations([3, 3, 2]) == [{0: 0, 1: 1, 2: 2}, {0: 0, 1: 1}]


def _typed(graphs):
    indptr = numba.typed.List.empty_list(numba.types.int32[::1])
    indices = numba.typed.List.empty_list(numba.types.int32[::1])
    for g in graphs:
        indptr.append(g.indptr.astype(np.int32))
        indices.append(g.indices.astype(np.int32))
    return indptr, indices


@pytest.mark.parametrize("window", [1, 3])
def test_neighbourhood_similarities_equal_umap_learn(window):
    rng = np.random.default_rng(0)
    sizes = [60, 45, 70, 50]
    graphs = [sp.random(n, n, density=0.12, format="csr", random_state=i) for i, n in enumerate(sizes)]
    relations = []
    for a, b in pairwise(sizes):
        keys = rng.choice(a, size=min(a, b) - 5, replace=False)
        vals = rng.choice(b, size=len(keys), replace=False)
        relations.append(dict(zip(keys.tolist(), vals.tolist())))
    R = expand_relations(relations, window)
    ours = alignment._neighbourhood_similarities(*_typed(graphs), R)
    theirs = build_neighborhood_similarities(*_typed(graphs), R)
    np.testing.assert_array_equal(ours, theirs)
    assert (ours > 0).any()


def test_procrustes_displacement_agrees_with_scipy():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(200, 3)) * [3, 1, 0.5]
    Q = ortho_group.rvs(3, random_state=2)
    np.testing.assert_allclose(alignment.procrustes_displacement(A, 4.0 * A @ Q - 2.0), 0, atol=1e-9)
    B = A @ Q + 0.3 * rng.normal(size=A.shape)
    disp = alignment.procrustes_displacement(A, B)
    # scipy scales both maps to unit Frobenius norm and B optimally: disparity = 1 - (sum of singular values)^2;
    # ours keeps both at unit RMS radius, so the mean squared displacement is 2 - 2 sqrt(1 - disparity).
    _, _, disparity = procrustes(A, B)
    assert np.mean(disp**2) == pytest.approx(2 - 2 * np.sqrt(1 - disparity), rel=1e-9)
    assert alignment.steadiness([A, B, B]).tolist() == pytest.approx([disp.mean(), 0.0], abs=1e-9)


def test_neighbour_preservation_equals_brute_force():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 10))
    Y = X[:, :2] + 0.3 * rng.normal(size=(300, 2))
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = U @ U.T
    np.fill_diagonal(C, -np.inf)
    D = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    k = 10
    nx, ny = np.argsort(-C, 1)[:, :k], np.argsort(D, 1)[:, :k]
    expected = np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny)])
    assert alignment.neighbour_preservation(X, Y, k) == pytest.approx(expected, abs=1e-12)
    random_map = rng.normal(size=(300, 2))
    assert alignment.neighbour_preservation(X, random_map, k) < 0.1


@pytest.fixture(scope="module")
def drifting_layers():
    """Four layers of 300 words in 12 clusters, the same words row for row; each layer is the one below slightly
    rotated and noised."""
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(12, 24)) * 3
    X = centres[rng.integers(0, 12, 300)] + rng.normal(size=(300, 24))
    layers = [X]
    for _ in range(3):
        Q = ortho_group.rvs(24, random_state=int(rng.integers(1 << 30)))
        X = 0.8 * X + 0.2 * X @ Q + 0.3 * rng.normal(size=X.shape)
        layers.append(X)
    return [x.astype(np.float32) for x in layers]


CFG = ProjectionConfig(n_neighbors=10, umap_epochs=40, seed=0)


def test_aligned_maps_are_steadier_than_independent_maps_and_seeded(drifting_layers):
    aligned = alignment.aligned_maps(drifting_layers, 2, CFG)
    again = alignment.aligned_maps(drifting_layers, 2, CFG)
    independent = alignment.independent_maps(drifting_layers, 2, CFG)
    assert [m.shape for m in aligned] == [(300, 2)] * 4 and all(np.isfinite(m).all() for m in aligned)
    for m, n in zip(aligned, again):
        np.testing.assert_array_equal(m, n)
    steady_aligned = alignment.steadiness(aligned).mean()
    steady_independent = alignment.steadiness(independent).mean()
    assert steady_independent > 2 * steady_aligned, (steady_independent, steady_aligned)
    # Still a faithful map of each layer.
    for X, m in zip(drifting_layers, aligned):
        assert alignment.neighbour_preservation(X, m, 10) > 0.3


def test_aligned_maps_with_differing_vocabularies(drifting_layers):
    """Layer 1 lacks the first 50 words, and its rows come in reverse order."""
    words = [f"w{i}" for i in range(300)]
    vocabs = [words, words[50:][::-1], words, words]
    layers = [drifting_layers[0], drifting_layers[1][50:][::-1], drifting_layers[2], drifting_layers[3]]
    relations = alignment.layer_relations(vocabs)
    assert len(relations[0]) == 250 and relations[0][299] == 0
    maps = alignment.aligned_maps(layers, 3, CFG, relations=relations)
    assert [m.shape for m in maps] == [(300, 3), (250, 3), (300, 3), (300, 3)]
    assert all(np.isfinite(m).all() for m in maps)
    assert alignment.steadiness(maps, relations).shape == (3,)


def test_aligned_maps_reject_bad_input(drifting_layers):
    with pytest.raises(ValueError, match="at least 2 layers"):
        alignment.aligned_maps(drifting_layers[:1], 2, CFG)
    with pytest.raises(ValueError, match="share no word"):
        alignment.aligned_maps(drifting_layers[:2], 2, CFG, relations=[{}])


def test_optimize_aligned_equals_umap_learn():
    """The cached aligned-layout loop gives umap-learn's layouts exactly (3 layers, identity relations)."""
    from umap.layouts import optimize_layout_aligned_euclidean
    from umap.umap_ import make_epochs_per_sample

    from compute import projections

    layers = [np.random.default_rng(i).normal(size=(120, 8)).astype(np.float32) for i in range(3)]
    R = expand_relations(alignment.identity_relations([120] * 3), 1)
    graphs = [projections.umap_graph(X, *projections.knn_cosine(X, 10), 10) for X in layers]
    heads, tails, eps = numba.typed.List(), numba.typed.List(), numba.typed.List()
    for g in graphs:
        coo = g.tocoo()
        heads.append(coo.row.astype(np.int32))
        tails.append(coo.col.astype(np.int32))
        eps.append(make_epochs_per_sample(coo.data, 30))
    weights = alignment._neighbourhood_similarities(*_typed(graphs), R)
    starts = [np.random.default_rng(9 + i).uniform(-10, 10, (120, 2)).astype(np.float32) for i in range(3)]
    seeds = np.array([1, 2, 3], np.int64)

    def fresh():
        return numba.typed.List([s.copy() for s in starts])

    ours = alignment.optimize_aligned(fresh(), heads, tails, 30, eps, weights, R, seeds.copy(), 1.577, 0.895, 0.1)
    shared = fresh()  # AlignedUMAP passes one list as both the heads' and the tails' layouts
    theirs = optimize_layout_aligned_euclidean(
        shared, shared, heads, tails, 30, eps, weights, R, seeds.copy(), a=1.577, b=0.895, lambda_=0.1,
        parallel=False, move_other=True,
    )  # fmt: skip
    assert not np.allclose(ours[0], starts[0])
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
