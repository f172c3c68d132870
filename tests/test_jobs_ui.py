"""The Jobs page end to end, in headless Chromium (dash_duo): the app in its default embedded mode (no
broker: a SQLite queue in the store and one local worker that the first submission starts) queues a
small GloVe run through the form, the progress bar reaches done, and the new run opens from the catalog.
Plus the form's pure functions, without a browser."""

import importlib.util
from urllib.parse import parse_qs, urlparse

import h5py
import pytest

from compute.config import PlanError, parse_run
from dashboard.components.jobs_form import config_form, form_config, parse_groups, parse_layers, run_groups
from jobs import client
from store import jobs as jobstore

HAS_SAE = importlib.util.find_spec("compute.features") is not None


@pytest.fixture
def embedded_app(tmp_path, monkeypatch):
    for var in ("LEXISCOPE_BROKER_URL", "LEXISCOPE_MODELS", "LEXISCOPE_JOBS_POLICY", "LEXISCOPE_AUTH"):
        monkeypatch.delenv(var, raising=False)
    from dashboard.app import app
    from dashboard.lib import store

    root = tmp_path / "store"
    root.mkdir()
    store.configure(root)
    yield app, root
    store.configure(None)
    pid = client.embedded_worker_pid(root)
    if pid:
        import os
        import signal

        os.kill(pid, signal.SIGKILL)


def _set(dash_duo, selector, text):
    el = dash_duo.find_element(selector)
    el.clear()
    el.send_keys(text)


def _select(dash_duo, selector, value):
    dash_duo.driver.execute_script(
        "const s = document.querySelector(arguments[0]);"
        "const set = Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, 'value').set;"
        "set.call(s, arguments[1]); s.dispatchEvent(new Event('change', {bubbles: true}));",
        selector,
        value,
    )


def test_queue_a_run_from_the_form_watch_it_finish_and_open_it(dash_duo, embedded_app):
    app, root = embedded_app
    dash_duo.driver.set_window_size(1400, 1000)
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/jobs")
    # Bootstrap scrolls smoothly: WebDriver's scroll to an element would still be moving when its click lands.
    dash_duo.driver.execute_script("document.documentElement.style.scrollBehavior = 'auto'")
    dash_duo.wait_for_element("#jobs-form", timeout=20)
    dash_duo.wait_for_element("#jobs-empty", timeout=10)
    assert dash_duo.find_element("#jobs-model").get_attribute("value") == "glove-6b-50d"

    # Over the vocabulary cap: refused with the one-line message, nothing queued.
    _set(dash_duo, "#jobs-top-n", "100000")
    dash_duo.find_element("#jobs-submit").click()
    dash_duo.wait_for_contains_text("#jobs-error", "vocabulary.top_n: 100,000 words is over", timeout=20)
    assert jobstore.list_jobs(root) == []

    # A small run: 2,000 words, pasted concept groups, a small SAE, no UMAP.
    _set(dash_duo, "#jobs-top-n", "2000")
    _select(dash_duo, "#jobs-groups-source", "paste")
    _set(dash_duo, "#jobs-groups-text", "pets: dog, cat, horse\nfruit: apple, pear, banana")
    _select(dash_duo, "#jobs-sae-arch", "topk" if HAS_SAE else "none")
    _set(dash_duo, "#jobs-d-sae", "128")
    _set(dash_duo, "#jobs-k", "4")
    _set(dash_duo, "#jobs-steps", "100")
    dash_duo.find_element("#jobs-umap").click()
    dash_duo.find_element("#jobs-submit").click()
    queued = dash_duo.wait_for_element("#jobs-queued", timeout=20)
    job_id = queued.get_attribute("data-job")
    assert client.embedded_worker_pid(root), "the first job starts the local worker"

    # The live list: the job's row goes to done with a full progress bar.
    dash_duo.wait_for_element(f'#job-{job_id}[data-status="done"]', timeout=180)
    assert dash_duo.find_element(f"#job-{job_id} .progress-bar").text == "100%"
    job = jobstore.read_job(job_id, root)
    assert job["status"] == "done" and job["user"] == "anonymous" and len(job["run_ids"]) == 1
    run_id = job["run_ids"][0]
    assert dash_duo.find_element(f"#job-{job_id} .lx-job-run").text == run_id

    # The run is in the store with what the form asked for (read back with plain h5py).
    with h5py.File(root / "runs" / f"{run_id}.h5", "r") as f:
        words = list(f["words/text"].asstr()[()])
        names = list(f["groups/names"].asstr()[()])
        group = f["words/group"][()]
        assert ("sae" in f) == HAS_SAE
        if HAS_SAE:
            assert f["sae/W_dec"].shape == (128, 50)
    assert names == ["pets", "fruit"]
    assert {w for w, g in zip(words, group) if g == 0} == {"dog", "cat", "horse"}
    assert 1900 <= len(words) <= 2010

    # The catalog (Runs page) lists it; its link opens the run.
    dash_duo.find_element("#nav-runs").click()
    link = dash_duo.wait_for_element(f'#runs-table a[href*="{run_id}"]', timeout=20)
    link.click()
    dash_duo.wait_for_element("#words-search", timeout=20)
    url = urlparse(dash_duo.driver.current_url)
    assert url.path == "/words" and parse_qs(url.query)["run"] == [run_id]
    assert not dash_duo.find_elements("#lx-error")

    # "Train another SAE on this run" (on the Features page): the form comes back prefilled from the run.
    dash_duo.find_element("#nav-features").click()
    dash_duo.wait_for_element("#train-another-sae", timeout=20).click()
    dash_duo.wait_for_element("#jobs-form", timeout=20)
    assert parse_qs(urlparse(dash_duo.driver.current_url).query)["from_run"] == [run_id]
    assert dash_duo.find_element("#jobs-top-n").get_attribute("value") == "2000"
    assert dash_duo.find_element("#jobs-groups-source").get_attribute("value") == "paste"
    assert "pets: dog, cat, horse" in dash_duo.find_element("#jobs-groups-text").get_attribute("value")
    if HAS_SAE:
        assert dash_duo.find_element("#jobs-d-sae").get_attribute("value") == "128"


