"""The Compare page in a real headless Chromium (dash_duo) on the session's GloVe run against MiniLM L6: it shows
the stored CKA (read here with h5py) and the neighbour-overlap table, a word of the table opens its neighbours in
both runs, and their links open the word page and the feature page of the right run. Screenshots are kept in the
test's tmp dir."""

from urllib.parse import parse_qs, urlparse

import h5py
import pytest

pytest.importorskip("selenium")

pytestmark = pytest.mark.browser


def _query(duo) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(duo.driver.current_url).query).items()}


def test_compare_page_shows_cka_and_overlap_and_its_links_work(dash_duo, compare_store, tmp_path):
    from dashboard.app import app
    from dashboard.lib import store

    root, glove, _, l6 = compare_store
    with h5py.File(root / "comparisons" / f"{glove}__{l6}.h5", "r") as f:
        cka, shuffled = float(f.attrs["cka"]), float(f.attrs["cka_shuffled"].mean())
        words = list(f["words"].asstr()[()])
        most = [words[p] for p in f["most_agree"][:15]]
    store.configure(root)
    try:
        dash_duo.start_server(app)
        dash_duo.wait_for_page(f"{dash_duo.server_url}/compare?a={glove}&b={l6}")
        dash_duo.wait_for_text_to_equal("#compare-cka", f"{cka:.4f}", timeout=30)
        assert dash_duo.find_element("#compare-cka-shuffled").text == f"{shuffled:.4f}"
        assert "Linear CKA (Kornblith et al. 2019)" in dash_duo.find_element("#compare-summary-card").text
        shown = [e.text for e in dash_duo.find_elements("#compare-most tr td:first-child a")]
        assert shown == most
        assert len(dash_duo.find_elements("#compare-labels tbody tr")) > 0
        dash_duo.driver.save_screenshot(str(tmp_path / "compare.png"))

        # A word of the table opens its neighbours in both runs, each list a run's own links.
        dash_duo.find_element("#compare-most tr td:first-child a").click()
        dash_duo.wait_for_element("#compare-neighbours-a li", timeout=30)
        assert _query(dash_duo)["word"] == most[0]
        assert len(dash_duo.find_elements("#compare-neighbours-b li")) == 10
        dash_duo.driver.save_screenshot(str(tmp_path / "compare-word.png"))
        neighbour = dash_duo.find_element("#compare-neighbours-b li a")
        target = neighbour.text
        neighbour.click()
        dash_duo.wait_for_element("#words-panel", timeout=30)
        assert urlparse(dash_duo.driver.current_url).path == "/words"
        assert (_query(dash_duo)["run"], _query(dash_duo)["word"]) == (l6, target)
        dash_duo.driver.save_screenshot(str(tmp_path / "words-from-compare.png"))

        # A matched feature opens its feature page in its own run.
        dash_duo.driver.back()
        dash_duo.wait_for_element("#compare-features-ab a", timeout=30)
        links = dash_duo.find_elements("#compare-features-ab tbody tr td:nth-child(2) a")
        assert links, "no matched features shown"
        href = urlparse(links[0].get_attribute("href"))
        assert parse_qs(href.query)["run"] == [l6]
        own = dash_duo.find_element("#compare-features-ab tbody tr td:first-child a")
        f = int(parse_qs(urlparse(own.get_attribute("href")).query)["feature"][0])
        own.click()
        dash_duo.wait_for_text_to_equal("#features-selected", f"Feature #{f}", timeout=30)
        assert urlparse(dash_duo.driver.current_url).path == "/features" and _query(dash_duo)["run"] == glove
        dash_duo.driver.save_screenshot(str(tmp_path / "features-from-compare.png"))
        assert dash_duo.get_logs() in ([], None)
    finally:
        store.configure(None)
