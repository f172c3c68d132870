"""Acceptance tests of the dashboard in a real headless Chromium (dash[testing]'s dash_duo).

The store: the session's small GloVe run (tests/conftest.py) when the SAE stage is available, else the
same run without SAE plus a stand-in SAE (tests/helpers.py), next to a corrupt run file.
Expected values are read from the run file with plain h5py, independently of the dashboard."""

import os
import shutil
import time
import warnings
from urllib.parse import parse_qs, urlparse

import h5py
import numpy as np
import pytest

pytest.importorskip("selenium")

CONCEPT_WORD = "dog"  # in the default 'animals' group
CLICKED_WORD = "horse"  # another group word, clicked on the map


@pytest.fixture(scope="module")
def dash_store(request, tmp_path_factory):
    """(root, run_id, path of the run file): a store with one good run and one corrupt run file."""
    root = tmp_path_factory.mktemp("dash-store")
    (root / "runs").mkdir()
    src, run_id = _glove_run(request, tmp_path_factory)
    with h5py.File(src, "r") as f:
        has_sae = "sae/acts" in f
    if has_sae:
        shutil.copy(src, root / "runs" / src.name)
    else:
        from helpers import synthetic_sae_run

        run_id = synthetic_sae_run(src, root, run_id + "-sae", d_sae=256, k=8)
    (root / "runs" / "broken-L0-000000000000.h5").write_bytes(b"this is not an HDF5 file" * 100)
    return root, run_id, root / "runs" / f"{run_id}.h5"


def _glove_run(request, tmp_path_factory):
    """The shared session run when the SAE stage exists (LEXISCOPE_TEST_SYNTHETIC_SAE=1 skips it)."""
    try:
        if os.environ.get("LEXISCOPE_TEST_SYNTHETIC_SAE"):
            raise ImportError
        import compute.features  # noqa: F401  (the SAE stage; the shared fixture needs it)

        root, run_id = request.getfixturevalue("glove_store")
    except ImportError:
        from helpers import SMALL_GLOVE_RUN

        from compute.config import parse_plan
        from compute.pipeline import precompute

        root = tmp_path_factory.mktemp("glove-nosae")
        run_id = precompute(parse_plan({"runs": [{**SMALL_GLOVE_RUN, "sae": None}]}), store=root, device="cpu")[0]
    return root / "runs" / f"{run_id}.h5", run_id


@pytest.fixture
def app_on(dash_store):
    from dashboard.app import app
    from dashboard.lib import store

    root, run_id, path = dash_store
    store.configure(root)
    yield app, run_id, path
    store.configure(None)


def _query(dash_duo) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(dash_duo.driver.current_url).query).items()}


def _click_point(dash_duo, graph_selector, customdata):
    """Click the point whose customdata is `customdata`, through plotly's own click event (what a
    mouse click on a WebGL point emits; pixel-clicking a 3-D scene is not reproducible)."""
    found = dash_duo.driver.execute_script(
        """
        const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
        if (!gd) return 'no graph';
        for (let c = 0; c < gd.data.length; c++) {
            const cd = gd.data[c].customdata || [];
            const i = cd.indexOf(arguments[1]);
            if (i >= 0) {
                const t = gd._fullData[c];
                gd.emit('plotly_click', {points: [{curveNumber: c, pointNumber: i, customdata: cd[i],
                        x: t.x ? t.x[i] : undefined, y: t.y ? t.y[i] : undefined}]});
                return 'ok';
            }
        }
        return 'not found';""",
        graph_selector,
        customdata,
    )
    assert found == "ok", f"{graph_selector}: point {customdata}: {found}"


def _click(dash_duo, element, tries=20):
    """A real click, once the element has stopped moving (graphs load lazily and shift the page).
    If something still covers it after `tries`, click through JavaScript and say what covered it."""
    from selenium.common.exceptions import ElementClickInterceptedException

    for _ in range(tries):
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        try:
            element.click()
            return
        except ElementClickInterceptedException as e:
            covered = " ".join(str(e).split())[:400]
            time.sleep(0.25)
    warnings.warn(f"clicked through JavaScript: {covered}", stacklevel=2)
    dash_duo.driver.execute_script("arguments[0].click();", element)


def _shot(dash_duo, tmp_path, name):
    """A screenshot once every graph on the page has drawn (plotly loads lazily)."""
    deadline = time.time() + 15
    while time.time() < deadline and not dash_duo.driver.execute_script(
        "return [...document.querySelectorAll('.dash-graph')].every(g => g.querySelector('.main-svg'))"
    ):
        time.sleep(0.2)
    time.sleep(0.3)
    dash_duo.driver.save_screenshot(str(tmp_path / f"{name}.png"))


