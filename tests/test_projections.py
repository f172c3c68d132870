"""Word maps and neighbours on real GloVe vectors: the k-NN graph against sklearn's brute force, trustworthiness
against sklearn.manifold.trustworthiness, and the UMAP maps (finite, seeded, better than PCA, as trustworthy
as umap-learn's own spectral start)."""

import os

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness as sk_trustworthiness
from sklearn.neighbors import NearestNeighbors

from compute import projections
from compute.config import ProjectionConfig
from compute.embeddings import load_static

N = 1500
CFG = ProjectionConfig(n_neighbors=15, neighbors=10, umap_epochs=60, seed=0)


@pytest.fixture(scope="module")
def glove():
    """The N most frequent GloVe words after the first 100 (mostly function words and punctuation)."""
    return np.ascontiguousarray(load_static("glove-6b-50d").vectors[100 : 100 + N], dtype=np.float32)


@pytest.fixture(scope="module")
def graph(glove):
    return projections.knn_cosine(glove, max(CFG.neighbors, CFG.n_neighbors), CFG.seed)


@pytest.fixture(scope="module")
def maps(glove, graph):
    """{init: {d: map}} for today's per-map spectral start and the shared starts."""
    idx, dist = graph
    return {
        init: projections.umap_maps(glove, idx, dist, CFG, (3, 2), init=init)
        for init in ("spectral", "shared-pca", "shared-spectral")
    }


def test_knn_matches_sklearn_brute_force(glove, graph):
    idx, dist = graph
    k1 = max(CFG.neighbors, CFG.n_neighbors) + 1
    assert idx.shape == dist.shape == (N, k1)
    assert (idx[:, 0] == np.arange(N)).all() and (dist[:, 0] == 0).all()
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=k1, metric="cosine", algorithm="brute").fit(glove).kneighbors()
    # sklearn leaves the query point out: compare the neighbours after self
    np.testing.assert_allclose(dist[:, 1:], ref_dist[:, : k1 - 1], atol=1e-5)
    same = np.mean([len(set(a) & set(b)) / (k1 - 1) for a, b in zip(idx[:, 1:], ref_idx[:, : k1 - 1])])
    assert same > 0.999  # only exact ties may be ordered differently


def test_approximate_knn_beyond_the_exact_limit_is_close(glove, monkeypatch):
    monkeypatch.setattr(projections, "EXACT_KNN_MAX", 100)  # force pynndescent on the same rows
    idx, _ = projections.knn_cosine(glove, 10, seed=0)
    ref = (
        NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute")
        .fit(glove)
        .kneighbors(return_distance=False)
    )
    assert (idx[:, 0] == np.arange(N)).all()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx[:, 1:], ref)])
    assert recall > 0.9


def test_trustworthiness_equals_sklearn(glove):
    X = glove[:600]
    for emb in (PCA(2, random_state=0).fit_transform(X), np.random.default_rng(0).normal(size=(600, 3))):
        ours = projections.trustworthiness(X, emb, k=15, chunk=97)  # a chunk that does not divide n
        ref = sk_trustworthiness(X, emb, n_neighbors=15, metric="cosine")
        assert ours == pytest.approx(ref, abs=1e-6)
    # Euclidean order on unit vectors is cosine order: a "map" that is the unit vectors keeps every neighbour
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    assert projections.trustworthiness(X, U, k=10) == pytest.approx(1.0)
    # a sample is seeded and drawn without replacement
    sub = projections.trustworthiness(glove, PCA(2).fit_transform(glove), k=15, sample=500, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(N, 500, replace=False))
    ref = sk_trustworthiness(glove[rows], PCA(2).fit_transform(glove)[rows], n_neighbors=15, metric="cosine")
    assert sub == pytest.approx(ref, abs=1e-6)
    with pytest.raises(ValueError, match="less than half"):
        projections.trustworthiness(X[:20], X[:20, :2], k=15)


def test_maps_are_finite_and_shaped(glove, maps):
    for init, by_dim in maps.items():
        assert set(by_dim) == {3, 2}
        for d, emb in by_dim.items():
            assert emb.shape == (N, d) and emb.dtype == np.float32, init
            assert np.isfinite(emb).all(), init
            assert emb.std(0).min() > 0.1, init  # not collapsed


