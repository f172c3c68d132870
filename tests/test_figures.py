"""dashboard/figures.py without a browser: the data each figure carries, checked against the inputs."""

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.io.json import to_json_plotly

from dashboard import figures as F

RNG = np.random.default_rng(0)


def _traces(fig, name=None):
    return [t for t in fig["data"] if name is None or t.get("name") == name]


def _valid(fig):
    """The dict is a valid plotly figure (go.Figure validates every property)."""
    go.Figure(fig)


def test_typed_round_trip_and_json_has_no_float_lists():
    a = RNG.standard_normal(1000).astype(np.float32)
    spec = F.typed(a)
    assert spec["dtype"] == "f4"
    np.testing.assert_array_equal(F.decode(spec), a)
    coords = RNG.standard_normal((1000, 3))
    layer = F.points_layer(
        "base", coords, np.arange(1000), [f"w{i}" for i in range(1000)], three_d=True, marker=F.base_marker(True)
    )
    fig = F.word_map_figure({"base": layer}, True)
    text = to_json_plotly(fig)
    # 1000 points x 3 coordinates as decimal text would need thousands of commas in a list
    assert text.count('"bdata"') >= 3
    assert max(len(s) for s in text.split('"bdata"')) < 60_000
    for t in fig["data"]:
        assert isinstance(t["x"], dict) and isinstance(t["z"], dict)


def test_dimension_bars_colours_band_and_ids():
    mean = RNG.standard_normal(40).astype(np.float32)
    mean[5] = 9.0
    lo, hi = mean.mean() - 3 * mean.std(), mean.mean() + 3 * mean.std()
    fig = F.dimension_bars(mean, outliers=[5], selected=12, sigma_band=(lo, hi), y_label="mean value")
    _valid(fig)
    bar = fig["data"][0]
    np.testing.assert_array_equal(F.decode(bar["y"]), mean)
    assert list(bar["customdata"]) == list(range(40))
    colours = bar["marker"]["color"]
    assert colours[5] == F.OUTLIER and colours[12] == F.SELECTED and colours[0] == F.BASE
    (band,) = fig["layout"]["shapes"]
    assert band["y0"] == pytest.approx(lo) and band["y1"] == pytest.approx(hi)
    assert fig["layout"]["xaxis"]["title"]["text"] == "dimension"
    assert fig["layout"]["yaxis"]["title"]["text"] == "mean value"


def test_histogram_counts_every_finite_value_once():
    v = RNG.standard_normal(1001).astype(np.float32)
    v[:10] = np.nan
    fig = F.histogram(v, bins=20, x_label="value", marks={"mean": 0.5})
    _valid(fig)
    bar = fig["data"][0]
    counts = F.decode(bar["y"])
    centres = F.decode(bar["x"])
    widths = F.decode(bar["width"])
    assert counts.sum() == 991 and len(counts) == 20
    assert centres[0] - widths[0] / 2 == pytest.approx(np.nanmin(v), abs=1e-5)
    assert centres[-1] + widths[-1] / 2 == pytest.approx(np.nanmax(v), abs=1e-5)
    # independent count of one bin
    left, right = centres[3] - widths[3] / 2, centres[3] + widths[3] / 2
    finite = v[np.isfinite(v)]
    assert counts[3] == np.sum((finite >= left) & (finite < right))
    assert fig["layout"]["shapes"][0]["x0"] == 0.5


def test_activation_histogram_title_reports_share():
    fig = F.activation_histogram(np.array([0.5, 1.0, 2.0]), 300)
    assert "3 of 300 words (1.00%)" in fig["layout"]["title"]["text"]


def test_measure_across_layers_one_line_per_model():
    t = pd.DataFrame(
        {
            "model": ["b", "a", "a", "a", "b"],
            "layer": [1, 2, 0, 1, 0],
            "run_id": ["b1", "a2", "a0", "a1", "b0"],
            "i_cos": [0.5, 0.2, np.nan, 0.1, 0.4],
        }
    )
    fig = F.measure_across_layers(t, "i_cos", "I_Cos")
    _valid(fig)
    a, b = fig["data"]
    assert a["name"] == "a" and list(F.decode(a["x"])) == [1, 2] and list(a["customdata"]) == ["a1", "a2"]
    np.testing.assert_allclose(F.decode(a["y"]), [0.1, 0.2], rtol=1e-6)
    assert b["name"] == "b" and list(b["customdata"]) == ["b0", "b1"]
    assert fig["layout"]["xaxis"]["title"]["text"] == "layer"


