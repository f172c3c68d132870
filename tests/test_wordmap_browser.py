"""The word map in a real headless Chromium (dash[testing]'s dash_duo) on the session's small GloVe run:
a click updates the panel and the URL without rebuilding the page (back and forward included), the
clicked word's stored neighbours light up, a lasso opens the selection panel and its words open as a
concept. Expected values come from the run file (h5py) and from plotly's own selection in the page.
Screenshots of each view are kept in the test's tmp dir."""

import time
from urllib.parse import parse_qs, urlparse

import h5py
import numpy as np
import pytest

pytest.importorskip("selenium")

pytestmark = pytest.mark.browser

MAP = '[id*="words-map"] .js-plotly-plot'
LAYERS_2D = ("density", "base", "groups", "active", "selection", "matches", "links", "neighbours", "selected")


@pytest.fixture
def app_on(glove_store):
    from dashboard.app import app
    from dashboard.lib import store

    root, run_id = glove_store
    store.configure(root)
    yield app, run_id, root / "runs" / f"{run_id}.h5"
    store.configure(None)


@pytest.fixture(scope="module")
def run_file(glove_store):
    root, run_id = glove_store
    with h5py.File(root / "runs" / f"{run_id}.h5", "r") as f:
        return dict(
            words=list(f["words/text"].asstr()[()]),
            neighbors=f["neighbors/indices"][()],
            coords2d=f["projections/umap2d"][()],
        )


def _query(duo) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(duo.driver.current_url).query).items()}


def _layer(duo, name):
    """A layer of the map as the page holds it: {text, customdata, mode, n, marker colour}."""
    return duo.driver.execute_script(
        """const gd = document.querySelector(arguments[0]);
        const t = gd._fullData.find(t => t.name === arguments[1]);
        if (!t) return null;
        return {text: t.text ? Array.from(t.text) : [], customdata: t.customdata ? Array.from(t.customdata) : [],
                mode: t.mode, n: t.x ? t.x.length : 0, x: t.x ? Array.from(t.x) : [],
                colour: t.marker && typeof t.marker.color === 'string' ? t.marker.color : null};""",
        MAP,
        name,
    )


def _emit_click(duo, word):
    """Plotly's own click event for the point of `word` (what a mouse click on it emits)."""
    found = duo.driver.execute_script(
        """const gd = document.querySelector(arguments[0]);
        for (let c = 0; c < gd.data.length; c++) {
            const t = gd.data[c].text;
            const i = t ? Array.prototype.indexOf.call(t, arguments[1]) : -1;
            if (i >= 0 && gd.data[c].name === 'base') {
                gd.emit('plotly_click', {points: [{curveNumber: c, pointNumber: i, text: arguments[1]}]});
                return true;
            }
        }
        return false;""",
        MAP,
        word,
    )
    assert found, word


def _wait(duo, js, *args, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if duo.driver.execute_script(js, *args):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {js[:120]}")


def _type(box, text):
    """Replace a React-controlled input's text (WebElement.clear() does not reach React)."""
    from selenium.webdriver.common.keys import Keys

    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)


def _drawn(duo, graph=MAP):
    _wait(
        duo,
        "return !document.querySelector('[data-dash-is-loading=\"true\"]') && !!document.querySelector(arguments[0] + ' .main-svg')",
        graph,
    )
    time.sleep(0.5)


def _shot(duo, tmp_path, name, graph=MAP):
    _drawn(duo, graph)
    duo.driver.save_screenshot(str(tmp_path / f"{name}.png"))


def _mark_page(duo):
    """A window-level sentinel and one on the map's element: both survive unless the page or map is rebuilt."""
    duo.driver.execute_script(
        "window.__lxSentinel = 'kept'; document.querySelector(arguments[0]).__lxSentinel = 'kept';", MAP
    )


def _page_kept(duo) -> bool:
    return duo.driver.execute_script(
        "const gd = document.querySelector(arguments[0]);"
        "return window.__lxSentinel === 'kept' && !!gd && gd.__lxSentinel === 'kept';",
        MAP,
    )


