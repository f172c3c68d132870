"""The word map as layers (figures.py, components/wordmap.py), its URL state, search, close spellings and
selections, without a browser: every layer's data against an independent computation on the run's
arrays, and the patches a click or a colouring sends (never the base points)."""

import difflib
import json
import re

import numpy as np
import pytest
from dash import Patch
from dash.exceptions import PreventUpdate
from helpers import synthetic_sae
from plotly.io.json import to_json_plotly
from scipy.spatial import Delaunay

from dashboard import figures as F
from store import RunWriter

RUN = "maprun"
VOCAB_EXTRA = ["elephant", "elegant", "element", "cat", "cats", "category", "Catalan", "dog", "dogma"]


@pytest.fixture(scope="module")
def mapview(tmp_path_factory):
    """A 1,500-word synthetic run: 3-D and 2-D maps, stored neighbours, clusters, groups, a stand-in SAE."""
    from dashboard.lib import store

    rng = np.random.default_rng(3)
    n, d = 1500, 24
    words = [f"w{i:04d}" for i in range(n - len(VOCAB_EXTRA))] + VOCAB_EXTRA
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[rng.random((n, d)) < 0.05] = 0.0  # some exact zeros, drawn grey when colouring by a dimension
    group = np.full(n, -1, np.int16)
    group[:40], group[40:70], group[-9:] = 0, 1, 2
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = Xn @ Xn.T
    np.fill_diagonal(sims, -np.inf)
    nb = np.argsort(-sims, axis=1)[:, :20].astype(np.int32)
    out = {
        "words/text": words,
        "words/zipf": np.linspace(7, 1, n).astype(np.float32),
        "words/group": group,
        "groups/names": ["alpha", "beta", "animals"],
        "embeddings": X,
        "projections/umap3d": rng.standard_normal((n, 3)).astype(np.float32),
        "projections/umap2d": rng.standard_normal((n, 2)).astype(np.float32),
        "neighbors/indices": nb,
        "neighbors/cos": np.take_along_axis(sims, nb, 1).astype(np.float32),
        "enhanced/cluster": (np.arange(n) % 5).astype(np.int16),
    }
    out.update(synthetic_sae(X, group, 3, d_sae=64, k=4))
    from compute.features import quantile_groups

    out["sae/quantile_words"], out["sae/quantile_acts"] = quantile_groups(out["sae/acts"])  # as the pipeline
    root = tmp_path_factory.mktemp("map-store")
    with RunWriter(root, RUN, model="m", layer=0, n_layers=1, source="static", config={}, config_hash="x") as w:
        w.write_all(out)
    store.configure(root, max_points=600)  # 3-D draws 600 of 1,500 words, 2-D all (10 x 600)
    yield store.view(RUN), out
    store.configure(None)


def _state(v, **query):
    from dashboard.lib.mapstate import MapState

    return MapState.of({k: str(x) for k, x in query.items()}).resolve(v)


def _layer(fig, name, three_d):
    return fig["data"][F.map_layers(three_d)[name]]


def _rows(trace):
    return np.asarray(trace["customdata"], np.int64)


def _ops(patch: Patch) -> dict:
    """{location tuple: value} of a Patch's assignments."""
    return {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}


# -- figures -------------------------------------------------------------------------------------


def test_value_codes_spread_values_over_1_to_255_and_grey_the_missing():
    values = np.array([np.nan, -2.0, 0.0, 1.2, 2.0], np.float32)
    codes, (lo, hi) = F.value_codes(values, symmetric=True, zero_is_none=True)
    assert (lo, hi) == (-2.0, 2.0)
    np.testing.assert_array_equal(codes, [0, 1, 0, 204, 255])  # 1 + round((v + 2) / 4 * 254)
    codes, (lo, hi) = F.value_codes(values)
    assert (lo, hi) == (-2.0, 2.0) and codes[2] == 128 and codes[0] == F.CODE_NONE


