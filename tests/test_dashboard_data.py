"""The dashboard's data layer (dashboard/lib/) against independent brute-force computations."""

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import synthetic_sae

from store import RunWriter

# -- tests of dashboard/lib/ ----------------------------------------------------------------------


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
    out = {
        "words/text": words,
        "words/zipf": np.linspace(7, 1, n).astype(np.float32),
        "words/group": group,
        "groups/names": ["g0", "g1", "animals"],
        "embeddings": X,
        "projections/umap2d": rng.standard_normal((n, 2)).astype(np.float32),
    }
    out.update(synthetic_sae(X, group, 3, d_sae=64, k=4, words=words, group_names=out["groups/names"]))
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
    from dashboard.lib.concepts import rank_features_for

    v, out = small_view
    A = out["sae/acts"].toarray()
    rows = np.arange(30)
    ranked = rank_features_for(v, rows, limit=64)
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
    from dashboard.lib.stats import decoder_loadings

    v, out = small_view
    W = out["sae/W_dec"]
    feats, weights = decoder_loadings(v.run.array("sae/W_dec"), 3, 5)
    assert list(feats) == list(np.argsort(-np.abs(W[:, 3]))[:5])
    np.testing.assert_allclose(weights, W[feats, 3])


def test_layer_family_and_feature_matches_across_layers(tmp_path):
    """Runs of one model and config at layers 1 and 2 (and an unrelated config) form a family; the
    feature page links feature f to next_layer_match[f] one layer up, and back down."""
    import dashboard.app  # noqa: F401  (pages register themselves with the app)
    from dashboard.lib import store
    from dashboard.lib.runs import family, neighbour_run
    from dashboard.pages.features import neighbour_layers

    rng = np.random.default_rng(2)
    n, F = 40, 6
    cfg = {"model": "m", "layers": "all", "sae": {"d_sae": F}}
    match = np.array([3, -1, 0, 5, 1, 2], np.int32)
    for layer, extra, conf in (
        (1, {"sae/next_layer_match": match, "sae/next_layer_cos": np.linspace(0.5, 1, F).astype(np.float32)}, cfg),
        (2, {}, cfg),
        (3, {}, {**cfg, "sae": {"d_sae": 99}}),
    ):
        acts = rng.random((n, F)).astype(np.float32)
        acts[acts < 0.7] = 0
        out = {
            "words/text": [f"w{i}" for i in range(n)],
            "embeddings": rng.standard_normal((n, 4)).astype(np.float32),
            "sae/acts": sp.csr_matrix(acts),
            **extra,
        }
        with RunWriter(
            tmp_path,
            f"m-L{layer}",
            model="m",
            layer=layer,
            n_layers=4,
            source="contextual",
            config=conf,
            config_hash=f"h{layer}",
        ) as w:
            w.write_all(out)
    store.configure(tmp_path)
    try:
        v1, v2 = store.view("m-L1"), store.view("m-L2")
        assert family(v1) == {1: "m-L1", 2: "m-L2"}  # layer 3 has another config
        assert neighbour_run(v1, +1).run_id == "m-L2" and neighbour_run(v1, -1) is None
        up = str(neighbour_layers(v1, 0))
        assert "/features?run=m-L2&feature=3" in up
        assert "feature=" not in str(neighbour_layers(v1, 1))  # -1: no match
        down = str(neighbour_layers(v2, 5))  # features 3 of layer 1 maps to 5
        assert "/features?run=m-L1&feature=3" in down and "feature=0" not in down
    finally:
        store.configure(None)


