"""Isotropy measures against independent code written here, and the enhancement on planted data."""

import decimal

import h5py
import numpy as np
import pytest
from sklearn.decomposition import PCA

from compute import geometry as g
from compute.config import GeometryConfig


def anisotropic(n=600, d=16, seed=0, offset=3.0, strong=(0, 1), scale=6.0, mix=None):
    """Gaussian cloud with a common offset and a few dominant directions (shared via `mix`)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:, list(strong)] *= scale
    if mix is not None:
        x = x @ mix
    return (x + offset).astype(np.float32)


# --- i_cos -------------------------------------------------------------------------------------


def brute_mean_cosine(x):
    n = len(x)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
    return total / (n * (n - 1))


@pytest.mark.parametrize("offset", [0.0, 0.7, -2.0])
def test_i_cos_equals_double_loop(offset):
    x = np.random.default_rng(1).normal(size=(40, 7)) + offset
    assert g.i_cos(x) == pytest.approx(brute_mean_cosine(x), abs=1e-12)


def test_i_cos_leaves_out_zero_rows():
    x = np.random.default_rng(2).normal(size=(20, 5)) + 0.5
    with_zeros = np.vstack([x, np.zeros((3, 5))])
    assert g.i_cos(with_zeros) == pytest.approx(brute_mean_cosine(x), abs=1e-12)


def test_i_cos_rejects_bad_shape():
    with pytest.raises(ValueError, match="X"):
        g.i_cos(np.ones(5))


def test_i_cos_sampled_is_mean_over_distinct_pairs_and_sums_contributions():
    x = np.random.default_rng(3).normal(size=(50, 6)) + 1.0
    value, cc = g.i_cos_sampled(x, pairs=400, seed=7)
    i, j = g.sample_pairs(50, 400, 7)
    assert np.all(i != j)
    direct = np.mean([x[a] @ x[b] / np.linalg.norm(x[a]) / np.linalg.norm(x[b]) for a, b in zip(i, j)])
    assert value == pytest.approx(direct, abs=1e-12)
    assert cc.shape == (6,) and cc.sum() == pytest.approx(value, abs=1e-12)
    per_dim = np.mean([x[a] * x[b] / np.linalg.norm(x[a]) / np.linalg.norm(x[b]) for a, b in zip(i, j)], axis=0)
    np.testing.assert_allclose(cc, per_dim, atol=1e-12)
    # seeded: same seed same value; the sample estimates the exact mean
    assert g.i_cos_sampled(x, 400, 7)[0] == value
    assert g.i_cos_sampled(x, 20000, 1)[0] == pytest.approx(g.i_cos(x), abs=0.02)


# --- i_pc --------------------------------------------------------------------------------------


def direct_i_pc(w):
    _, _, vt = np.linalg.svd(w, full_matrices=False)  # right singular vectors = eigvecs of W^T W
    us = np.concatenate([vt, -vt])
    f = [np.exp(w @ u).sum() for u in us]
    return min(f) / max(f)


def test_i_pc_equals_direct_float64():
    rng = np.random.default_rng(4)
    for offset in (0.0, 0.5, 2.0):
        w = rng.normal(size=(80, 6)) * np.array([3, 1, 1, 0.5, 0.5, 0.2]) + offset
        assert g.i_pc(w) == pytest.approx(direct_i_pc(w), rel=1e-9)


def test_i_pc_large_norms_do_not_overflow():
    rng = np.random.default_rng(5)
    # symmetric clouds with norms ~800: exp(800) overflows float64, the ratio ~exp(-10) does not
    w = np.concatenate([np.c_[[800.0, -800.0], [0.0, 0.0]], np.c_[[0.0, 0.0], [790.0, -790.0]]])
    w = np.repeat(w, 5, axis=0) + rng.normal(scale=0.01, size=(20, 2))
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(w).sum())
    _, _, vt = np.linalg.svd(w)
    decimal.getcontext().prec = 50  # exact-enough big-number arithmetic, no log-sum-exp
    f = [sum(decimal.Decimal(float(v)).exp() for v in w @ u) for u in np.concatenate([vt, -vt])]
    reference = float(min(f) / max(f))
    assert 1e-6 < reference < 1e-3
    assert g.i_pc(w) == pytest.approx(reference, rel=1e-8)


def test_i_pc_log10_is_finite_where_i_pc_underflows():
    rng = np.random.default_rng(6)
    # a one-sided cloud with norms ~1000 (as in transformer layers with a rogue dimension): I_PC ~ 10^-860
    w = np.c_[np.full(12, 1000.0), np.zeros(12)] + rng.normal(scale=0.5, size=(12, 2))
    _, _, vt = np.linalg.svd(w)
    decimal.getcontext().prec = 50
    f = [sum(decimal.Decimal(float(v)).exp() for v in w @ u) for u in np.concatenate([vt, -vt])]
    reference = float((min(f) / max(f)).log10())
    assert reference < -800 and g.i_pc(w) == 0.0  # below float64's range
    assert g.i_pc_log10(w) == pytest.approx(reference, rel=1e-9)
    out = g.analyse(w, GeometryConfig(pairs=10))["geometry"]
    assert out["i_pc_log10"] == pytest.approx(reference, rel=1e-9) and out["i_pc"] == 0.0


# --- IsoScore ----------------------------------------------------------------------------------


def paper_isoscore(x):
    """Rudman et al. 2022, Algorithm 1, written out from the paper."""
    n = x.shape[1]
    x_pca = PCA(n_components=n).fit_transform(x)
    var = np.var(x_pca, axis=0, ddof=1)
    var_hat = np.sqrt(n) * var / np.linalg.norm(var)
    delta = np.linalg.norm(var_hat - np.ones(n)) / np.sqrt(2 * (n - np.sqrt(n)))
    phi = (n - delta**2 * (n - np.sqrt(n))) ** 2 / n**2
    return (n * phi - 1) / (n - 1)


def test_isoscore_isotropic_gaussian_is_one_and_rank_one_is_zero():
    rng = np.random.default_rng(6)
    assert g.isoscore(rng.normal(size=(5000, 20))) == pytest.approx(1.0, abs=0.05)
    rank1 = np.outer(rng.normal(size=3000), rng.normal(size=20))
    assert g.isoscore(rank1) < 0.02


def test_isoscore_matches_paper_algorithm():
    rng = np.random.default_rng(7)
    for scales in ([1, 1, 1, 1], [5, 1, 1, 0.1], [3, 2, 1, 0.5, 0.2, 0.1]):
        x = rng.normal(size=(2000, len(scales))) * scales @ np.linalg.qr(rng.normal(size=(len(scales),) * 2))[0]
        assert g.isoscore(x) == pytest.approx(paper_isoscore(x), abs=1e-9)


def test_isoscore_matches_reference_package():
    pkg = pytest.importorskip("IsoScore.IsoScore")
    rng = np.random.default_rng(8)
    x = rng.normal(size=(1500, 8)) * np.array([4, 3, 2, 1, 1, 1, 0.5, 0.1])
    assert g.isoscore(x) == pytest.approx(float(pkg.IsoScore(x)), abs=1e-6)  # the package mixes in float32


# --- outlier dimensions, analyse ---------------------------------------------------------------


def test_outlier_dims_finds_planted_dimensions():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2000, 64))
    x[:, [5, 40]] += np.array([12.0, -9.0])
    m = x.mean(axis=0)
    found = g.outlier_dims(m, sigma=3.0)
    expected = [i for i in range(64) if abs(m[i] - np.mean(m)) > 3 * np.std(m)]
    assert found.tolist() == expected == [5, 40]
    assert g.outlier_dims(np.zeros(10)).tolist() == []


@pytest.fixture(scope="module")
def analysed():
    x = anisotropic(n=1500, d=12, seed=10)
    x[:, 3] += 25.0  # a rogue dimension
    pc1 = PCA(n_components=1).fit_transform(x)[:, 0]
    zipf = pc1 + np.random.default_rng(11).normal(scale=0.1 * pc1.std(), size=len(pc1))
    zipf[::50] = np.nan
    return x, zipf, g.analyse(x, GeometryConfig(pairs=2000, seed=3), zipf=zipf)


def test_analyse_output(analysed):
    x, zipf, out = analysed
    attrs = out["geometry"]
    assert attrs["i_cos"] == pytest.approx(brute_mean_cosine(x[:60]), abs=0.05)
    assert attrs["i_cos"] == pytest.approx(g.i_cos(x)) and attrs["i_pc"] == pytest.approx(g.i_pc(x))
    cc = out["geometry/cos_contrib"]
    assert cc.dtype == np.float32 and cc.shape == (12,)
    assert attrs["top3_dims"][0] == 3 and attrs["top3_dims"] == np.argsort(-cc)[:3].tolist()
    assert attrs["top3_share"] == pytest.approx(cc[attrs["top3_dims"]].sum() / attrs["i_cos_sampled"], rel=1e-5)
    np.testing.assert_allclose(out["geometry/mean"], x.mean(axis=0), rtol=1e-5)
    assert out["geometry/outlier_dims"].tolist() == [3]
    coords = out["geometry/pca2"]
    ref = PCA(n_components=2).fit_transform(x.astype(np.float64))
    for k in range(2):  # same axes up to sign
        assert abs(np.corrcoef(coords[:, k], ref[:, k])[0, 1]) > 0.9999
    # zipf was planted along PC1: |rho| ~ 1 on PC1, small on PC2
    assert abs(attrs["freq_pc1_spearman"]) > 0.95 and abs(attrs["freq_pc2_spearman"]) < 0.2


def test_analyse_writes_to_store(analysed, tmp_path):
    from store.writer import RunWriter

    _, _, out = analysed
    with RunWriter(tmp_path, "r1", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="h") as w:
        w.write_all(out)
    path = next(tmp_path.rglob("r1.h5"))
    with h5py.File(path, "r") as f:
        assert f["geometry"].attrs["i_pc"] == pytest.approx(out["geometry"]["i_pc"])
        assert f["geometry/pca2"].shape == (1500, 2)


# --- enhancement -------------------------------------------------------------------------------


def test_enhancement_raises_i_pc_and_nulls_directions():
    x = anisotropic(n=1200, d=16, seed=12)
    enh = g.fit_enhancement(x, clusters=4, pcs_removed=2, seed=0)
    assert enh.centroids.shape == (4, 16) and enh.directions.shape == (4, 2, 16)
    x_enh = enh.apply(x)
    assert g.i_pc(x_enh) > 0.5 > 10 * g.i_pc(x)
    assert abs(g.i_cos(x_enh)) < 0.05 < g.i_cos(x)
    # each row: its cluster's mean removed and orthogonal to its cluster's directions
    labels = np.argmin(((x[:, None, :] - enh.centroids[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(enh.assign(x), labels)
    for k in range(4):
        rows = x_enh[labels == k]
        np.testing.assert_allclose(rows @ enh.directions[k].T, 0, atol=1e-3)
        d = enh.directions[k].astype(np.float64)
        np.testing.assert_allclose(d @ d.T, np.eye(2), atol=1e-5)
        c = x[labels == k].astype(np.float64) - enh.means[k]
        np.testing.assert_allclose(rows, c - c @ d.T @ d, atol=1e-3)


def test_enhancement_small_clusters():
    x = np.random.default_rng(13).normal(size=(9, 6)).astype(np.float32)
    enh = g.fit_enhancement(x, clusters=4, pcs_removed=12, seed=0)
    assert enh.directions.shape == (4, 6, 6)
    assert np.all(np.isfinite(enh.apply(x)))
    enh = g.fit_enhancement(x[:3], clusters=7, pcs_removed=2, seed=0)  # more clusters than rows
    assert len(enh.centroids) == 3


def test_enhancement_output():
    x = anisotropic(n=500, d=8, seed=14)
    enh = g.fit_enhancement(x, clusters=3, pcs_removed=2, seed=0)
    out = g.enhancement_output(x, enh, GeometryConfig())
    assert out["enhanced"]["i_pc"] == pytest.approx(g.i_pc(enh.apply(x)), rel=1e-6)
    assert out["enhanced/directions"].shape == (3, 2, 8) and out["enhanced/cluster"].shape == (500,)


def test_zero_shot_removes_shared_anisotropy():
    rng = np.random.default_rng(15)
    d = 16
    mix = np.linalg.qr(rng.normal(size=(d, d)))[0]  # the shared dominant directions
    lang_a = anisotropic(n=1500, d=d, seed=16, mix=mix, offset=2.0)
    lang_b = anisotropic(n=1000, d=d, seed=17, mix=mix, offset=2.0)
    enh = g.fit_enhancement(lang_a, clusters=1, pcs_removed=2, seed=0)
    before, after = g.i_pc(lang_b), g.i_pc(enh.apply(lang_b))
    assert before < 0.01 and after > 0.5
    # the fitted directions span the planted ones
    planted = mix[[0, 1]]
    np.testing.assert_allclose(np.linalg.svd(enh.directions[0] @ planted.T)[1], 1, atol=0.02)

    x = np.vstack([lang_a, lang_b])
    langs = np.array(["en"] * len(lang_a) + ["sw"] * len(lang_b))
    out = g.per_language(x, langs, GeometryConfig(clusters=1, pcs_removed=2), source_lang="en")
    sw = out["languages/sw"]
    assert sw["i_pc"] == pytest.approx(before) and sw["i_pc_zero_shot"] == pytest.approx(after, rel=1e-4)
    assert sw["i_pc_enhanced"] > 0.5 and sw["n"] == 1000
    assert out["languages"]["languages"] == ["en", "sw"] and len(out["languages"]["table"]) == 2
    assert g.per_language(lang_a, np.array(["en"] * len(lang_a)), GeometryConfig()) == {}


def test_pcs_removed_auto_scales_with_the_dimension():
    auto = GeometryConfig()
    assert auto.pcs_removed == "auto"
    # clip(round(d / 128), 1, 12), halves rounded up: the papers' 12 at 768-d would be 6 here
    assert [auto.removed(d) for d in (2, 50, 64, 192, 384, 768, 1536, 4096)] == [1, 1, 1, 2, 3, 6, 12, 12]
    assert GeometryConfig(pcs_removed=12).removed(50) == 12 and GeometryConfig(pcs_removed=0).removed(768) == 0
    from compute.config import PlanError, parse_run

    with pytest.raises(PlanError, match="pcs_removed"):
        parse_run({"model": "glove-6b-50d", "geometry": {"pcs_removed": "many"}})
    with pytest.raises(PlanError, match="pcs_removed"):
        parse_run({"model": "glove-6b-50d", "geometry": {"pcs_removed": -1}})