def test_density_layer_is_the_smoothed_histogram_of_the_points():
    from scipy.ndimage import gaussian_filter

    pts = np.concatenate([RNG.normal(0, 0.3, (3000, 2)), RNG.normal(3, 0.3, (1000, 2))])
    layer = F.density_layer(pts, visible=True, bins=32)
    z = F.decode(layer["z"]).reshape(32, 32)
    h, xe, ye = np.histogram2d(pts[:, 0], pts[:, 1], bins=32)
    np.testing.assert_allclose(z, gaussian_filter(h, 1.2).T, rtol=1e-5, atol=1e-5)
    peak = np.unravel_index(np.argmax(z), z.shape)  # (y bin, x bin): the bigger cluster, near (0, 0)
    assert abs(F.decode(layer["x"])[peak[1]]) < 0.5 and abs(F.decode(layer["y"])[peak[0]]) < 0.5
    assert layer["visible"] is True and layer["hoverinfo"] == "skip"


def test_links_layer_draws_one_segment_per_neighbour():
    others = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = F.links_layer((0.5, 0.5), others)
    assert t["x"] == [0.5, 1.0, None, 0.5, 3.0, None] and t["y"] == [0.5, 2.0, None, 0.5, 4.0, None]


def test_vector_strip_one_cell_per_dimension():
    vec = RNG.standard_normal(384).astype(np.float32)
    fig = F.vector_strip(vec, outliers=[3, 100])
    np.testing.assert_array_equal(F.decode(fig["data"][0]["z"]), vec)
    assert fig["data"][0]["zmin"] == -fig["data"][0]["zmax"] == -np.abs(vec).max()
    np.testing.assert_array_equal(F.decode(fig["data"][0]["x"]), np.arange(384))  # a cell's x is its dimension
    assert list(fig["data"][1]["customdata"]) == [3, 100]


RNG = np.random.default_rng(0)


# -- the map of a state, and patches -------------------------------------------------------------


def test_full_map_draws_the_base_sample_and_the_group_words(mapview):
    from dashboard.components.wordmap import state_figure

    v, out = mapview
    for proj, three_d in (("umap3d", True), ("umap2d", False)):
        state = _state(v, proj=proj, word="dog")
        fig = state_figure(v, state)
        coords = out[f"projections/{proj}"]
        base = _layer(fig, "base", three_d)
        rows = _rows(base)
        assert len(rows) == (600 if three_d else 1500)
        group_rows = np.flatnonzero(out["words/group"] >= 0)
        assert set(group_rows) <= set(rows)  # the sample keeps every concept-group word
        np.testing.assert_array_equal(F.decode(base["x"]), coords[rows, 0])
        assert list(base["text"]) == [out["words/text"][r] for r in rows]
        assert base["hovertemplate"] == "%{text}<extra></extra>"
        groups = _layer(fig, "groups", three_d)
        np.testing.assert_array_equal(_rows(groups), group_rows)
        np.testing.assert_array_equal(F.decode(groups["marker"]["color"]), out["words/group"][group_rows])
        labels = _layer(fig, "labels", three_d)
        assert list(labels["text"]) == ["alpha", "beta", "animals"]
        np.testing.assert_allclose(F.decode(labels["x"])[2], np.median(coords[out["words/group"] == 2, 0]), rtol=1e-6)
        dog = VOCAB_EXTRA.index("dog") + 1500 - len(VOCAB_EXTRA)
        assert list(_rows(_layer(fig, "selected", three_d))) == [dog]
        assert _layer(fig, "base", three_d)["type"] == ("scatter3d" if three_d else "scattergl")
        if not three_d:
            assert _layer(fig, "density", False)["visible"] is False


def test_a_click_patches_only_the_word_layers_with_its_stored_neighbours(mapview):
    from dashboard.components.wordmap import NEIGHBOURS_SHOWN, Overlay, state_patch

    v, out = mapview
    for proj, three_d in (("umap3d", True), ("umap2d", False)):
        old, new = _state(v, proj=proj, word="dog"), _state(v, proj=proj, word="cat")
        ops = _ops(state_patch(v, old, new, Overlay(), Overlay()))
        index = F.map_layers(three_d)
        assert {loc[1] for loc in ops} == {index["links"], index["neighbours"], index["selected"]}
        cat = out["words/text"].index("cat")
        nb = out["neighbors/indices"][cat, :NEIGHBOURS_SHOWN]
        neighbours = ops[("data", index["neighbours"])]
        np.testing.assert_array_equal(neighbours["customdata"], nb)
        assert list(neighbours["text"]) == [out["words/text"][r] for r in nb]
        assert neighbours["mode"] == "markers+text"  # labelled
        coords = out[f"projections/{proj}"]
        np.testing.assert_array_equal(F.decode(neighbours["x"]), coords[nb, 0])
        links = ops[("data", index["links"])]
        if three_d:
            assert len(F.decode(links["x"])) == 0
        else:
            assert links["x"][1::3] == pytest.approx(coords[nb, 0].tolist())
            assert all(x == pytest.approx(float(coords[cat, 0])) for x in links["x"][0::3])
        size = len(to_json_plotly(state_patch(v, old, new, Overlay(), Overlay()).to_plotly_json()))
        assert size < 5_000  # the base points are never part of a click


