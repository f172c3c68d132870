"""Features in context in a real headless Chromium: a MiniLM feature page shows its highlighted top contexts,
and a highlighted token opens that word's page with its contexts. Expected values come from plain h5py."""

import time
from urllib.parse import parse_qs, urlparse

import h5py
import numpy as np
import pytest

pytest.importorskip("selenium")


def _shot(dash_duo, tmp_path, name):
    time.sleep(0.5)
    dash_duo.driver.save_screenshot(str(tmp_path / f"{name}.png"))


def test_feature_page_shows_highlighted_contexts_that_link_to_words(dash_duo, minilm_app, tmp_path):
    app, root, ids = minilm_app
    run_id = next(i for i in ids if "-L5-" in i)
    with h5py.File(root / "runs" / f"{run_id}.h5") as f:
        acts = f["contexts/top_act"][()]
        words = set(f["words/text"].asstr()[()])
    f_id = int(np.argmax((acts > 0).sum(1) * 1000 + acts[:, 0]))  # a feature with a full list of contexts
    assert (acts[f_id] > 0).sum() >= 10
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/features?run={run_id}&feature={f_id}", timeout=20)
    dash_duo.wait_for_element("#contexts-top-list", timeout=20)
    hits = dash_duo.find_elements("#contexts-top-list mark.lx-ctx-hit")
    assert len(hits) >= 10 and len(hits) == (acts[f_id] > 0).sum()
    assert "Top contexts" in dash_duo.find_element("#contexts-top").text
    _shot(dash_duo, tmp_path, "feature-contexts")
    links = dash_duo.find_elements("#contexts-top-list mark.lx-ctx-hit a")
    assert links, "no highlighted token is a word link"
    target = links[0].text
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", links[0])
    links[0].click()
    dash_duo.wait_for_element("#words-contexts", timeout=20)
    q = {k: v[-1] for k, v in parse_qs(urlparse(dash_duo.driver.current_url).query).items()}
    assert urlparse(dash_duo.driver.current_url).path == "/words"
    assert q["word"].lower() == target.lower() and q["word"] in words
    dash_duo.wait_for_text_to_equal("#words-selected", q["word"], timeout=20)
    panel = dash_duo.find_element("#words-contexts").text
    assert "sense 1" in panel
    assert dash_duo.find_elements("#words-contexts mark.lx-ctx-hit")
    assert "corpus context" in dash_duo.find_element("#words-vector-source").text
    _shot(dash_duo, tmp_path, "word-contexts")