def test_map_click_updates_panel_and_url_and_back_keeps_the_page(dash_duo, app_on, run_file, tmp_path):
    app, run_id, _ = app_on
    words = run_file["words"]
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.driver.get(f"{dash_duo.server_url}/words?run={run_id}&word=dog")
    dash_duo.wait_for_text_to_equal("#words-selected", "dog", timeout=30)
    _drawn(dash_duo)
    _mark_page(dash_duo)

    _emit_click(dash_duo, "horse")
    dash_duo.wait_for_text_to_equal("#words-selected", "horse", timeout=30)
    assert _query(dash_duo) == {"run": run_id, "word": "horse"}
    _wait(
        dash_duo,
        "const gd = document.querySelector(arguments[0]); return gd._fullData.some(t => t.name === 'selected' && t.text[0] === 'horse')",
        MAP,
    )
    assert _page_kept(dash_duo)  # neither the page nor the map element was rebuilt
    _shot(dash_duo, tmp_path, "words-3d-click")

    dash_duo.driver.back()
    dash_duo.wait_for_text_to_equal("#words-selected", "dog", timeout=30)
    assert _query(dash_duo) == {"run": run_id, "word": "dog"}
    _wait(
        dash_duo,
        "const gd = document.querySelector(arguments[0]); return gd._fullData.some(t => t.name === 'selected' && t.text[0] === 'dog')",
        MAP,
    )
    assert _page_kept(dash_duo)
    dash_duo.driver.forward()
    dash_duo.wait_for_text_to_equal("#words-selected", "horse", timeout=30)
    assert _page_kept(dash_duo)

    # an unknown word offers close spellings; a search lights up every word with that prefix
    box = dash_duo.find_element("#words-search")
    _type(box, "elephnt\n")
    dash_duo.wait_for_element("#words-unknown", timeout=30)
    assert "elephant" in [a.text for a in dash_duo.find_elements("#words-unknown a")]
    assert _page_kept(dash_duo)
    _type(box, "/^ele/\n")
    _wait(dash_duo, "return (document.getElementById('words-matches') || {}).innerText.includes('match')")
    expected = [w for w in words if w.lower().startswith("ele")]
    _wait(
        dash_duo,
        "const gd = document.querySelector(arguments[0]); const t = gd._fullData.find(t => t.name === 'matches'); return t && t.x.length === arguments[1]",
        MAP,
        len(expected),
    )
    assert sorted(_layer(dash_duo, "matches")["text"]) == sorted(expected)
    assert f"{len(expected)} word(s) match" in dash_duo.find_element("#words-matches").text
    _shot(dash_duo, tmp_path, "words-search")


def test_neighbour_highlighting_shows_the_stored_neighbours(dash_duo, app_on, run_file, tmp_path):
    from dashboard.components.wordmap import NEIGHBOURS_SHOWN

    app, run_id, _ = app_on
    words, nb = run_file["words"], run_file["neighbors"]
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.driver.get(f"{dash_duo.server_url}/words?run={run_id}&word=dog&proj=umap2d")
    dash_duo.wait_for_text_to_equal("#words-selected", "dog", timeout=30)
    _drawn(dash_duo)
    _mark_page(dash_duo)
    _emit_click(dash_duo, "cat")
    dash_duo.wait_for_text_to_equal("#words-selected", "cat", timeout=30)
    cat = words.index("cat")
    want = [words[j] for j in nb[cat, :NEIGHBOURS_SHOWN] if j >= 0]
    _wait(
        dash_duo,
        "const gd = document.querySelector(arguments[0]); const t = gd._fullData.find(t => t.name === 'neighbours'); return t && t.text[0] === arguments[1]",
        MAP,
        want[0],
    )
    layer = _layer(dash_duo, "neighbours")
    assert layer["text"] == want and layer["mode"] == "markers+text"  # lit up and labelled
    links = _layer(dash_duo, "links")
    assert links["n"] == 3 * len(want)  # a line from the word to each neighbour (x, x', gap)
    np.testing.assert_allclose([x for x in links["x"][1::3]], run_file["coords2d"][nb[cat, : len(want)], 0], rtol=1e-5)
    chips = [a.text.rsplit(" ", 1)[0] for a in dash_duo.find_elements("#words-neighbors a")]
    assert chips[: len(want)] == want  # the panel lists the same neighbours
    assert _page_kept(dash_duo)
    _shot(dash_duo, tmp_path, "words-2d-neighbours")

    # a link further down the panel (a neighbour) selects that word: the panel scrolls back into view
    link = dash_duo.find_elements("#words-neighbors a")[-1]
    target = link.text.rsplit(" ", 1)[0]
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'end'}); window.scrollBy(0, 400);", link)
    time.sleep(0.3)
    assert (
        dash_duo.driver.execute_script("return document.getElementById('words-selected').getBoundingClientRect().top")
        < 0
    )
    link.click()
    dash_duo.wait_for_text_to_equal("#words-selected", target, timeout=30)
    _wait(
        dash_duo,
        "const r = document.getElementById('words-selected').getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight",
    )
    assert _page_kept(dash_duo) and _query(dash_duo)["word"] == target

    # density contours and labels are toggles: a patch, not a new page
    dash_duo.find_element("#words-toggles input[value='density']").click()
    _wait(
        dash_duo,
        "const gd = document.querySelector(arguments[0]); const t = (gd.data || []).find(t => t.name === 'density'); return !!t && t.visible === true",
        MAP,
    )
    assert _query(dash_duo).get("density") == "1" and _page_kept(dash_duo)
    _shot(dash_duo, tmp_path, "words-2d-density")


