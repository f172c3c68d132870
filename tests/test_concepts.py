"""compute/concepts.py: the feature-label score on planted data and against a dense per-pair computation."""

import numpy as np
import pytest
import scipy.sparse as sp

from compute.concepts import (
    concept_scores,
    feature_labels,
    median_top_share,
    top_label_share,
)


def planted_sae_acts(n=400, d=6, seed=0):
    """Words in d-dim space; label c's words (40 each, rows 40c..40c+39) point along axis c. A hand-set
    ReLU encoder with one feature per axis (weights e_c, bias -0.5) fires exactly on label c's words.
    Feature 5 reads axis 0 and axis 5, which carries 40 unrelated words (no label): twice as many words."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 0.05, (n, d))
    member = np.zeros((n, 5), bool)
    for c in range(5):
        X[40 * c : 40 * c + 40, c] += 1.0
        member[40 * c : 40 * c + 40, c] = True
    X[200:240, 5] += 1.0  # unrelated words, in no label
    W = np.eye(d)
    W[0, 5] = 1.0  # feature 5 = axis 0 + axis 5
    acts = np.maximum(X @ W - 0.5, 0)
    return sp.csr_matrix(acts), member


def dense_scores(acts, member):
    """Independent reference: one (feature, label) pair at a time, dense."""
    A, M = np.asarray(acts), np.asarray(member, bool)
    F, L = A.shape[1], M.shape[1]
    P, R, F1 = np.zeros((F, L)), np.zeros((F, L)), np.zeros((F, L))
    for f in range(F):
        col = A[:, f]
        for c in range(L):
            words = M[:, c]
            P[f, c] = col[words].sum() / col.sum() if col.sum() > 0 else 0.0
            R[f, c] = (col[words] > 0).sum() / words.sum() if words.sum() else 0.0
            F1[f, c] = 2 * P[f, c] * R[f, c] / (P[f, c] + R[f, c]) if P[f, c] + R[f, c] > 0 else 0.0
    return P, R, F1


def test_feature_on_exactly_one_label_scores_one():
    acts, member = planted_sae_acts()
    s = concept_scores(acts, member)
    for c in range(5):
        assert s.best[c] == c
        assert s.f1[c, c] == pytest.approx(1.0, abs=1e-6)
        assert s.precision[c, c] == pytest.approx(1.0) and s.recall[c, c] == pytest.approx(1.0)


def test_feature_on_label_plus_as_many_unrelated_words_scores_two_thirds():
    acts, member = planted_sae_acts()
    s = concept_scores(acts, member)
    assert s.best[5] == 0
    assert s.recall[5, 0] == pytest.approx(1.0)
    assert s.precision[5, 0] == pytest.approx(0.5, abs=0.02)  # the activation mass is split about evenly
    assert s.f1[5, 0] == pytest.approx(2 / 3, abs=0.02)


def test_vectorised_scores_match_dense_reference_on_random_data():
    rng = np.random.default_rng(3)
    n, F, L = 300, 25, 12
    A = rng.exponential(1.0, (n, F)) * (rng.random((n, F)) < 0.08)
    A[:, 7] = 0  # a dead feature
    member = rng.random((n, L)) < rng.uniform(0.01, 0.3, L)
    member[:, 4] = False  # an empty label
    s = concept_scores(sp.csr_matrix(A), sp.csr_matrix(member), min_words=1)
    P, R, F1 = dense_scores(A, member)
    np.testing.assert_allclose(s.precision, P, atol=1e-6)
    np.testing.assert_allclose(s.recall, R, atol=1e-6)
    np.testing.assert_allclose(s.f1, F1, atol=1e-6)
    for f in range(F):
        if F1[f].max() > 0:
            assert s.best[f] == int(np.argmax(F1[f])) and s.best_f1[f] == pytest.approx(F1[f].max(), abs=1e-6)
        else:
            assert s.best[f] == -1 and s.best_f1[f] == 0
    assert s.best[7] == -1


def test_small_labels_are_left_out_and_ties_take_the_lower_label():
    acts = sp.csr_matrix(np.array([[1.0], [1.0], [0.0], [0.0]]))
    member = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    s = concept_scores(acts, member, min_words=2)
    assert list(s.eligible) == [True, True, False]
    assert s.f1[0, 2] == 0  # label 2 has one word: not eligible
    assert s.best[0] == 0  # labels 0 and 1 tie at F1 = 1


def test_bad_inputs_get_one_line_errors():
    with pytest.raises(ValueError, match="rows"):
        concept_scores(sp.csr_matrix(np.ones((3, 2))), np.ones((4, 1), bool))
    with pytest.raises(ValueError, match="non-negative"):
        concept_scores(sp.csr_matrix(-np.ones((3, 2))), np.ones((3, 1), bool))


def test_feature_labels_and_top_label_share():
    words = ["dog", "cat", "horse", "red", "blue"]
    member = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], bool)
    top = np.array([[0, 1, 2, 3], [3, 4, -1, -1], [-1, -1, -1, -1]])
    names = feature_labels(
        top, words, ["noun.animal", "adj.all"], np.array([0, 1, -1]), np.array([0.42, 0.05, 0.0]), floor=0.1
    )
    assert names == ["noun.animal 0.42 · dog, cat, horse", "red, blue", "(never fires)"]
    share = top_label_share(top, member, np.array([0, 1, -1]))
    assert share[0] == pytest.approx(0.75) and share[1] == pytest.approx(1.0) and np.isnan(share[2])


def test_median_top_share_ranks_by_score():
    member = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], bool)
    top = np.array([[0, 1], [2, 3], [0, 3]])
    best = np.array([0, 1, 0])
    # by score: feature 1 (share 1/2), feature 2 (1/2), feature 0 (1)
    assert median_top_share(np.array([0.1, 0.9, 0.5]), top, member, best, n_features=2) == pytest.approx(0.5)
    assert median_top_share(np.array([0.1, 0.9, 0.5]), top, member, best, n_features=3) == pytest.approx(0.5)
    assert median_top_share(np.array([0.9, 0.1, 0.5]), top, member, best, n_features=1) == pytest.approx(1.0)


def test_no_labels_at_all_falls_back_to_top_words():
    acts = sp.csr_matrix(np.array([[1.0, 0], [0.5, 0], [0, 2.0]]))
    s = concept_scores(acts, sp.csr_matrix((3, 0), dtype=bool))
    assert s.f1.shape == (2, 0) and list(s.best) == [-1, -1] and list(s.best_f1) == [0, 0]
    names = feature_labels(np.array([[0, 1], [2, -1]]), ["a", "b", "c"], [], s.best, s.best_f1)
    assert names == ["a, b", "c"]
