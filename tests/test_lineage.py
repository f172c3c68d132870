"""Feature lineage across layers: matches checked against dense brute-force computations, the threshold against a
Monte Carlo null, and lineages recovered on synthetic layers with planted, slowly rotating feature directions."""

import numpy as np
import pytest
import scipy.sparse as sp

from compute import lineage

D, N_LAYERS, PLANTED, RANDOM, N_WORDS = 64, 5, 24, 40, 600


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def planted():
    """Per layer: a decoder whose rows are the planted directions (each rotated a little from the layer below:
    cosine ~0.9 to its predecessor) and fresh random directions, in a random order; sparse activations where a
    planted feature fires on the same words in every layer (plus noise) and a random feature on random words.
    Returns decoders, activations, and where[l][p], the row of planted feature p in layer l."""
    rng = np.random.default_rng(7)
    dirs = _unit(rng.normal(size=(PLANTED, D)))
    fires = rng.random((N_WORDS, PLANTED)) < 0.05  # the words each planted feature is about
    strength = rng.uniform(0.5, 2.0, (N_WORDS, PLANTED))
    decoders, acts, where = [], [], []
    for layer in range(N_LAYERS):
        if layer:
            dirs = _unit(dirs + 0.06 * rng.normal(size=dirs.shape))  # ~0.9 cosine per step in 64 dims
        W = np.vstack([dirs, _unit(rng.normal(size=(RANDOM, D)))]) * rng.uniform(0.5, 3.0, (PLANTED + RANDOM, 1))
        A = np.hstack(
            [
                fires * strength * rng.uniform(0.8, 1.2, fires.shape)
                + (rng.random(fires.shape) < 0.01) * rng.random(fires.shape),
                (rng.random((N_WORDS, RANDOM)) < 0.05) * rng.uniform(0.5, 2.0, (N_WORDS, RANDOM)),
            ]
        )
        order = rng.permutation(PLANTED + RANDOM)  # row i of this layer is feature order[i]
        decoders.append(W[order].astype(np.float32))
        acts.append(sp.csr_matrix(A[:, order].astype(np.float32)))
        where.append(np.argsort(order)[:PLANTED])
    return decoders, acts, np.array(where)


def _dense_corr(A, B):
    """Pearson correlation of every column of A with every column of B (numpy's corrcoef)."""
    C = np.corrcoef(np.hstack([A, B]).T)
    return C[: A.shape[1], A.shape[1] :]


def test_decoder_matches_equal_brute_force():
    rng = np.random.default_rng(0)
    Wa, Wb = rng.normal(size=(150, 20)) * rng.uniform(0.1, 5, (150, 1)), rng.normal(size=(90, 20))
    C = _unit(Wa) @ _unit(Wb).T
    ab, ab_cos, ba, ba_cos = lineage.decoder_matches(Wa, Wb, block_entries=90 * 7)  # 22 blocks of 7 rows
    np.testing.assert_array_equal(ab, C.argmax(1))
    np.testing.assert_array_equal(ba, C.argmax(0))
    np.testing.assert_allclose(ab_cos, C.max(1), atol=1e-6)
    np.testing.assert_allclose(ba_cos, C.max(0), atol=1e-6)