def test_maps_are_seeded(glove, graph, maps):
    idx, dist = graph
    again = projections.umap_maps(glove, idx, dist, CFG, (3, 2), init=projections.MAP_INIT)
    for d in (3, 2):
        np.testing.assert_array_equal(again[d], maps[projections.MAP_INIT][d])
    other = projections.umap_maps(glove, idx, dist, CFG.model_copy(update={"seed": 1}), (2,), init=projections.MAP_INIT)
    assert not np.allclose(other[2], maps[projections.MAP_INIT][2])


def test_maps_beat_pca_and_keep_todays_quality(glove, maps):
    """Trustworthiness (k=15) of every map well above the PCA 2-D map of the same words, and the shared
    starts within 0.02 of umap-learn's own per-map spectral start (benchmarks/map_quality.py measures the
    real sizes)."""
    pca = projections.trustworthiness(glove, PCA(2, random_state=0).fit_transform(glove), k=15)
    tw = {
        init: {d: projections.trustworthiness(glove, emb, k=15) for d, emb in by_dim.items()}
        for init, by_dim in maps.items()
    }
    for init, by_dim in tw.items():
        for d, t in by_dim.items():
            assert t > pca + 0.1, (init, d, t, pca)
            assert t >= tw["spectral"][d] - 0.02, (init, d, t, tw["spectral"][d])


def test_shared_start_is_one_layout_for_both_maps(glove, graph, monkeypatch):
    idx, dist = graph
    calls = []
    real = projections.initial_layout

    def counting(X, g, n_components, how="pca", seed=0):
        calls.append((n_components, how))
        return real(X, g, n_components, how, seed)

    monkeypatch.setattr(projections, "initial_layout", counting)
    projections.umap_maps(glove, idx, dist, CFG, (3, 2), init="shared-spectral", n_epochs=10)
    assert calls == [(3, "spectral")]
    # PCA components are nested: the 2-D start is the 3-D start's first two columns, up to its scaling
    start3 = real(glove, None, 3, "pca", 0)
    start2 = real(glove, None, 2, "pca", 0)
    for j in range(2):
        assert abs(np.corrcoef(start3[:, j], start2[:, j])[0, 1]) > 0.9999


def test_projections_output_stores_neighbours_without_self(glove):
    out = projections.projections_output(glove[:300], CFG.model_copy(update={"umap_epochs": 10}))
    assert out["neighbors/indices"].shape == (300, CFG.neighbors)
    assert not (out["neighbors/indices"] == np.arange(300)[:, None]).any()
    assert (np.diff(out["neighbors/cos"], axis=1) <= 1e-6).all()  # nearest first
    assert out["projections/umap3d"].shape == (300, 3) and out["projections/umap2d"].shape == (300, 2)
    assert out["projections/pca2"].shape == (300, 2)


def test_unknown_init_is_one_line_error(glove, graph):
    idx, dist = graph
    with pytest.raises(ValueError, match="init 'tsne'"):
        projections.umap_maps(glove, idx, dist, CFG, (2,), init="shared-tsne")


def test_a_new_process_loads_umaps_compiled_functions_from_disk(tmp_path):
    """umap-learn's numba functions are compiled once and cached on disk: a second process (a run's worker)
    loads them instead of compiling them again."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import numpy as np
        from compute import projections
        from compute.config import ProjectionConfig
        from umap.umap_ import smooth_knn_dist
        X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
        cfg = ProjectionConfig(n_neighbors=10, umap_epochs=10)
        projections.word_maps(X, projections.word_knn(X, cfg), cfg, (2,))
        print(sum(smooth_knn_dist.stats.cache_hits.values()), sum(smooth_knn_dist.stats.cache_misses.values()))
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}  # a fresh cache for this test
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env) for _ in "ab"]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    (hits_1, misses_1), (hits_2, misses_2) = (map(int, r.stdout.split()) for r in runs)
    assert misses_1 >= 1 and hits_2 >= 1 and misses_2 == 0, (hits_1, misses_1, hits_2, misses_2)
