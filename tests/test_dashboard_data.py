"""The dashboard's data layer (dashboard/lib/store.py) against independent brute-force computations,
plus `synthetic_sae_run`: a run with a stand-in SAE section, so dashboard tests and the latency
benchmark do not depend on SAE training (the SAE paths follow docs/store.md)."""
import numpy as np
import pytest
import scipy.sparse as sp

from store import RunWriter


# -- a stand-in SAE --------------------------------------------------------------------------

def synthetic_sae(X: np.ndarray, group: np.ndarray, n_groups: int, d_sae: int, k: int = 8, seed: int = 0) -> dict:
    """A TopK 'SAE' without training: decoder = normalised random word vectors, activations = top-k of
    ReLU(x̂·W_decᵀ). Every per-feature summary the dashboard reads is derived from it, by the
    definitions in docs/store.md, so the views get realistic, consistent data."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    Xn = (X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-8)).astype(np.float32)
    W_dec = Xn[rng.choice(n, d_sae, replace=n < d_sae)] + 0.05 * rng.standard_normal((d_sae, d))
    W_dec = (W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)).astype(np.float32)
    top_NK = np.empty((n, k), np.int32)
    val_NK = np.empty((n, k), np.float32)
    chunk = max(256, (1 << 24) // d_sae)  # rows per block: ~200 MB of pre-activations and indices
    for lo in range(0, n, chunk):
        pre = np.maximum(Xn[lo:lo + chunk] @ W_dec.T, 0)
        top = np.argpartition(-pre, k - 1, axis=1)[:, :k]
        top_NK[lo:lo + chunk], val_NK[lo:lo + chunk] = top, np.take_along_axis(pre, top, axis=1)
    acts = sp.csr_matrix((val_NK.ravel(), top_NK.ravel(), np.arange(0, n * k + 1, k, dtype=np.int64)),
                         shape=(n, d_sae))
    acts.eliminate_zeros()
    acts.sort_indices()
    csc = acts.tocsc()
    density = (np.diff(csc.indptr) / n).astype(np.float32)
    max_act = np.asarray(csc.max(axis=0).todense()).ravel().astype(np.float32)
    top_words = np.full((d_sae, 50), -1, np.int32)
    top_acts = np.zeros((d_sae, 50), np.float32)
    qw = np.full((d_sae, 5, 5), -1, np.int32)
    qa = np.zeros((d_sae, 5, 5), np.float32)
    for f in range(d_sae):
        rows, vals = csc.indices[csc.indptr[f]:csc.indptr[f + 1]], csc.data[csc.indptr[f]:csc.indptr[f + 1]]
        order = np.argsort(-vals)[:50]
        top_words[f, :len(order)], top_acts[f, :len(order)] = rows[order], vals[order]
        if len(vals):
            edges = np.linspace(0, vals.max(), 6)
            for q in range(5):
                inside = np.flatnonzero((vals > edges[q]) & (vals <= edges[q + 1]))[:5]
                qw[f, q, :len(inside)], qa[f, q, :len(inside)] = rows[inside], vals[inside]
    G = max(1, n_groups)
    group_scores = np.zeros((d_sae, G), np.float32)
    totals = np.asarray(acts.sum(axis=0)).ravel()
    for g in range(n_groups):
        members = np.flatnonzero(group == g)
        if len(members):
            group_scores[:, g] = np.asarray(acts[members].sum(axis=0)).ravel() / np.maximum(totals, 1e-8)
    best = np.where(group_scores.max(axis=1) > 0, group_scores.argmax(axis=1), -1).astype(np.int16)
    cos = W_dec @ W_dec.T
    np.fill_diagonal(cos, -np.inf)
    correlated = np.argsort(-cos, axis=1)[:, :10].astype(np.int32)
    dec_nb = np.zeros((d_sae, 20), np.int32)
    dec_cos = np.zeros((d_sae, 20), np.float32)
    step = max(1, min(512, (1 << 25) // max(1, n)))  # at most ~400 MB of similarities and indices
    for lo in range(0, d_sae, step):
        sims = W_dec[lo:lo + step] @ Xn.T
        part = np.argpartition(-sims, 19, axis=1)[:, :20]
        s = np.take_along_axis(sims, part, axis=1)
        o = np.argsort(-s, axis=1)
        dec_nb[lo:lo + step], dec_cos[lo:lo + step] = np.take_along_axis(part, o, 1), np.take_along_axis(s, o, 1)
    centred = W_dec - W_dec.mean(0)
    fmap = (centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T).astype(np.float32)
    steps = np.arange(0, 1000, 50)
    return {
        "sae": {"arch": "topk", "d_sae": d_sae, "k": k, "fvu": 0.2, "l0": float(acts.nnz / n),
                "dead_frac": float((density == 0).mean()), "intrusion": 0.5},
        "sae/W_dec": W_dec, "sae/acts": acts, "sae/density": density, "sae/max_act": max_act,
        "sae/mono_score": group_scores.max(axis=1), "sae/best_group": best, "sae/group_scores": group_scores,
        "sae/top_words": top_words, "sae/top_acts": top_acts, "sae/quantile_words": qw, "sae/quantile_acts": qa,
        "sae/decoder_neighbors": dec_nb, "sae/decoder_neighbor_cos": dec_cos,
        "sae/correlated": correlated, "sae/correlated_cos": np.take_along_axis(cos, correlated, 1).astype(np.float32),
        "sae/feature_map": fmap, "sae/feature_intrusion": rng.random(d_sae).astype(np.float32),
        "sae/history/step": steps, "sae/history/loss": (1 / (1 + steps / 100)).astype(np.float32),
    }


def synthetic_sae_run(src_path, root, run_id: str, d_sae: int = 256, k: int = 8, seed: int = 0) -> str:
    """Copy a precomputed run (without its /sae) into store `root` as `run_id`, adding synthetic_sae."""
    import h5py
    import json
    with h5py.File(src_path, "r") as src:
        a = dict(src.attrs)
        X = src["embeddings"][()]
        group = src["words/group"][()] if "words/group" in src else np.full(len(X), -1)
        n_groups = len(src["groups/names"]) if "groups/names" in src else 0
        with RunWriter(root, run_id, model=a["model"], layer=int(a["layer"]), n_layers=int(a["n_layers"]),
                       source=a["source"], config=json.loads(a["config"]), config_hash=a["config_hash"]) as w:
            for name in src:
                if name != "sae":
                    src.copy(src[name], w.f, name=name)
            w.write_all(synthetic_sae(X, group, n_groups, d_sae, k, seed))
    return run_id


# -- tests of dashboard/lib/store.py -------------------------------------------------------------

@pytest.fixture(scope="module")
def small_view(tmp_path_factory):
    """A 600-word synthetic run (random vectors, three groups) with a 64-feature stand-in SAE."""
    from dashboard.lib import store
    rng = np.random.default_rng(1)
    n, d = 600, 16
    words = [f"w{i:03d}" for i in range(n - 4)] + ["Cat", "cat", "dog", "dogma"]
    X = rng.standard_normal((n, d)).astype(np.float32)
    group = np.full(n, -1, np.int16)
    group[:30], group[30:60], group[-4:] = 0, 1, 2
    root = tmp_path_factory.mktemp("dash-data")
    out = {"words/text": words, "words/zipf": np.linspace(7, 1, n).astype(np.float32), "words/group": group,
           "groups/names": ["g0", "g1", "animals"], "embeddings": X,
           "projections/umap2d": rng.standard_normal((n, 2)).astype(np.float32)}
    out.update(synthetic_sae(X, group, 3, d_sae=64, k=4))
    with RunWriter(root, "small", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="x") as w:
        w.write_all(out)
    store.configure(root)
    yield store.view("small"), out
    store.configure(None)


def test_complete_is_prefix_search_in_frequency_order(small_view):
    v, out = small_view
    words = out["words/text"]
    for prefix in ("w01", "DOG", "ca", "w5", "zz"):
        expected = [w for w in words if w.lower().startswith(prefix.lower())][:10]
        assert v.complete(prefix, limit=10) == expected


def test_find_prefers_exact_then_case_insensitive(small_view):
    v, out = small_view
    assert v.find("cat") == out["words/text"].index("cat")
    assert v.find("Cat") == out["words/text"].index("Cat")
    assert v.find("DOG") == out["words/text"].index("dog")
    assert v.find("nope") is None


def test_rank_features_matches_brute_force(small_view):
    v, out = small_view
    A = out["sae/acts"].toarray()
    rows = np.arange(30)
    ranked = v.rank_features_for(rows, limit=64)
    inside = np.zeros(len(A), bool)
    inside[rows] = True
    for r in ranked[:10]:
        col = A[:, r["feature"]]
        recall = (col[inside] > 0).mean()
        precision = col[inside].sum() / col.sum()
        assert r["recall"] == pytest.approx(recall)
        assert r["precision"] == pytest.approx(precision, rel=1e-5)
        assert r["out_mean"] == pytest.approx(col[~inside].mean(), rel=1e-5)
        assert r["score"] == pytest.approx(2 * recall * precision / (recall + precision), rel=1e-5)
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    fired = set(np.flatnonzero((A[rows] > 0).any(axis=0)))
    assert {r["feature"] for r in ranked} == fired


def test_word_features_and_feature_values(small_view):
    v, out = small_view
    A = out["sae/acts"].toarray()
    i = 17
    f, a = v.word_features(i, limit=10)
    nz = np.flatnonzero(A[i])
    assert set(f) == set(nz)
    assert list(a) == sorted(A[i, nz], reverse=True)
    rows = np.array([0, 5, 17, 300, 599])
    for feat in (int(f[0]), 3, 63):
        np.testing.assert_allclose(v.feature_values(feat, rows), A[rows, feat], rtol=1e-6)


def test_map_rows_capped_and_keep_selection(small_view):
    v, out = small_view
    base = v.map_rows(100)
    assert len(base) == 100
    assert set(np.flatnonzero(out["words/group"] >= 0)) <= set(base)  # every group word is on the map
    must = np.array([599, 400, 401])
    rows = v.map_rows(100, must)
    assert len(rows) == 100 and set(must) <= set(rows) and len(set(rows)) == 100


def test_decoder_loadings(small_view):
    v, out = small_view
    W = out["sae/W_dec"]
    feats, weights = v.decoder_loadings(3, 5)
    assert list(feats) == list(np.argsort(-np.abs(W[:, 3]))[:5])
    np.testing.assert_allclose(weights, W[feats, 3])


def test_layer_family_and_feature_matches_across_layers(tmp_path):
    """Runs of one model and config at layers 1 and 2 (and an unrelated config) form a family; the
    feature page links feature f to next_layer_match[f] one layer up, and back down."""
    import dashboard.app  # noqa: F401  (pages register themselves with the app)
    from dashboard.lib import store
    from dashboard.pages.features import neighbour_layers
    rng = np.random.default_rng(2)
    n, F = 40, 6
    cfg = {"model": "m", "layers": "all", "sae": {"d_sae": F}}
    match = np.array([3, -1, 0, 5, 1, 2], np.int32)
    for layer, extra, conf in ((1, {"sae/next_layer_match": match,
                                    "sae/next_layer_cos": np.linspace(0.5, 1, F).astype(np.float32)}, cfg),
                               (2, {}, cfg), (3, {}, {**cfg, "sae": {"d_sae": 99}})):
        acts = rng.random((n, F)).astype(np.float32)
        acts[acts < 0.7] = 0
        out = {"words/text": [f"w{i}" for i in range(n)], "embeddings": rng.standard_normal((n, 4)).astype(np.float32),
               "sae/acts": sp.csr_matrix(acts), **extra}
        with RunWriter(tmp_path, f"m-L{layer}", model="m", layer=layer, n_layers=4, source="contextual",
                       config=conf, config_hash=f"h{layer}") as w:
            w.write_all(out)
    store.configure(tmp_path)
    try:
        v1, v2 = store.view("m-L1"), store.view("m-L2")
        assert store.family(v1) == {1: "m-L1", 2: "m-L2"}  # layer 3 has another config
        assert store.neighbour_run(v1, +1).run_id == "m-L2" and store.neighbour_run(v1, -1) is None
        up = str(neighbour_layers(v1, 0))
        assert "/features?run=m-L2&feature=3" in up
        assert "feature=" not in str(neighbour_layers(v1, 1))  # -1: no match
        down = str(neighbour_layers(v2, 5))   # features 3 of layer 1 maps to 5
        assert "/features?run=m-L1&feature=3" in down and "feature=0" not in down
    finally:
        store.configure(None)


def test_page_helpers():
    import dashboard.app  # noqa: F401
    from dashboard.pages.concepts import split_words
    from dashboard.lib.stats import dimension_stats
    from dashboard.pages.dimensions import sigma_band
    from dashboard.lib.urls import href, parse, with_params
    from scipy.stats import pearsonr, spearmanr
    assert split_words("cat, dog;horse\n Cat  bird") == ["cat", "dog", "horse", "bird"]
    m = np.array([0.1, 0.2, 5.0, 0.0])
    assert sigma_band(m) == pytest.approx((m.mean() - 3 * m.std(), m.mean() + 3 * m.std()))
    rng = np.random.default_rng(4)
    E = rng.standard_normal((400, 6)).astype(np.float32)
    zipf = (rng.random(400) * 6).astype(np.float32)
    E[:, 2] += zipf  # one dimension that tracks frequency
    zipf[::7] = np.nan
    ds = dimension_stats(E, zipf, k=5, bins=10)
    ok = np.isfinite(zipf)
    for j in range(6):
        assert list(ds["top"][j]) == list(np.argsort(-E[:, j])[:5])
        assert list(ds["bottom"][j]) == list(np.argsort(E[:, j])[:5])
        assert ds["spearman"][j] == pytest.approx(spearmanr(E[ok, j], zipf[ok])[0], abs=1e-9)
        assert ds["pearson"][j] == pytest.approx(pearsonr(E[ok, j], zipf[ok])[0], abs=1e-6)
        counts, edges = ds["hist"][j]
        np.testing.assert_array_equal(counts, np.histogram(E[:, j], bins=10)[0])
    assert ds["spearman"][2] > 0.5 and ds["spearman_n"] == ok.sum()
    small = dimension_stats(E, zipf, k=5, bins=10, max_ranked=100, seed=3)  # Spearman on a seeded sample
    rows = np.flatnonzero(ok)[np.sort(np.random.default_rng(3).choice(ok.sum(), 100, replace=False))]
    assert small["spearman_n"] == 100
    assert small["spearman"][2] == pytest.approx(spearmanr(E[rows, 2], zipf[rows])[0], abs=1e-9)
    assert small["pearson"][2] == pytest.approx(ds["pearson"][2])
    url = href("/words", run="r 1", word="naïve")
    assert parse(url.split("?")[1]) == {"run": "r 1", "word": "naïve"}
    assert with_params("/features", "?run=a&feature=3", feature=None, dim=2) == "/features?run=a&dim=2"


def test_features_table_filter_sort_and_pages():
    import dashboard.app  # noqa: F401
    import pandas as pd
    from dashboard.pages.features import split_filter_part, table_page
    assert split_filter_part("{density} s> 0.01") == ("density", ">", 0.01)
    assert split_filter_part('{best_group} scontains "anim"') == ("best_group", "contains", "anim")
    assert split_filter_part("{mono_score} ge 0.5") == ("mono_score", ">=", 0.5)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"feature": np.arange(100), "density": rng.random(100),
                          "best_group": rng.choice(["animals", "colours", ""], 100)})
    rows, pages = table_page(frame, 1, 10, [{"column_id": "density", "direction": "desc"}],
                             '{density} s> 0.3 && {best_group} scontains "anim"')
    want = frame[(frame.density > 0.3) & (frame.best_group == "animals")].sort_values("density", ascending=False)
    assert pages == -(-len(want) // 10)
    assert [r["feature"] for r in rows] == list(want.feature.iloc[10:20])
    assert all(r["id"] == r["feature"] for r in rows)


def test_run_picker_keeps_the_page_and_drops_the_feature(small_view):
    import dashboard.app  # noqa: F401
    from dash.exceptions import PreventUpdate
    from dashboard.components.navbar import pick_run, sync_navbar
    from dashboard.lib import store
    v, _ = small_view
    store.configure(v.run.path.parent.parent)  # other tests point the store elsewhere
    assert pick_run("other", "/words", "?run=small&word=cat&feature=3") == "/words?run=other&word=cat"
    assert pick_run("other", "/", "?run=small") == "/?run=other"
    with pytest.raises(PreventUpdate):  # the URL already shows this run: no new history entry
        pick_run("small", "/words", "?run=small&word=cat")
    options, value, *links = sync_navbar("?run=small&word=cat", "/words")
    assert value == "small" and [o["value"] for o in options] == ["small"]
    assert all(link.endswith("?run=small") for link in links)
