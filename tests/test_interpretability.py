"""compute/interpretability.py (QVEC, basis report) and the frozen-random-decoder baseline (compute/sae/train.py's
freeze_decoder)."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from compute.config import ReluL1Config, TopKConfig
from compute.interpretability import basis_report, correlations, dist_ratio, qvec, qvec_columns, random_rotation

NAMES = ["adj.all", "noun.animal", "noun.food", "verb.motion"]  # QVEC uses the last three


def test_correlations_match_numpy_corrcoef_dense_and_sparse():
    rng = np.random.default_rng(0)
    S = rng.exponential(1, (80, 6)) * (rng.random((80, 6)) < 0.3)
    S[:, 2] = 0  # constant column: r = 0
    P = rng.random((80, 4))
    want = np.corrcoef(np.hstack([S, P]).T)[:6, 6:]
    want[2] = 0
    np.testing.assert_allclose(correlations(S, P), want, atol=1e-10)
    np.testing.assert_allclose(correlations(sp.csr_matrix(S), sp.csr_matrix(P)), want, atol=1e-10)


def brute_force_qvec(S, W, signed):
    """Tsvetkov et al.'s definition, literally: the best alignment (each dimension to at most one of the QVEC
    columns, or none), enumerated, over the words with a QVEC supersense."""
    cols = [1, 2, 3]
    rows = W[:, cols].sum(1) > 0
    S, P = S[rows], W[rows][:, cols]
    r = np.array([[np.corrcoef(S[:, i], P[:, j])[0, 1] for j in range(3)] for i in range(S.shape[1])])
    r = np.nan_to_num(np.abs(r) if signed else r)  # a constant column correlates with nothing
    best = -np.inf
    for choice in itertools.product(range(4), repeat=S.shape[1]):  # 3 = no alignment
        best = max(best, sum(r[i, j] for i, j in enumerate(choice) if j < 3))
    return best, rows.sum()


@pytest.mark.parametrize("signed", [False, True])
def test_qvec_equals_the_best_alignment_by_enumeration(signed):
    rng = np.random.default_rng(1)
    n = 120
    W = rng.dirichlet(np.ones(4) * 0.3, n) * (rng.random((n, 1)) < 0.8)  # some words without supersenses
    S = rng.normal(size=(n, 4))
    S[:, 0] = W[:, 2] + 0.1 * rng.normal(size=n)  # a dimension aligned with noun.food
    S[:, 1] = 1 - W[:, 1]  # anti-aligned with noun.animal
    if not signed:
        S = np.maximum(S, 0)
    S[:, 3] = 0 if not signed else S[:, 3]  # an SAE's dead feature
    got = qvec(S, sp.csr_matrix(W), NAMES, signed=signed)
    want, words = brute_force_qvec(S, W, signed)
    assert got["qvec_sum"] == pytest.approx(want, abs=1e-9)
    dims = 4 if signed else 3
    assert got["words"] == words and got["dims"] == dims
    assert got["aligned"][0] == 2 and (got["aligned"][1] == 1) == signed
    assert got["qvec_mean"] == pytest.approx(want / dims, abs=1e-9)


def test_qvec_leaves_out_words_whose_supersense_weights_are_all_zero():
    rng = np.random.default_rng(7)
    n = 60
    W = rng.dirichlet(np.ones(4), n)
    W[:10] = 0
    S = rng.normal(size=(n, 3))
    want = qvec(S[10:], sp.csr_matrix(W[10:]), NAMES, signed=True)
    stored = sp.csr_matrix(W)
    stored[:10, 1] = 0  # explicit zeros stored in the matrix: still no sense weight
    assert stored.nnz > sp.csr_matrix(W).nnz
    got = qvec(np.vstack([rng.normal(size=(10, 3)), S[10:]]), stored, NAMES, signed=True)
    assert got["words"] == n - 10 and got["qvec_mean"] == pytest.approx(want["qvec_mean"])


def test_qvec_columns_are_noun_and_verb_supersenses():
    from compute.labels import LEXNAMES

    assert len(qvec_columns(LEXNAMES)) == 41  # 26 noun + 15 verb files (Tsvetkov et al.)


def test_basis_report_has_every_basis_and_reuses_dist_ratio():
    rng = np.random.default_rng(2)
    n, d = 300, 6
    X = rng.normal(size=(n, d))
    acts = sp.csr_matrix(np.maximum(X @ rng.normal(size=(d, 20)) - 1.5, 0))
    W = sp.csr_matrix(rng.dirichlet(np.ones(4), n))
    rep = basis_report(acts, X, W, NAMES, seed=0, random_decoder_acts=acts)
    assert set(rep) == {"sae", "raw", "rotated", "random_decoder"}
    per_feature, sae_mean = dist_ratio(acts, X, 0, positive_only=True)
    assert rep["sae"]["intrusion"] == pytest.approx(sae_mean)
    np.testing.assert_array_equal(rep["sae"]["per_feature"], per_feature)
    assert rep["raw"]["intrusion"] == pytest.approx(dist_ratio(X, X, 0)[1])
    rotated = (X - X.mean(0)) @ random_rotation(d, 0)
    assert rep["rotated"]["intrusion"] == pytest.approx(dist_ratio(rotated, X, 0)[1])
    assert rep["random_decoder"]["intrusion"] == rep["sae"]["intrusion"]
    assert rep["random_decoder"]["qvec_mean"] == rep["sae"]["qvec_mean"]
    assert rep["raw"]["qvec_mean"] == pytest.approx(qvec(X, W, NAMES, signed=True)["qvec_mean"])


@pytest.mark.parametrize(
    "cfg",
    [
        TopKConfig(d_sae=32, k=4, steps=150, batch_size=64, seed=3),
        ReluL1Config(d_sae=32, l1=0.5, steps=150, batch_size=64, seed=3),
    ],
    ids=["topk", "relu_l1"],
)
def test_frozen_decoder_sae_trains_only_the_encoder(cfg):
    import torch

    from compute import sae as sae_lib

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))).astype(np.float32)
    model = sae_lib.fit(X, cfg, freeze_decoder=True)
    W0 = torch.randn(32, 8, generator=torch.Generator().manual_seed(3)).numpy()  # the seeded initial rows
    W0 = W0 / np.linalg.norm(W0, axis=1, keepdims=True)
    np.testing.assert_allclose(model.W_dec.detach().numpy(), W0, atol=1e-6)  # decoder frozen at unit rows
    assert not np.allclose(model.W_enc.detach().numpy(), W0.T, atol=1e-3)  # encoder trained
    assert np.abs(model.b_dec.detach().numpy()).max() > 0  # and the decoder bias
    assert sae_lib.fvu(model, X) < 0.9  # it learned something
    trained = sae_lib.fit(X, cfg)
    assert not np.allclose(trained.W_dec.detach().numpy(), W0, atol=1e-3)  # without the option the decoder trains
    if cfg.arch == "topk":
        assert sae_lib.encode_numpy(model, X).getnnz(1).max() <= 4


def test_qvec_without_supersenses_is_nan_and_the_report_still_has_intrusion():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 5))
    groups_only = sp.csr_matrix((rng.random((100, 2)) < 0.2).astype(np.float32))  # WordNet absent
    q = qvec(X, groups_only, ["group.animals", "group.colours"], signed=True)
    assert np.isnan(q["qvec_mean"]) and q["words"] == 0 and np.all(q["aligned"] == -1)
    acts = sp.csr_matrix(np.maximum(X @ rng.normal(size=(5, 12)) - 1.0, 0))
    rep = basis_report(acts, X, groups_only, ["group.animals", "group.colours"])
    assert np.isnan(rep["sae"]["qvec_mean"]) and np.isfinite(rep["raw"]["intrusion"])
