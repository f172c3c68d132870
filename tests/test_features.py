"""Feature statistics, interpretability scores and cross-layer matching, each against an independent
computation written here."""

import numpy as np
import pytest
import scipy.sparse as sp

from compute import features, interpretability


def _sparse_acts(n=300, F=12, density=0.15, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.random((n, F)) * (rng.random((n, F)) < density)
    return sp.csr_matrix(A.astype(np.float32)), A


def test_match_features_is_brute_force_nearest_cosine():
    rng = np.random.default_rng(1)
    W_L, W_next = rng.standard_normal((40, 8)), rng.standard_normal((55, 8)) * 3
    idx, cos = features.match_features(W_L, W_next)
    assert idx.dtype == np.int32 and cos.dtype == np.float32 and idx.shape == (40,)
    for f in range(40):
        c = [W_L[f] @ w / np.linalg.norm(W_L[f]) / np.linalg.norm(w) for w in W_next]
        assert idx[f] == int(np.argmax(c))
        assert cos[f] == pytest.approx(max(c), abs=1e-5)
    # a layer matched against itself finds itself
    self_idx, self_cos = features.match_features(W_L, W_L)
    np.testing.assert_array_equal(self_idx, np.arange(40))
    np.testing.assert_allclose(self_cos, 1.0, atol=1e-5)


def test_column_top_matches_argsort():
    acts, A = _sparse_acts()
    words, vals = features.column_top(acts, m=50)
    assert words.shape == (12, 50) and words.dtype == np.int32
    for f in range(12):
        pos = np.flatnonzero(A[:, f] > 0)
        expect = pos[np.argsort(-A[pos, f], kind="stable")][:50]
        np.testing.assert_array_equal(words[f, : len(expect)], expect)
        np.testing.assert_allclose(vals[f, : len(expect)], A[expect, f], rtol=1e-6)
        assert (words[f, len(expect) :] == -1).all() and (vals[f, len(expect) :] == 0).all()


def test_quantile_groups_cover_the_range():
    acts, A = _sparse_acts(n=2000, F=4, density=0.3)
    words, vals = features.quantile_groups(acts, seed=0)
    for f in range(4):
        col = A[:, f]
        top = col.max()
        for q in range(5):
            lo, hi = top * (4 - q) / 5, top * (5 - q) / 5
            in_bin = np.flatnonzero((col > lo) & (col <= hi))
            chosen = words[f, q][words[f, q] >= 0]
            assert len(chosen) == min(5, len(in_bin))
            assert set(chosen) <= set(in_bin)
            np.testing.assert_allclose(vals[f, q, : len(chosen)], col[chosen], rtol=1e-6)
            assert (np.diff(vals[f, q, : len(chosen)]) <= 0).all()


def test_correlated_features_are_top_cosines_of_columns():
    acts, A = _sparse_acts(n=400, F=15, density=0.3)
    idx, cos = features.correlated_features(acts, m=10)
    norms = np.linalg.norm(A, axis=0)
    C = (A.T @ A) / np.outer(norms, norms)
    for f in range(15):
        others = [g for g in range(15) if g != f]
        expect = sorted(others, key=lambda g: -C[f, g])[:10]
        np.testing.assert_allclose(cos[f], C[f, expect], rtol=1e-5)
        np.testing.assert_allclose(C[f, idx[f]], C[f, expect], rtol=1e-5)


def test_dist_ratio_on_a_planted_intruder():
    rng = np.random.default_rng(3)
    n = 20
    X = rng.standard_normal((n, 4))
    X[11] = X[10]  # the two possible intruders sit at the same place
    S = np.zeros((n, 2))
    S[:5, 0] = [10, 9, 8, 7, 6]  # feature 0's top words: 0..4
    S[10:12, 1] = [5, 4]  # feature 1's top 10% (2 words): 10, 11, both in f0's bottom half
    S[:5, 1] = -1  # keep f1's own top words away from f0's top words
    ratios, _ = interpretability.dist_ratio(S, X, seed=0)
    T = X[:5]
    intra = np.mean([np.linalg.norm(T[a] - T[b]) for a in range(5) for b in range(a + 1, 5)])
    inter = np.mean([np.linalg.norm(X[10] - t) for t in T])
    assert ratios[0] == pytest.approx(inter / intra, rel=1e-6)


def test_dist_ratio_undefined_for_features_with_few_words():
    acts = sp.csr_matrix(np.array([[1, 0], [2, 0], [0, 0], [0, 3.0]] * 10, dtype=np.float32))
    acts[:, 0] = 0
    acts.eliminate_zeros()
    ratios, _ = interpretability.dist_ratio(acts, np.random.default_rng(0).standard_normal((40, 3)), positive_only=True)
    assert np.isnan(ratios[0])


def test_random_rotation_is_orthogonal_and_seeded():
    Q = interpretability.random_rotation(7, seed=5)
    np.testing.assert_allclose(Q @ Q.T, np.eye(7), atol=1e-10)
    np.testing.assert_array_equal(Q, interpretability.random_rotation(7, seed=5))
    assert not np.allclose(Q, interpretability.random_rotation(7, seed=6))


def test_dist_ratio_sparse_path_equals_dense_path():
    acts, A = _sparse_acts(n=500, F=20, density=0.1, seed=4)
    X = np.random.default_rng(5).standard_normal((500, 6))
    r_sparse, m_sparse = interpretability.dist_ratio(acts, X, seed=2, positive_only=True)
    r_dense, m_dense = interpretability.dist_ratio(A, X, seed=2, positive_only=True)
    np.testing.assert_array_equal(np.isnan(r_sparse), np.isnan(r_dense))
    np.testing.assert_allclose(r_sparse, r_dense, rtol=1e-6)
    assert m_sparse == pytest.approx(m_dense)


def test_pipeline_matches_each_layer_to_the_layer_below(minilm_store):
    """Every layer L >= 1 of a contextual run stores, per feature, the nearest decoder direction of layer
    L-1 and its cosine (brute force here), and all layers of the plan entry share one `family`."""
    from store import Catalog
    from store.schema import family_of

    root, ids = minilm_store
    cat = Catalog(root)
    runs = {cat.open(i).layer: cat.open(i) for i in ids}
    assert len({r.attrs["family"] for r in runs.values()}) == 1
    # Files without the attribute (older ones) get the same family from their stored config.
    assert runs[0].attrs["family"] == family_of(runs[0].model, runs[0].config)
    assert not runs[0].has("sae/prev_layer_match")
    for layer in range(1, 7):
        W = runs[layer].array("sae/W_dec").astype(np.float64)
        V = runs[layer - 1].array("sae/W_dec").astype(np.float64)
        cos = (W / np.linalg.norm(W, axis=1, keepdims=True)) @ (V / np.linalg.norm(V, axis=1, keepdims=True)).T
        np.testing.assert_array_equal(runs[layer].array("sae/prev_layer_match"), cos.argmax(axis=1))
        np.testing.assert_allclose(runs[layer].array("sae/prev_layer_cos"), cos.max(axis=1), atol=1e-5)
