"""The Layers page in a real headless Chromium on the session's MiniLM store (7 layers, 128-feature SAEs): the
3-D view of every layer's features, a click on a feature node opening that feature's page, a feature's lineage
listed and drawn, and a word followed through the layers. Expected values come from plain h5py. Screenshots of
each view are kept in the test's tmp dir."""

import time
from urllib.parse import parse_qs, urlparse

import h5py
import numpy as np
import pytest

pytest.importorskip("selenium")

pytestmark = pytest.mark.browser

VIEW = "#lay-3d .js-plotly-plot"


def _file(root, run_id):
    return h5py.File(root / "runs" / f"{run_id}.h5", "r")


def _shot(duo, tmp_path, name):
    time.sleep(0.5)
    duo.driver.save_screenshot(str(tmp_path / f"{name}.png"))


def _query(duo) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(duo.driver.current_url).query).items()}


def _traces(duo):
    return duo.driver.execute_script(
        """const gd = document.querySelector(arguments[0]);
        return gd._fullData.map(t => ({name: t.name, type: t.type, mode: t.mode,
            n: t.x ? t.x.length : 0, customdata: t.customdata ? Array.from(t.customdata) : []}));""",
        VIEW,
    )


def _click_node(duo, node_id):
    """Plotly's own click event on the node with this customdata (what a mouse click on it emits)."""
    found = duo.driver.execute_script(
        """const gd = document.querySelector(arguments[0]);
        for (let c = 0; c < gd.data.length; c++) {
            const cd = gd.data[c].customdata;
            const i = cd ? Array.prototype.indexOf.call(cd, arguments[1]) : -1;
            if (i >= 0 && gd.data[c].mode === 'markers') {
                gd.emit('plotly_click', {points: [{curveNumber: c, pointNumber: i, customdata: arguments[1]}]});
                return true;
            }
        }
        return false;""",
        VIEW,
        node_id,
    )
    assert found, node_id


def test_3d_view_and_a_click_on_a_feature_opens_its_page(dash_duo, minilm_app, tmp_path):
    app, root, ids = minilm_app
    run_id = next(i for i in ids if "-L3-" in i)
    with _file(root, run_id) as f:
        density = f["sae/density"][()]
        up_cos, threshold = f["lineage/up/cos"][()], f["lineage"].attrs["threshold_up"]
        born, ending = f["lineage/born"][()], f["lineage/ending"][()]
    feature = int(np.flatnonzero((density > 0) & (up_cos >= threshold))[0])
    dash_duo.start_server(app)
    dash_duo.driver.get(f"{dash_duo.server_url}/layers?run={run_id}")
    dash_duo.wait_for_element(VIEW, timeout=30)
    traces = _traces(dash_duo)
    assert {t["type"] for t in traces} == {"scatter3d"}
    nodes = [t for t in traces if t["mode"] == "markers"]
    ids_l3 = sorted(c % 1_000_000 for t in nodes for c in t["customdata"] if c // 1_000_000 == 3)
    assert ids_l3 == np.flatnonzero(density > 0).tolist()  # every firing feature of layer 3 is drawn
    assert sum(t["n"] for t in traces if t["mode"] == "lines") > 0  # matches are drawn
    born_trace = next(t for t in nodes if t["name"].startswith("born here"))
    assert sorted(c % 1_000_000 for c in born_trace["customdata"] if c // 1_000_000 == 3) == sorted(
        np.flatnonzero(born & ~ending & (density > 0)).tolist()
    )
    carry = dash_duo.find_element("#lay-carry-table").text
    assert f"{int((up_cos >= threshold).sum())}" in carry
    assert "rotated" in dash_duo.find_element("#lay-feature-defs").text
    _shot(dash_duo, tmp_path, "layers-3d")
    _click_node(dash_duo, 3 * 1_000_000 + feature)
    dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{feature}", timeout=30)
    assert urlparse(dash_duo.driver.current_url).path == "/features"
    assert _query(dash_duo) == {"run": run_id, "feature": str(feature)}
    _shot(dash_duo, tmp_path, "layers-click-opened-feature")


def test_lineage_is_listed_and_drawn_and_a_word_is_followed(dash_duo, minilm_app, tmp_path):
    app, root, ids = minilm_app
    by_layer = {int(i.split("-L")[1].split("-")[0]): i for i in ids}
    run_id = by_layer[3]
    with _file(root, run_id) as f:
        chain = f["lineage/chain"][()]
        words = list(f["words/text"].asstr()[()])
    feature = int(np.argmax((chain >= 0).sum(1)))  # the longest lineage
    expected_steps = int((chain[feature] >= 0).sum())
    assert expected_steps >= 2
    dash_duo.start_server(app)
    dash_duo.driver.get(f"{dash_duo.server_url}/layers?run={run_id}&feature={feature}&click=trace")
    dash_duo.wait_for_element("#lay-lineage-table", timeout=30)
    dash_duo.wait_for_element(VIEW, timeout=30)
    rows = dash_duo.find_elements("#lay-lineage-table tbody tr")
    assert len(rows) == expected_steps
    linked = [a.get_attribute("href") for a in dash_duo.find_elements("#lay-lineage-table a")]
    for layer in np.flatnonzero(chain[feature] >= 0):
        assert any(f"run={by_layer[int(layer)]}" in h and f"feature={chain[feature, layer]}" in h for h in linked)
    path = next(t for t in _traces(dash_duo) if t["name"] == "selected lineage")
    assert path["n"] == expected_steps
    _shot(dash_duo, tmp_path, "layers-lineage")

    # A word through the layers: the layer where its neighbourhood changes most, from the stored neighbours.
    word = "government" if "government" in words else words[10]
    row = words.index(word)
    jaccard = {}
    for layer in range(1, 7):
        with _file(root, by_layer[layer]) as f, _file(root, by_layer[layer - 1]) as g:
            a, b = set(f["neighbors/indices"][row]), set(g["neighbors/indices"][row])
            jaccard[layer] = len(a & b) / len(a | b)
    dash_duo.driver.get(f"{dash_duo.server_url}/layers?run={run_id}&tab=word&word={word}")
    dash_duo.wait_for_element("#lay-word-table", timeout=30)
    assert len(dash_duo.find_elements("#lay-word-table tbody tr")) == 7
    assert dash_duo.find_element("#lay-word-changed").text == f"layer {min(jaccard, key=jaccard.get)}"
    dash_duo.wait_for_element("#lay-word-3d .js-plotly-plot", timeout=30)
    assert "steadier" in dash_duo.find_element("#lay-steadiness").text
    _shot(dash_duo, tmp_path, "layers-word")