def test_measure_across_layers_one_line_per_family_named():
    t = pd.DataFrame(
        {
            "model": ["m"] * 4,
            "family": ["f1", "f2", "f1", "f2"],
            "layer": [1, 0, 0, 1],
            "run_id": ["a1", "b0", "a0", "b1"],
            "i_cos": [0.3, 0.6, 0.2, 0.5],
        }
    )
    fig = F.measure_across_layers(t, "i_cos", by="family", names={"f1": "plan one"})
    _valid(fig)
    one, two = fig["data"]
    assert one["name"] == "plan one" and list(one["customdata"]) == ["a0", "a1"]
    np.testing.assert_allclose(F.decode(one["y"]), [0.2, 0.3], rtol=1e-6)
    assert two["name"] == "f2" and list(two["customdata"]) == ["b0", "b1"]


def test_frequency_scatter_samples_reproducibly_and_keeps_word_colour_pairs():
    n = 500
    pca = RNG.standard_normal((n, 2))
    zipf = RNG.random(n) * 7
    words = [f"w{i}" for i in range(n)]
    fig = F.frequency_scatter(pca, zipf, words, explained=[0.1, 0.05], max_points=100)
    _valid(fig)
    t = fig["data"][0]
    rows = np.array([int(w[1:]) for w in t["text"]])
    assert len(rows) == 100 and len(set(rows)) == 100
    np.testing.assert_allclose(F.decode(t["marker"]["color"]), zipf[rows], rtol=1e-6)
    np.testing.assert_allclose(F.decode(t["x"]), pca[rows, 0], rtol=1e-6)
    again = F.frequency_scatter(pca, zipf, words, max_points=100)
    assert list(again["data"][0]["text"]) == list(t["text"])
    assert "10.0% var." in fig["layout"]["xaxis"]["title"]["text"]


def test_before_after_skips_missing_measures():
    fig = F.before_after(
        {"i_cos": 0.4, "i_pc": 0.01, "x": None},
        {"i_cos": 0.0, "i_pc": 0.9},
        ["i_cos", "i_pc", "x"],
        labels={"i_cos": "I_Cos"},
    )
    _valid(fig)
    before, after = fig["data"]
    assert list(before["x"]) == ["I_Cos", "i_pc"]
    np.testing.assert_allclose(F.decode(after["y"]), [0.0, 0.9], rtol=1e-6)


def test_feature_map_marks_selected_and_ranked():
    coords = RNG.standard_normal((64, 2))
    fig = F.feature_map(coords, RNG.random(64), selected=7, highlight=[1, 2, 99])
    _valid(fig)
    base, ranked, sel = fig["data"]
    assert list(base["customdata"]) == list(range(64))
    assert list(ranked["customdata"]) == [1, 2]
    assert list(sel["customdata"]) == [7]
    np.testing.assert_allclose(F.decode(sel["x"]), [coords[7, 0]], rtol=1e-6)


def test_hbar_keeps_order_and_highlights():
    fig = F.hbar(["animals", "colours"], [0.9, 0.1], highlight="animals", x_label="score")
    _valid(fig)
    bar = fig["data"][0]
    assert bar["y"] == ["animals", "colours"] and bar["marker"]["color"][0] == F.SELECTED
    assert fig["layout"]["yaxis"]["autorange"] == "reversed"


def test_lines_and_training_curves():
    fig = F.lines_by_category([0, 1, 2], {"en": [0.1, 0.2, 0.3], "de": [0.3, 0.2, np.nan]}, "layer", "ρ", "STS")
    _valid(fig)
    assert [t["name"] for t in fig["data"]] == ["en", "de"]
    assert np.isnan(F.decode(fig["data"][1]["y"])[2])
    curves = F.training_curves({"step": np.arange(5), "loss": np.linspace(1, 0.1, 5), "l0": np.ones(5)})
    _valid(curves)
    assert [t["name"] for t in curves["data"]] == ["loss", "l0"]
    assert curves["data"][1]["yaxis"] == "y2" and "yaxis" not in curves["data"][0]
    np.testing.assert_allclose(F.decode(curves["data"][0]["y"]), np.linspace(1, 0.1, 5), rtol=1e-6)
    json.loads(to_json_plotly(curves))