def test_family_attribute_groups_runs_and_prev_layer_matches_link_down(tmp_path):
    """Runs that carry `family` are grouped by it, not by their config: layers 1 and 2 of family A, and
    layer 3 of family B with the same config. A stored prev_layer_match links a feature one layer down."""
    import dashboard.app  # noqa: F401
    from dashboard.lib import store
    from dashboard.lib.runs import family, neighbour_run, run_options
    from dashboard.pages.features import neighbour_layers

    rng = np.random.default_rng(3)
    n, F = 30, 5
    prev = np.array([4, 0, -1, 2, 1], np.int32)
    for layer, fam, extra in (
        (1, "A", {}),
        (2, "A", {"sae/prev_layer_match": prev, "sae/prev_layer_cos": np.full(F, 0.75, np.float32)}),
        (3, "B", {}),
    ):
        acts = rng.random((n, F)).astype(np.float32)
        acts[acts < 0.6] = 0
        out = {
            "words/text": [f"w{i}" for i in range(n)],
            "embeddings": rng.standard_normal((n, 4)).astype(np.float32),
            "sae/acts": sp.csr_matrix(acts),
            **extra,
        }
        with RunWriter(
            tmp_path,
            f"r-L{layer}",
            model="m",
            layer=layer,
            n_layers=4,
            source="contextual",
            config={"model": "m", "name": f"plan-{fam}"},
            config_hash=f"h{layer}",
            family=fam,
        ) as w:
            w.write_all(out)
    store.configure(tmp_path)
    try:
        v2, v3 = store.view("r-L2"), store.view("r-L3")
        assert family(v2) == {1: "r-L1", 2: "r-L2"} and family(v3) == {3: "r-L3"}
        assert neighbour_run(v3, -1) is None
        down = str(neighbour_layers(v2, 0))
        assert "layer 1: " in down and "/features?run=r-L1&feature=4" in down and "(cos 0.75)" in down
        assert "feature=" not in str(neighbour_layers(v2, 2))  # -1: no match
        labels = {o["value"]: o["label"] for o in run_options()}
        assert labels["r-L1"].startswith("plan-A (m) · L1") and labels["r-L3"].startswith("plan-B (m) · L3")
        assert [o["value"] for o in run_options()] == ["r-L1", "r-L2", "r-L3"]  # a family's layers together
    finally:
        store.configure(None)