def test_click_through(dash_duo, app_on, tmp_path):
    app, run_id, path = app_on
    with h5py.File(path, "r") as f:
        words = list(f["words/text"].asstr()[()])
        top_words = f["sae/top_words"][()]
        X = f["embeddings"][()]
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)

    # Runs: click the good run's row.
    dash_duo.wait_for_element('#runs-table td[data-dash-column="model"]', timeout=20)
    _shot(dash_duo, tmp_path, "runs")
    cell = dash_duo.find_element('#runs-table tr td[data-dash-column="model"]')
    cell.click()
    dash_duo.wait_for_element("#words-search", timeout=20)
    assert urlparse(dash_duo.driver.current_url).path == "/words"
    assert _query(dash_duo)["run"] == run_id

    # Words: search a concept-group word (autocomplete offers it), then click another on the map.
    box = dash_duo.find_element("#words-search")
    box.send_keys(CONCEPT_WORD[:2])
    dash_duo.wait_for_element(f'#words-suggestions option[value="{CONCEPT_WORD}"]', timeout=10)
    box.send_keys(CONCEPT_WORD[2:] + "\n")
    dash_duo.wait_for_text_to_equal("#words-selected", CONCEPT_WORD, timeout=20)
    dash_duo.wait_for_element('[id*="words-map"] .js-plotly-plot', timeout=20)
    _click_point(dash_duo, '[id*="words-map"]', words.index(CLICKED_WORD))
    dash_duo.wait_for_text_to_equal("#words-selected", CLICKED_WORD, timeout=20)
    assert _query(dash_duo)["word"] == CLICKED_WORD
    dash_duo.wait_for_element("#words-features a", timeout=10)
    _shot(dash_duo, tmp_path, "words")

    # Its feature panel lists features; the first opens the Features page with that feature's top words.
    first = dash_duo.find_elements("#words-features a")[0]
    feature = int(first.text.lstrip("#"))
    _click(dash_duo, first)
    dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{feature}", timeout=20)
    assert _query(dash_duo) == {"run": run_id, "feature": str(feature)}
    shown = {a.text.rsplit(" ", 1)[0] for a in dash_duo.find_elements("#features-top-words a")}
    stored = {words[r] for r in top_words[feature] if r >= 0}
    assert shown and shown <= stored
    _shot(dash_duo, tmp_path, "features")

    # Dimensions (through the navbar, which carries the run): click a bar, its top words appear.
    dash_duo.find_element("#nav-dimensions").click()
    dash_duo.wait_for_element('[id*="dims-bars"] .js-plotly-plot', timeout=20)
    assert _query(dash_duo)["run"] == run_id
    dim = 7
    _click_point(dash_duo, '[id*="\\"mean\\""]', dim)
    dash_duo.wait_for_text_to_equal("#dims-selected", f"Dimension {dim}", timeout=20)
    shown = [a.text.rsplit(" ", 1)[0] for a in dash_duo.find_elements("#dims-top-words a")]
    expected = [words[r] for r in np.argsort(-X[:, dim], kind="stable")[:15]]
    assert shown == expected
    _shot(dash_duo, tmp_path, "dimensions")


def test_deep_link_and_history(dash_duo, app_on, tmp_path):
    app, run_id, path = app_on
    with h5py.File(path, "r") as f:
        words = list(f["words/text"].asstr()[()])
        top_words = f["sae/top_words"][()]
        f1 = int(np.argmax(f["sae/density"][()]))  # a live feature, so it has correlated features
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    base = dash_duo.server_url
    dash_duo.driver.get(f"{base}/features?run={run_id}&feature={f1}")
    dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{f1}", timeout=20)
    first_top = dash_duo.find_elements("#features-top-words a")[0].text.rsplit(" ", 1)[0]
    assert first_top == words[top_words[f1][0]]
    # Follow a correlated-feature link, then the same with a typed deep link for a word.
    link = dash_duo.find_element("#features-correlated a")
    f_corr = int(link.text.split()[0].lstrip("#"))
    _click(dash_duo, link)
    dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{f_corr}", timeout=20)
    _click(dash_duo, dash_duo.find_element("#features-top-words a"))
    dash_duo.wait_for_element("#words-selected", timeout=20)
    word = dash_duo.find_element("#words-selected").text
    assert _query(dash_duo) == {"run": run_id, "word": word}

    dash_duo.driver.back()
    dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{f_corr}", timeout=20)
    dash_duo.driver.back()
    dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{f1}", timeout=20)
    assert _query(dash_duo)["feature"] == str(f1)
    dash_duo.driver.forward()
    dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{f_corr}", timeout=20)

    # The remaining pages by deep link (screenshots), an unknown word, and the concept explorer.
    dash_duo.driver.get(f"{base}/words?run={run_id}&word=qzxqzx")
    dash_duo.wait_for_element("#words-unknown", timeout=20)
    assert "qzxqzx" in dash_duo.find_element("#words-unknown").text
    dash_duo.driver.get(f"{base}/concepts?run={run_id}&words=dog,cat,horse,qzxqzx")
    dash_duo.wait_for_element("#concepts-table", timeout=20)
    assert "qzxqzx" in dash_duo.find_element("#concepts-unknown").text
    assert {a.text for a in dash_duo.find_elements("#concepts-known a")} == {"dog", "cat", "horse"}
    _shot(dash_duo, tmp_path, "concepts")
    dash_duo.driver.get(f"{base}/geometry?run={run_id}")
    dash_duo.wait_for_element("#geometry-table", timeout=20)
    _shot(dash_duo, tmp_path, "geometry")