def test_lasso_selection_panel_and_open_as_a_concept(dash_duo, app_on, run_file, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    app, run_id, _ = app_on
    words = run_file["words"]
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.driver.get(f"{dash_duo.server_url}/words?run={run_id}&proj=umap2d")
    dash_duo.wait_for_element(MAP, timeout=30)
    _drawn(dash_duo)
    dash_duo.driver.execute_script("Plotly.relayout(document.querySelector(arguments[0]), {dragmode: 'lasso'});", MAP)
    time.sleep(0.5)
    area = dash_duo.find_element(f"{MAP} .nsewdrag")
    w, h = area.size["width"], area.size["height"]
    # a real mouse lasso: a pentagon around the middle of the map
    points = [(0.35, 0.3), (0.65, 0.3), (0.75, 0.55), (0.5, 0.75), (0.25, 0.55), (0.35, 0.3)]
    chain = ActionChains(dash_duo.driver).move_to_element_with_offset(area, int(w * 0.35), int(h * 0.3))
    chain.click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for _ in range(5):
            chain.move_by_offset(int((x1 - x0) * w / 5), int((y1 - y0) * h / 5))
    chain.release().perform()
    dash_duo.wait_for_element("#words-selection-card", timeout=30)
    # plotly's own lasso test (in pixels) against ours (in data coordinates) on the drawn words
    picked = dash_duo.driver.execute_script(
        "const gd = document.querySelector(arguments[0]); const t = gd.data.find(t => t.name === 'base');"
        "return (t.selectedpoints || []).map(i => t.customdata[i]);",
        MAP,
    )
    assert len(picked) > 10
    count = int(dash_duo.find_element("#words-selection-count").get_attribute("textContent"))
    assert abs(count - len(picked)) <= max(2, 0.01 * len(picked))  # points on the lasso's edge may differ
    shown = [a.text for a in dash_duo.find_elements("#words-selection-words a")]
    selected = sorted(picked)
    assert set(shown) <= {words[r] for r in selected} | set(shown[-3:])
    assert dash_duo.find_elements("#words-selection-features a")  # the features they share most
    _shot(dash_duo, tmp_path, "words-lasso")

    dash_duo.find_element("#words-selection-card button.btn-outline-secondary").click()
    _wait(
        dash_duo,
        "const gd = document.querySelector(arguments[0]); const t = gd._fullData.find(t => t.name === 'selection'); return t && t.x.length === arguments[1]",
        MAP,
        count,
    )
    assert _layer(dash_duo, "base")["colour"] is not None  # the rest is grey
    _shot(dash_duo, tmp_path, "words-lasso-coloured")

    concept = dash_duo.find_element("#words-selection-concept")
    concept.click()
    dash_duo.wait_for_element("#concepts-known", timeout=30)
    assert urlparse(dash_duo.driver.current_url).path == "/concepts"
    asked = [w.strip() for w in _query(dash_duo)["words"].split(",")]
    assert len(asked) == min(count, 200)  # the 200 most frequent selected words
    known = [a.text for a in dash_duo.find_elements("#concepts-known a")]  # the page lists the first 150
    assert known == asked[: len(known)] and len(known) == min(len(asked), 150)
    titles = [h.text for h in dash_duo.find_elements(".lx-card h6")]
    assert f"Group: {len(asked)} word(s)" in titles
    assert abs(len({words.index(w) for w in known} & set(picked)) - len(known)) <= 2
    _shot(dash_duo, tmp_path, "concepts-from-selection", graph=".js-plotly-plot")