def test_correlation_matches_equal_dense_corrcoef_on_shared_rows():
    rng = np.random.default_rng(1)
    n = 300
    A = (rng.random((n, 40)) < 0.1) * rng.random((n, 40))
    B = (rng.random((n, 30)) < 0.1) * rng.random((n, 30))
    B[:, 3] = A[:, 5] * 2 + 0.01 * (A[:, 5] > 0)  # a near-copy
    A[:, 7] = 0  # silent in a
    B[:, 9] = 0  # silent in b
    # b's words come in another order and b has 50 words a lacks; rows_a/rows_b pair up the shared ones.
    perm = rng.permutation(n)
    B_rows = np.vstack([B[perm], rng.random((50, 30))])
    rows_a, rows_b = np.arange(n), np.argsort(perm)
    ab, ab_r, ba, ba_r = lineage.correlation_matches(
        sp.csr_matrix(A), sp.csr_matrix(B_rows), rows_a, rows_b, block_entries=30 * 4
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        R = _dense_corr(A, B)
    R_ok = np.where(np.isfinite(R), R, -np.inf)
    live_a = np.flatnonzero(A.std(0) > 0)
    live_b = np.flatnonzero(B.std(0) > 0)
    np.testing.assert_array_equal(ab[live_a], R_ok[live_a].argmax(1))
    np.testing.assert_allclose(ab_r[live_a], R_ok[live_a].max(1), atol=1e-6)
    np.testing.assert_array_equal(ba[live_b], R_ok[:, live_b].argmax(0))
    np.testing.assert_allclose(ba_r[live_b], R_ok[:, live_b].max(0), atol=1e-6)
    assert ab[7] == -1 and np.isnan(ab_r[7]) and ba[9] == -1 and np.isnan(ba_r[9])
    assert ab[5] == 3 and ab_r[5] > 0.99
    pairs = lineage.pair_correlation(
        sp.csr_matrix(A), sp.csr_matrix(B_rows), [5, 0, 7, 2], [3, 4, 1, -1], rows_a, rows_b
    )
    np.testing.assert_allclose(pairs[:2], [R[5, 3], R[0, 4]], atol=1e-6)
    assert np.isnan(pairs[2]) and np.isnan(pairs[3])


def test_threshold_matches_a_monte_carlo_null():
    rng = np.random.default_rng(2)
    d, n_a, n_b, chance = 16, 12, 20, 0.05
    best = []
    for _ in range(3000):
        C = _unit(rng.normal(size=(n_a, d))) @ _unit(rng.normal(size=(n_b, d))).T
        best.append(C.max())
    t = lineage.cosine_threshold(d, n_a, n_b, chance)
    assert np.mean(np.array(best) >= t) == pytest.approx(chance, abs=0.015)
    assert lineage.cosine_threshold(384, 2048, 2048) == pytest.approx(0.310, abs=0.001)
    assert lineage.cosine_threshold(64, 10, 10) < lineage.cosine_threshold(64, 1000, 1000)  # more pairs, higher bar
    assert lineage.cosine_threshold(768, 100, 100) < lineage.cosine_threshold(64, 100, 100)  # more room, lower bar


def test_planted_lineages_are_recovered_and_random_features_are_not_chained(planted):
    decoders, acts, where = planted
    ups, downs, lin = lineage.trace_layers(decoders, acts)
    assert len(lin.chains) == N_LAYERS
    for layer in range(N_LAYERS):
        chain = lin.chains[layer]
        assert chain.shape == (PLANTED + RANDOM, N_LAYERS)
        np.testing.assert_array_equal(chain[where[layer]], where.T)  # every planted feature: its whole chain
        random_rows = np.setdiff1d(np.arange(PLANTED + RANDOM), where[layer])
        others = np.delete(chain[random_rows], layer, axis=1)
        assert (others == -1).all(), f"a random feature of layer {layer} was chained"
        assert lin.born[layer][where[layer]].sum() == 0
        assert lin.born[layer][random_rows].all() == (layer > 0)
        assert lin.ending[layer][random_rows].all() == (layer < N_LAYERS - 1)
    np.testing.assert_array_equal(lin.carried_up, [PLANTED] * (N_LAYERS - 1) + [0])
    np.testing.assert_array_equal(lin.carried_from_below, [0] + [PLANTED] * (N_LAYERS - 1))
    # Planted features fire on the same words in every layer: the activation match agrees with the decoder's.
    for layer in range(N_LAYERS - 1):
        np.testing.assert_array_equal(ups[layer].corr_idx[where[layer]], where[layer + 1])
        np.testing.assert_array_equal(downs[layer].corr_idx[where[layer + 1]], where[layer])
        assert (ups[layer].cos_idx_corr[where[layer]] > 0.8).all()
        assert (ups[layer].cos[where[layer]] > lin.thresholds[layer]).all()


def test_a_weak_step_ends_the_lineage_there():
    """Cosines just below the threshold between layers 1 and 2 cut every chain in two."""
    rng = np.random.default_rng(3)
    d, F = 32, 16
    base = _unit(rng.normal(size=(F, d)))
    t = lineage.cosine_threshold(d, F, F)
    # Layer 2: each direction mixed with an orthogonal one so that its cosine to layer 1 is t - 0.05.
    noise = rng.normal(size=(F, d))
    noise -= (noise * base).sum(1, keepdims=True) * base
    c = t - 0.05
    bent = c * base + np.sqrt(1 - c**2) * _unit(noise)
    _, _, lin = lineage.trace_layers([base, base, bent, bent])
    best_cross = (_unit(base) @ _unit(bent).T).max(1)
    assert (best_cross < t).all()
    np.testing.assert_array_equal(lin.chains[0][:, :2], np.tile(np.arange(F)[:, None], 2))
    assert (lin.chains[0][:, 2:] == -1).all() and lin.ending[1].all() and lin.born[2].all()
    np.testing.assert_array_equal(lin.carried_up, [F, 0, F, 0])


def test_lineage_without_activations_and_bad_input():
    rng = np.random.default_rng(4)
    W = rng.normal(size=(10, 8))
    up, _ = lineage.match_layers(W, W)
    np.testing.assert_array_equal(up.cos_idx, np.arange(10))
    assert (up.corr_idx == -1).all() and np.isnan(up.corr).all()
    with pytest.raises(ValueError, match="input dims differ"):
        lineage.decoder_matches(W, rng.normal(size=(10, 9)))
    with pytest.raises(ValueError, match="shared rows"):
        lineage.correlation_matches(sp.csr_matrix(np.ones((5, 2))), sp.csr_matrix(np.ones((6, 2))))
    with pytest.raises(ValueError, match="at least 2 layers"):
        lineage.trace_layers([W])


def test_relations_keep_mutual_good_matches_only(planted):
    decoders, _, where = planted
    ups, downs, lin = lineage.trace_layers(decoders)
    rel = lineage.relations(ups, downs, lin.thresholds)
    for layer, r in enumerate(rel):
        assert r == dict(zip(where[layer].tolist(), where[layer + 1].tolist()))
