"""Comparing two runs: linear CKA against the Gram-matrix (HSIC) form, neighbour overlap against a brute-force
numpy computation, and the shared-vocabulary bookkeeping of compare_runs."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import ortho_group

from compute import compare


def _hsic_cka(X, Y):
    """Independent: CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = X X^T, L = Y Y^T, HSIC(K, L) =
    tr(K H L H) with the centring matrix H = I - 11^T / n (Kornblith et al. 2019, eq. 3 and 4)."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A, B):
        return np.trace(A @ H @ B @ H)

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.fixture(scope="module")
def reps():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24)) + 3.0  # anisotropic, off-centre
    Y = np.tanh(X @ rng.normal(size=(24, 40))) + 0.5 * rng.normal(size=(400, 40))
    return X, Y


def test_cka_equals_the_hsic_form(reps):
    X, Y = reps
    assert compare.linear_cka(X, Y) == pytest.approx(_hsic_cka(X, Y), rel=1e-9)
    assert compare.linear_cka(X[:37], Y[:37, :5]) == pytest.approx(_hsic_cka(X[:37], Y[:37, :5]), rel=1e-9)


def test_cka_is_one_for_itself_and_a_rotation_and_near_zero_for_shuffled_rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 16)) * np.linspace(0.2, 3, 16)
    Q = ortho_group.rvs(16, random_state=2)
    assert compare.linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert compare.linear_cka(X, 2.5 * X @ Q + 7.0) == pytest.approx(1.0, abs=1e-10)
    assert compare.linear_cka(X, X[rng.permutation(len(X))]) < 0.02
    base = compare.shuffled_cka(X, X, repeats=4, seed=0)
    assert base.shape == (4,) and (base < 0.02).all()
    assert np.isnan(compare.linear_cka(X, np.ones_like(X)))
    with pytest.raises(ValueError, match="row counts differ"):
        compare.linear_cka(X, X[:-1])


def test_cka_per_label_uses_the_label_rows_only(reps):
    X, Y = reps
    rng = np.random.default_rng(3)
    mask = rng.random(len(X)) < 0.2
    out = compare.cka_by_label(X, Y, {"some": mask, "tiny": np.flatnonzero(mask)[:2], "idx": np.arange(50)})
    assert out["some"]["n"] == mask.sum()
    assert out["some"]["cka"] == pytest.approx(_hsic_cka(X[mask], Y[mask]), rel=1e-9)
    assert out["idx"]["cka"] == pytest.approx(_hsic_cka(X[:50], Y[:50]), rel=1e-9)
    assert np.isnan(out["tiny"]["cka"]) and out["tiny"]["n"] == 2
    assert 0 < out["some"]["shuffled"] < out["some"]["cka"]


def _brute_top_k(X, k):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = U @ U.T
    np.fill_diagonal(C, -np.inf)
    return np.argsort(-C, axis=1)[:, :k]


def test_neighbour_jaccard_equals_brute_force():
    rng = np.random.default_rng(4)
    Xa = rng.normal(size=(500, 12))
    Xb = Xa @ rng.normal(size=(12, 30)) + 1.5 * rng.normal(size=(500, 30))
    jac, Na, Nb = compare.neighbour_overlap(Xa, Xb, k=10)
    Ba, Bb = _brute_top_k(Xa, 10), _brute_top_k(Xb, 10)
    np.testing.assert_array_equal(Na, Ba)
    np.testing.assert_array_equal(Nb, Bb)
    expected = np.array([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(Ba, Bb)])
    np.testing.assert_allclose(jac, expected, rtol=0, atol=1e-12)
    assert 0 < jac.mean() < 1
    np.testing.assert_allclose(compare.jaccard_rows(Ba, Bb, block=7), expected)
    top, bottom = compare.extremes(jac, 5)
    np.testing.assert_array_equal(jac[top], np.sort(jac)[::-1][:5])
    np.testing.assert_array_equal(jac[bottom], np.sort(jac)[:5])


def test_random_jaccard_baseline_matches_simulation():
    rng = np.random.default_rng(5)
    n, k = 200, 10
    sims = [
        compare.jaccard_rows(rng.choice(n - 1, (1, k), replace=False), rng.choice(n - 1, (1, k), replace=False))[0]
        for _ in range(4000)
    ]
    assert np.mean(sims) == pytest.approx(compare.random_jaccard(n, k), rel=0.1)


def test_compare_runs_on_differing_vocabularies():
    rng = np.random.default_rng(6)
    words = [f"w{i}" for i in range(300)]
    X = rng.normal(size=(300, 20))
    groups = {"even": np.arange(300) % 2 == 0}
    # Run b: the same vectors rotated, its words in another order, 40 of a's words missing and 25 of its own.
    Q = ortho_group.rvs(20, random_state=7)
    order = rng.permutation(300)[:260]
    words_b = [words[i] for i in order] + [f"extra{i}" for i in range(25)]
    X_b = np.vstack([X[order] @ Q, rng.normal(size=(25, 20))])
    acts_a = sp.csr_matrix(np.maximum(X[:, :6], 0))
    acts_b = sp.csr_matrix(np.maximum(X_b @ Q.T[:, :6], 0)[:, ::-1])  # the same features, reversed order
    c = compare.compare_runs(words, X, words_b, X_b, labels_a=groups, acts_a=acts_a, acts_b=acts_b)
    assert sorted(c.words) == sorted(words[i] for i in order)
    assert [words_b[j] for j in c.rows_b] == c.words == [words[i] for i in c.rows_a]
    assert c.cka == pytest.approx(1.0, abs=1e-10)
    assert (c.jaccard == 1.0).all()
    assert c.cka_labels["even"]["cka"] == pytest.approx(1.0, abs=1e-10)
    assert c.cka_shuffled.max() < 0.2 and c.jaccard_random < 0.05
    np.testing.assert_array_equal(c.features_a_to_b[0], np.arange(6)[::-1])
    np.testing.assert_allclose(c.features_a_to_b[1], 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="share 0 words"):
        compare.compare_runs(["a"] * 3, X[:3], ["b"] * 3, X[:3])


def test_neighbour_change_through_layers():
    rng = np.random.default_rng(8)
    layers = [rng.normal(size=(120, 8))]
    for _ in range(3):
        layers.append(layers[-1] + 0.4 * rng.normal(size=(120, 8)))
    neigh = [_brute_top_k(X, 10) for X in layers]
    change = compare.neighbour_change(neigh)
    assert change.shape == (120, 3)
    for w in (0, 57, 119):
        for step in range(3):
            a, b = set(neigh[step][w]), set(neigh[step + 1][w])
            assert change[w, step] == pytest.approx(len(a & b) / len(a | b))
