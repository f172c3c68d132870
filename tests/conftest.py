"""Shared fixtures. Expensive stores are built once per session and only read by tests."""

import os
from pathlib import Path

import pytest
from helpers import SMALL_GLOVE_RUN

from compute.config import parse_plan

REPO = Path(__file__).resolve().parents[1]
# Real STS-B data sits beside the repo (never copied into it); LEXISCOPE_STS_DIR overrides.
STS_DIR = Path(os.environ.get("LEXISCOPE_STS_DIR") or REPO.parent / "shared" / "data" / "stsb-multi-mt")


@pytest.fixture(scope="session")
def sts_dir() -> Path:
    if not (STS_DIR / "stsb-en-test.csv").is_file():
        pytest.fail(f"STS-B data not found at {STS_DIR}; set LEXISCOPE_STS_DIR")
    return STS_DIR


@pytest.fixture(scope="session")
def glove_store(tmp_path_factory):
    """A store with one small GloVe run (2,000+ words, geometry, projections, a 256-feature SAE)."""
    from compute.pipeline import precompute

    root = tmp_path_factory.mktemp("glove-store")
    ids = precompute(parse_plan({"runs": [SMALL_GLOVE_RUN]}), store=root, device="cpu")
    return root, ids[0]


@pytest.fixture(scope="session")
def glove_default_store(tmp_path_factory):
    """The default plan's GloVe run (compute/data/default_plan.yaml: the bundled GloVe 50d, 20k words, a
    1,024-feature TopK SAE and its frozen-random-decoder baseline, WordNet labels), without the two UMAP word
    maps, which nothing read from this run depends on. Several minutes: only slow tests use it."""
    from compute.config import Plan, load_plan
    from compute.pipeline import precompute

    cfg = next(r for r in load_plan().runs if r.model == "glove-6b-50d")
    cfg = cfg.model_copy(update={"projections": cfg.projections.model_copy(update={"umap3d": False, "umap2d": False})})
    root = tmp_path_factory.mktemp("glove-default")
    ids = precompute(Plan(runs=[cfg]), store=root, device="cpu")
    return root, ids[0]


@pytest.fixture(scope="session")
def minilm_corpus(tmp_path_factory) -> list[str]:
    """The first 150 sentences of gensim's lee corpus, as a small real corpus file."""
    from compute.contextual import read_corpus

    sentences = read_corpus("lee")[:150]
    path = tmp_path_factory.mktemp("corpus") / "lee150.txt"
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return sentences, path


@pytest.fixture(scope="session")
def minilm_store(tmp_path_factory, minilm_corpus):
    """Every layer of the bundled MiniLM on a small corpus: 7 run files with SAEs."""
    from compute.pipeline import precompute

    sentences, corpus = minilm_corpus
    root = tmp_path_factory.mktemp("minilm-store")
    run = {
        "name": "minilm-small",
        "model": "minilm-l6",
        "layers": "all",
        "corpus": str(corpus),
        "vocabulary": {"top_n": 300, "concept_groups": "default"},
        "geometry": {"token_sample": 600, "clusters": 3, "pcs_removed": 4},
        "projections": {"n_neighbors": 10, "umap_epochs": 50},
        "sae": {"arch": "topk", "d_sae": 128, "k": 4, "seed": 0, "steps": 300},
    }
    ids = precompute(parse_plan({"runs": [run]}), store=root, device="cpu")
    return root, ids


@pytest.fixture
def minilm_app(minilm_store):
    """The dashboard app reading the session MiniLM store: (app, root, run ids)."""
    from dashboard.app import app
    from dashboard.lib import store

    root, ids = minilm_store
    store.configure(root)
    yield app, root, ids
    store.configure(None)


@pytest.fixture(scope="session")
def compare_store(tmp_path_factory, glove_store, minilm_store):
    """The session's small GloVe run and MiniLM L0 and L6 (hard links, read only) in one store, with the
    comparisons of GloVe vs MiniLM L6 and of MiniLM L0 vs L6 (compute/comparison.py). Returns (root, glove id,
    L0 id, L6 id)."""
    from helpers import linked_store

    from compute.comparison import compare_stored
    from store import Catalog

    glove_root, glove = glove_store
    minilm_root, minilm = minilm_store
    by_layer = {Catalog(minilm_root).open(i).layer: i for i in minilm}
    l0, l6 = by_layer[0], by_layer[max(by_layer)]
    root = linked_store(tmp_path_factory.mktemp("compare-store"), {glove_root: [glove], minilm_root: [l0, l6]})
    compare_stored(root, glove, l6)
    compare_stored(root, l0, l6)
    return root, glove, l0, l6


@pytest.hookimpl(optionalhook=True)
def pytest_setup_options():
    """dash[testing]'s browser: headless Chromium (tests/test_dashboard.py). Selenium 3.141 passes a
    sentinel timeout that urllib3 2 rejects, so give it a real one."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.remote.remote_connection import RemoteConnection

    RemoteConnection.set_timeout(120)
    options = Options()
    options.binary_location = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        "--force-prefers-reduced-motion",  # Bootstrap scrolls smoothly otherwise, and clicks land mid-scroll
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    return options


def pytest_collection_modifyitems(items):
    """Every test that drives headless Chromium (dash_duo) is marked `browser`, so `-m "not browser"` skips it."""
    for item in items:
        if "dash_duo" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