def test_colouring_by_a_feature_greys_the_base_and_draws_its_words_on_top(mapview):
    from dashboard.components.wordmap import Overlay, state_patch

    v, out = mapview
    A = out["sae/acts"].toarray()
    f = int(np.argmax((A > 0).sum(axis=0)))
    old, new = _state(v, word="dog"), _state(v, word="dog", color="feature", feature=f)
    ops = _ops(state_patch(v, old, new, Overlay(), Overlay()))
    index = F.map_layers(True)
    assert ops[("data", index["groups"], "visible")] is False
    active = ops[("data", index["active"])]
    fired = np.flatnonzero(A[:, f] > 0)
    assert sorted(active["customdata"]) == list(fired)
    colours = F.decode(active["marker"]["color"])
    np.testing.assert_allclose(colours, A[np.asarray(active["customdata"]), f], rtol=1e-6)
    assert np.all(np.diff(colours) >= 0)  # the strongest last, on top
    assert ("data", index["base"], "marker") not in ops  # the base stays grey: nothing to send
    # and back to groups: the active layer empties, the groups layer shows again
    ops = _ops(state_patch(v, new, old, Overlay(), Overlay()))
    assert ops[("data", index["groups"], "visible")] is True and len(F.decode(ops[("data", 2)]["x"])) == 0


def test_colouring_by_a_dimension_sends_one_byte_per_point_and_greys_zeros(mapview):
    from dashboard.components.wordmap import Overlay, state_patch

    v, out = mapview
    old, new = _state(v, word="dog"), _state(v, word="dog", color="dim", dim=5)
    ops = _ops(state_patch(v, old, new, Overlay(), Overlay()))
    marker = ops[("data", 0, "marker")]
    assert set(marker) >= {"color", "colorscale"} and "x" not in marker
    assert marker["color"]["dtype"] == "u1"
    rows = v.base_sample(600)
    vals = out["embeddings"][rows, 5]
    codes = F.decode(marker["color"])
    m = np.abs(vals).max()
    expected = np.where(vals == 0, 0, 1 + np.rint((vals + m) / (2 * m) * 254))
    np.testing.assert_array_equal(codes, expected)
    # the word's largest dimension when none is named
    auto = _state(v, word="dog", color="dim")
    assert auto.dim == int(np.argmax(np.abs(out["embeddings"][out["words/text"].index("dog")])))


def test_toggles_and_search_patch_only_their_layers(mapview):
    from dashboard.components.wordmap import Overlay, state_patch

    v, out = mapview
    index = F.map_layers(False)
    old = _state(v, proj="umap2d", word="dog")
    ops = _ops(state_patch(v, old, _state(v, proj="umap2d", word="dog", density=1), Overlay(), Overlay()))
    assert ops == {("data", index["density"], "visible"): True}
    ops = _ops(state_patch(v, old, _state(v, proj="umap2d", word="dog", labels=0), Overlay(), Overlay()))
    assert list(ops) == [("data", index["labels"])] and len(F.decode(ops[("data", index["labels"])]["x"])) == 0
    ops = _ops(state_patch(v, old, _state(v, proj="umap2d", word="dog", q="cat"), Overlay(), Overlay()))
    matches = ops[("data", index["matches"])]
    assert list(matches["text"]) == ["cat", "cats", "category", "Catalan"]
    assert state_patch(v, old, old, Overlay(), Overlay()) is None