def test_feature_page_and_concepts_table_name_features_by_their_labels(dash_duo, app_on, tmp_path):
    """Correlated features and the Concepts table read `#12 noun.animal 0.51 · deer, whales, birds`, not a bare
    `#12`, and the Concepts table's score for a stored label is the stored concept score."""
    app, run_id, path = app_on
    with h5py.File(path, "r") as f:
        labels = list(f["sae/feature_label"].asstr()[()])
        names = list(f["labels/names"].asstr()[()])
        f1 = f["sae/concept_f1"][()]
        feature = int(np.argmax(f["sae/density"][()]))
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.driver.get(f"{dash_duo.server_url}/features?run={run_id}&feature={feature}")
    dash_duo.wait_for_element("#features-correlated a", timeout=20)
    assert dash_duo.find_element("#features-label").text == labels[feature]
    links = dash_duo.find_elements("#features-correlated a")
    for link in links:
        other = int(link.text.split()[0].lstrip("#"))
        assert link.text == f"#{other} {labels[other]}" and labels[other]

    dash_duo.driver.get(f"{dash_duo.server_url}/concepts?run={run_id}&group=animals")
    dash_duo.wait_for_element('#concepts-table td[data-dash-column="feature"] a', timeout=20)
    c = names.index("group.animals")
    cells = dash_duo.find_elements('#concepts-table td[data-dash-column="feature"] a')
    scores = dash_duo.find_elements('#concepts-table td[data-dash-column="score"]')
    assert cells and len(cells) == len(scores)
    for cell, score in zip(cells, scores):
        g = int(cell.text.split()[0].lstrip("#"))
        assert cell.text == f"#{g} {labels[g]}"
        assert score.text == f"{f1[g, c]:.3f}"  # the stored concept score, as the Features table shows it
    assert "stored concept scores" in dash_duo.find_element("#concepts-source").text
    _shot(dash_duo, tmp_path, "concepts-labels")


def test_corrupt_run_is_contained(dash_duo, app_on, tmp_path):
    app, run_id, _ = app_on
    dash_duo.start_server(app)
    dash_duo.wait_for_element('#runs-table td[data-dash-column="model"]', timeout=20)
    rows = dash_duo.find_elements('#runs-table tr td[data-dash-column="model"]')
    assert len(rows) == 1
    assert "broken-L0-000000000000" in dash_duo.find_element(".alert-warning").text
    # Asking for the corrupt run by URL gives an alert on that page, and the app keeps working.
    dash_duo.driver.get(f"{dash_duo.server_url}/words?run=broken-L0-000000000000&word=dog")
    dash_duo.wait_for_element("#lx-error", timeout=20)
    assert "corrupt" in dash_duo.find_element("#lx-error").text
    dash_duo.find_element("#nav-brand").click()
    dash_duo.wait_for_element('#runs-table td[data-dash-column="model"]', timeout=20)


def test_empty_store_explains_precompute(dash_duo, tmp_path):
    from dashboard.app import app
    from dashboard.lib import store

    store.configure(tmp_path / "empty")
    try:
        dash_duo.start_server(app)
        dash_duo.wait_for_element("#lx-empty-store", timeout=20)
        assert "lexiscope precompute" in dash_duo.find_element("#lx-empty-store").text
        dash_duo.driver.get(f"{dash_duo.server_url}/features")
        dash_duo.wait_for_element("#lx-empty-store", timeout=20)
    finally:
        store.configure(None)