def test_page_helpers():
    from scipy.stats import pearsonr, spearmanr

    import dashboard.app  # noqa: F401
    from dashboard.lib.stats import dimension_stats, sigma_band
    from dashboard.lib.urls import href, parse, with_params
    from dashboard.pages.concepts import split_words

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
    import pandas as pd

    import dashboard.app  # noqa: F401
    from dashboard.lib.table_query import split_filter_part, table_page

    assert split_filter_part("{density} s> 0.01") == ("density", ">", 0.01)
    assert split_filter_part('{best_group} scontains "anim"') == ("best_group", "contains", "anim")
    assert split_filter_part("{mono_score} ge 0.5") == ("mono_score", ">=", 0.5)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "feature": np.arange(100),
            "density": rng.random(100),
            "best_group": rng.choice(["animals", "colours", ""], 100),
        }
    )
    rows, pages = table_page(
        frame,
        1,
        10,
        [{"column_id": "density", "direction": "desc"}],
        '{density} s> 0.3 && {best_group} scontains "anim"',
    )
    want = frame[(frame.density > 0.3) & (frame.best_group == "animals")].sort_values("density", ascending=False)
    assert pages == -(-len(want) // 10)
    assert [r["feature"] for r in rows] == list(want.feature.iloc[10:20])
    assert all(r["id"] == r["feature"] for r in rows)


def test_run_picker_keeps_the_page_and_drops_the_feature(small_view):
    from dash.exceptions import PreventUpdate

    import dashboard.app  # noqa: F401
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


# -- labels and the concept score (issue 12) --------------------------------------------------------


def test_feature_labels_and_the_features_table_read_the_store(small_view):
    from dashboard.lib.features import feature_frame, features_on_word
    from dashboard.lib.labels import feature_label

    v, out = small_view
    assert [feature_label(v, f) for f in range(64)] == out["sae/feature_label"]
    frame = feature_frame(v)
    assert list(frame["label"]) == out["sae/feature_label"]
    np.testing.assert_allclose(frame["mono_score"], np.round(out["sae/concept_f1"].max(1), 4))
    names = out["labels/names"]
    assert list(frame["best_label"]) == [names[b] if b >= 0 else "" for b in out["sae/best_label"]]
    # "features that fire on dog": exactly the features active on it, strongest first
    row = out["words/text"].index("dog")
    A = out["sae/acts"].toarray()
    hits = features_on_word(v, frame, row)
    assert set(hits["feature"]) == set(np.flatnonzero(A[row]))
    np.testing.assert_allclose(hits["on_word"], np.round(np.sort(A[row][A[row] > 0])[::-1], 4))


def test_concepts_page_shows_the_stored_concept_score(small_view):
    """A stored label's ranking is the stored F1 column itself (the same number as the Features table),
    and the live formula for typed words gives the same values on the same words."""
    import dashboard.app  # noqa: F401  (pages register themselves with the app)
    from dashboard.lib.concepts import rank_features_for
    from dashboard.lib.labels import label_rows, stored_ranking
    from dashboard.pages.concepts import ranking_table, stored_label

    v, out = small_view
    c = stored_label(v, "g1")
    assert out["labels/names"][c] == "group.g1" and stored_label(v, "nope") is None
    rows = label_rows(v, c)
    np.testing.assert_array_equal(rows, np.flatnonzero(out["words/group"] == 1))
    f1 = out["sae/concept_f1"][:, c]
    ranked = stored_ranking(v, c, limit=64)
    assert [r["feature"] for r in ranked] == [f for f in np.argsort(-f1, kind="stable") if f1[f] > 0]
    assert [r["score"] for r in ranked] == [float(f1[r["feature"]]) for r in ranked]  # exactly the stored value
    live = {r["feature"]: r["score"] for r in rank_features_for(v, rows, limit=64)}
    for r in ranked:
        assert live[r["feature"]] == pytest.approx(r["score"], rel=1e-5)
    table = ranking_table(v, ranked, stored=True).children[0]
    assert [d["score"] for d in table.data] == [r["score"] for r in ranked]
    first = ranked[0]["feature"]
    assert table.data[0]["feature"].startswith(f"[#{first} {out['sae/feature_label'][first]}](")


def test_word_supersenses_and_the_enhancement_note(tmp_path):
    from dashboard.lib import store
    from dashboard.lib.labels import word_supersenses
    from dashboard.lib.layer_profile import enhancement_note

    names = ["noun.animal", "noun.food", "group.animals"]
    weights = sp.csr_matrix(np.array([[0.7, 0.3, 1], [0, 0.1, 0], [0, 0, 0]], np.float32))
    out = {
        "words/text": ["duck", "pasta", "the"],
        "embeddings": np.eye(3, dtype=np.float32),
        "labels/names": names,
        "labels/weights": weights,
        "labels/member": sp.csr_matrix((weights.toarray() >= 0.25).astype(np.float32)),
        "similarity": {"wordsim353_spearman": 0.5, "wordsim353_spearman_enhanced": 0.38},
    }
    with RunWriter(tmp_path, "s", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="x") as w:
        w.write_all(out)
    store.configure(tmp_path)
    try:
        v = store.view("s")
        sense = word_supersenses(v, 0)
        assert [n for n, _ in sense] == ["noun.animal", "noun.food"]  # groups are not supersenses
        assert [s for _, s in sense] == pytest.approx([0.7, 0.3])
        assert word_supersenses(v, 1) == [] and word_supersenses(v, 2) == []  # 0.1 is below min_share
        note = enhancement_note(v)
        assert "WordSim353" in note and "0.50 → 0.38" in note
    finally:
        store.configure(None)


def test_log10_i_pc_falls_back_for_old_runs():
    import pandas as pd

    from dashboard.lib.layer_profile import measure
    from dashboard.lib.runs import with_log_ipc

    assert measure({"i_pc_log10": -412.5, "i_pc": 0.0}, "i_pc_log10") == -412.5
    assert measure({"i_pc": 0.01}, "i_pc_log10") == pytest.approx(-2)
    assert np.isnan(measure({"i_pc": 0.0}, "i_pc_log10"))  # underflowed before log10 was stored
    t = with_log_ipc(pd.DataFrame({"i_pc": [0.1, 0.0, 0.0], "i_pc_log10": [None, -500.0, None]}))
    assert t["i_pc_log10"].iloc[0] == pytest.approx(-1) and t["i_pc_log10"].iloc[1] == -500
    assert np.isnan(t["i_pc_log10"].iloc[2])


def test_quality_card_warns_plainly_when_the_sae_does_not_beat_its_random_decoder():
    import dashboard.app  # noqa: F401
    from dashboard.pages.features import baseline_table

    base = {"qvec_raw": 0.15, "qvec_rotated": 0.16, "intrusion_raw": 1.2, "intrusion_rotated": 1.25}
    better = {**base, "qvec": 0.08, "qvec_random_decoder": 0.07, "intrusion": 1.4, "intrusion_random_decoder": 1.3}
    worse = {**better, "qvec": 0.06}
    text = str(baseline_table(better))
    assert "features-baseline-warning" not in text and "beats its frozen-random-decoder baseline" in text
    text = str(baseline_table(worse))
    assert "features-baseline-warning" in text and "does not beat" in text and "QVEC (0.060 vs 0.070)" in text
    assert "DistRatio (" not in text  # it does beat it on DistRatio
    for name in ("QVEC (Tsvetkov", "DistRatio word intrusion", "Frozen random decoder"):
        assert name in text  # a one-line definition of each
    assert "sae.random_baseline" in str(baseline_table(base))  # no baseline stored: said so