def test_map_figure_for_other_pages_highlights_rows_and_greys_words_a_feature_misses(mapview):
    from dashboard.components.wordmap import map_figure

    v, out = mapview
    fig = map_figure(v, "umap2d", "feature", feature=3, highlight=[5, 7, 9], height=300, limit=100)
    index = F.map_layers(False)
    assert sorted(fig["data"][index["matches"]]["customdata"]) == [5, 7, 9]
    assert fig["data"][index["base"]]["marker"]["color"] == F.GREY
    assert len(fig["data"][index["base"]]["customdata"]) == 100
    plain = map_figure(v, "umap2d", "plain", highlight=[1])
    assert plain["data"][index["groups"]]["visible"] is False


# -- URL state, search, spellings ----------------------------------------------------------------


def test_state_defaults_and_resolution(mapview):
    from dashboard.lib.mapstate import MapState

    v, out = mapview
    s = MapState.of({})
    assert (s.proj, s.color, s.labels, s.density, s.word) == ("umap3d", "group", True, False, None)
    s = _state(v, proj="nope", color="feature", word="dog")
    A = out["sae/acts"].toarray()
    dog = out["words/text"].index("dog")
    assert s.proj == "umap3d" and s.row == dog and s.feature == int(np.argmax(A[dog]))
    assert _state(v, word="zzz").row is None and _state(v, color="weird").color == "group"
    assert _state(v, color="feature", feature=9999).feature is None


def test_search_matches_prefix_and_regex_like_python(mapview):
    from dashboard.lib import wordsearch

    v, out = mapview
    words = out["words/text"]
    for q in ("cat", "CAT", "w00", "ele", "zz"):
        want = [i for i, w in enumerate(words) if w.lower().startswith(q.lower())]
        assert list(wordsearch.matches(v, q)) == want
    for q in ("/^d.g/", "/ANT$/", "/w0{2}1/"):
        rx = re.compile(q[1:-1], re.IGNORECASE)
        assert list(wordsearch.matches(v, q)) == [i for i, w in enumerate(words) if rx.search(w)]
    with pytest.raises(wordsearch.SearchError, match="regular expression"):
        wordsearch.matches(v, "/(unclosed/")


def test_close_spellings_find_the_word_a_typo_meant(mapview):
    from dashboard.lib import wordsearch

    v, out = mapview
    assert wordsearch.close_spellings(v, "elephnt")[0] == "elephant"
    assert wordsearch.close_spellings(v, "lephant")[:1] == ["elephant"]  # the wide pass: first letter differs
    brute = difflib.get_close_matches("elemant", [w.lower() for w in out["words/text"]], n=6, cutoff=0.75)
    assert wordsearch.close_spellings(v, "elemant") == brute
    assert wordsearch.close_spellings(v, "qqqqqqqq") == []


# -- selections ----------------------------------------------------------------------------------


def test_lasso_rows_agree_with_a_triangulation(mapview):
    from dashboard.lib.selection import region_of, rows_in_region

    v, out = mapview
    coords = out["projections/umap2d"]
    hull = RNG.standard_normal((7, 2)) * 0.8
    poly = hull[np.argsort(np.arctan2(hull[:, 1] - hull[:, 1].mean(), hull[:, 0] - hull[:, 0].mean()))]
    region = region_of({"lassoPoints": {"x": poly[:, 0].tolist(), "y": poly[:, 1].tolist()}})
    got = rows_in_region(coords, region)
    # a star-shaped polygon around its centroid: triangulate it as a fan, test with Delaunay per triangle
    c = poly.mean(axis=0)
    inside = np.zeros(len(coords), bool)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        inside |= Delaunay(np.array([c, a, b])).find_simplex(coords) >= 0
    assert set(got) == set(np.flatnonzero(inside)) and len(got) > 20
    box = region_of({"range": {"x": [0.5, -0.5], "y": [-1, 1]}})
    assert box == {"kind": "box", "x": [-0.5, 0.5], "y": [-1.0, 1.0]}
    want = np.flatnonzero((np.abs(coords[:, 0]) <= 0.5) & (np.abs(coords[:, 1]) <= 1))
    np.testing.assert_array_equal(rows_in_region(coords, box), want)
    assert region_of(None) is None and region_of({"points": []}) is None