# -- the form's pure functions ---------------------------------------------------------------------


def test_form_values_build_a_valid_config_and_back():
    values = dict(
        model="minilm-l6",
        layers="0, 3-4",
        vocab_mode="words",
        words="dog cat,\nhorse dog",
        groups_source="paste",
        groups_text="pets: dog, cat\nfarm: [horse, cow]",
        sae_arch="relu_l1",
        d_sae="512",
        l1="2.5",
        steps="300",
        umap=False,
        name=" mine ",
    )
    cfg = form_config(values)
    assert cfg == {
        "model": "minilm-l6",
        "layers": [0, 3, 4],
        "name": "mine",
        "vocabulary": {
            "top_n": 0,
            "words": ["dog", "cat", "horse"],
            "concept_groups": {"pets": ["dog", "cat"], "farm": ["horse", "cow"]},
        },
        "sae": {"arch": "relu_l1", "d_sae": 512, "steps": 300, "l1": 2.5},
        "projections": {"umap3d": False, "umap2d": False},
    }
    run = parse_run(cfg).model_dump(mode="json")
    back = config_form(run, layer=3)
    assert form_config(back) == {**cfg, "layers": [3]}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": None}, "model: choose a model"),
        ({"model": "glove-6b-50d", "layers": "top"}, "layers: 'top' is not a layer number"),
        ({"model": "glove-6b-50d", "vocab_mode": "words", "words": " , "}, "vocabulary.words: paste at least one"),
        ({"model": "glove-6b-50d", "groups_source": "paste", "groups_text": "just words"}, "concept groups: write"),
        ({"model": "glove-6b-50d", "top_n": "lots"}, "vocabulary.top_n: 'lots' is not a number"),
        ({"model": "glove-6b-50d", "d_sae": ""}, "sae.d_sae: a number is needed"),
    ],
)
def test_form_errors_are_one_line(values, message):
    with pytest.raises(PlanError) as e:
        form_config(values)
    assert str(e.value).startswith(message)


def test_layers_groups_and_stored_groups():
    assert parse_layers("all") == "all" and parse_layers(" 6,0 2-3 ") == [0, 2, 3, 6]
    assert parse_groups("a: x y\nb: [z]") == {"a": ["x", "y"], "b": ["z"]}
    assert run_groups(["dog", "red", "cat", "sky"], [0, 1, 0, -1], ["animals", "colours"]) == {
        "animals": ["dog", "cat"],
        "colours": ["red"],
    }
    got = form_config({"model": "glove-6b-50d", "groups_source": "run:r1"}, stored_groups=lambda rid: {"from": [rid]})
    assert got["vocabulary"]["concept_groups"] == {"from": ["r1"]}


def test_basic_auth_protects_the_app_and_names_the_user():
    import base64

    from dash import Dash, html

    from dashboard.components.jobs_auth import current_user, enable_auth, parse_users

    assert parse_users("alice:s3cret, bob:a:b") == {"alice": "s3cret", "bob": "a:b"}
    with pytest.raises(ValueError, match="LEXISCOPE_AUTH: 'carol' needs the form user:password"):
        parse_users("carol")
    app = Dash("auth_test")
    app.layout = html.Div("hi")
    assert enable_auth(app, "") is False
    assert enable_auth(app, "alice:s3cret") is True
    client = app.server.test_client()
    assert client.get("/").status_code == 401
    bad = base64.b64encode(b"alice:wrong").decode()
    assert client.get("/", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    good = base64.b64encode(b"alice:s3cret").decode()
    assert client.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
    with app.server.test_request_context("/", headers={"Authorization": f"Basic {good}"}):
        assert current_user() == "alice"
    with app.server.test_request_context("/"):
        assert current_user() == "anonymous"


def test_every_sae_architecture_round_trips_through_the_form():
    """ "Train another SAE" on a run of any architecture gives a form that queues the same SAE again."""
    for sae in ({"arch": "topk", "k": 4}, {"arch": "batch_topk", "k": 4}, {"arch": "relu_l1", "l1": 2.0}):
        cfg = {"model": "glove-6b-50d", "sae": {**sae, "d_sae": 128, "steps": 100}}
        stored = parse_run(cfg).model_dump(mode="json")
        assert form_config(config_form(stored))["sae"] == cfg["sae"]