def test_selection_panel_lists_shared_features_and_groups(mapview):
    from dashboard.components.word_panel import selection_panel
    from dashboard.lib.concepts import rank_features_for
    from dashboard.lib.selection import group_counts

    v, out = mapview
    rows = np.arange(30, 80)  # 10 'alpha' words, 30 'beta' words, 10 ungrouped
    counts = group_counts(v, rows)
    assert counts == [("beta", 30, 1.0), ("alpha", 10, 0.25)]
    panel = json.loads(to_json_plotly(selection_panel(v, rows, drawn=50, coloured=False)))
    text = json.dumps(panel)
    assert "50 words selected" in text
    top = rank_features_for(v, rows, limit=8)[0]["feature"]
    assert f"#{top}" in text
    assert "words=w0030%2C+w0031" in text  # open as a concept: the Concepts page with those words


# -- the page built once per path and run --------------------------------------------------------


def test_router_keeps_the_page_when_only_the_query_changes(mapview):
    from dashboard.app import app  # noqa: F401  (pages register with the app)
    from dashboard.components.routing import page_key
    from dashboard.pages import words

    v, _ = mapview
    with pytest.raises(PreventUpdate):
        words.layout(run=RUN, word="cat", shown_page=[page_key("/words", RUN)])
    page = words.layout(run=RUN, word="cat", shown_page=[page_key("/features", RUN)])
    marker = page.children[0]
    assert marker.id == {"type": "lx-page-marker", "id": "page"} and marker.data == page_key("/words", RUN)
    assert '"words-selected"' in to_json_plotly(page)


def test_activation_intervals_are_labelled_by_their_bounds(mapview):
    """The Features page's interval groups: each label's bounds hold its words, and its count is right."""
    from dashboard.app import app  # noqa: F401
    from dashboard.pages.features import feature_detail

    v, out = mapview
    A = out["sae/acts"].toarray()
    f = int(np.argmax((A > 0).sum(axis=0)))
    page = json.loads(to_json_plotly(feature_detail(v, f)))

    def find(node):
        if isinstance(node, dict):
            if node.get("props", {}).get("id") == "features-quantiles":
                return node
            return next((x for x in map(find, node.values()) if x), None)
        if isinstance(node, list):
            return next((x for x in map(find, node) if x), None)
        return None

    rows = find(page)["props"]["children"]
    col = A[:, f]
    top = col.max()
    assert len(rows) == 5
    for q, div in enumerate(rows):  # highest interval first
        lo, hi = top * (4 - q) / 5, top * (5 - q) / 5
        n = np.count_nonzero((col > lo) & (col <= hi))
        label, *links = div["props"]["children"]
        assert label["props"]["children"] == f"{lo:.2f}–{hi:.2f} ({n:,} word{'' if n == 1 else 's'})"
        shown = [link["props"]["children"] for link in links if isinstance(link, dict)]
        assert len(shown) == min(n, 5) and all(lo < col[out["words/text"].index(w)] <= hi for w in shown)


def test_runs_page_orients_and_defines_every_measure_column(mapview):
    """The home page says where to start; each measure column has a one-line definition as its tooltip,
    and docs/dashboard.md lists the same measures."""
    from pathlib import Path

    from dashboard.app import app  # noqa: F401
    from dashboard.pages import runs

    page = json.loads(to_json_plotly(runs.layout()))
    text = json.dumps(page)
    assert "runs-orientation" in text and "Start by opening a run" in text

    def table(node):
        if isinstance(node, dict):
            if node.get("props", {}).get("id") == "runs-table":
                return node["props"]
            return next((x for x in map(table, node.values()) if x), None)
        if isinstance(node, list):
            return next((x for x in map(table, node) if x), None)
        return None

    props = table(page)
    measures = {"i_cos", "i_pc_log10", "isoscore", "sae_fvu", "sae_l0", "sae_intrusion"}
    assert measures <= {c["id"] for c in props["columns"]}
    for key in measures | ({"sae_qvec"} & {c["id"] for c in props["columns"]}):
        tip = props["tooltip_header"][key]
        assert len(tip) > 30 and "\n" not in tip
    doc = (Path(__file__).resolve().parents[1] / "docs" / "dashboard.md").read_text()
    section = doc[doc.index("### What the measures mean") :]
    for name in ("i_cos", "log10 i_pc", "IsoScore", "FVU", "L0", "intrusion", "QVEC"):
        assert f"\n| {name} |" in section
