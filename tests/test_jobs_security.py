"""The faults of the hostile review of the Jobs form (issue 16), each as it was found: a request that would
exhaust memory, the vocabulary cap bypassed by pasted groups, the per-user cap raced by parallel submits,
cancelling someone else's job or a finished one, and queued plans that differed from local ones."""

import base64
import json
import multiprocessing as mp
import os
import threading
import time

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from compute.config import PlanError, parse_run
from jobs import client
from jobs.policy import MAX_LAYERS, Policy, check_run
from jobs.worker import run_job
from store import Catalog
from store import jobs as jobstore

SMALL = {
    "model": "glove-6b-50d",
    "vocabulary": {"top_n": 500},
    "projections": {"umap3d": False, "umap2d": False},
    "sae": None,
}
ROUTE = "/_dash-update-component"
QUEUE_OUTPUT = "..jobs-message.children...jobs-refresh.data.."
CANCEL_PREFIX = "..jobs-message.children@"
FORM_STATES = (
    ("jobs-model", "glove-6b-50d"),
    ("jobs-name", ""),
    ("jobs-layers", "all"),
    ("jobs-vocab-mode", "top"),
    ("jobs-top-n", 2000),
    ("jobs-words", ""),
    ("jobs-groups-source", "default"),
    ("jobs-groups-text", ""),
    ("jobs-sae-arch", "none"),
    ("jobs-d-sae", 256),
    ("jobs-k", 8),
    ("jobs-l1", 5.0),
    ("jobs-steps", 1000),
    ("jobs-umap", False),
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in (
        "LEXISCOPE_BROKER_URL",
        "LEXISCOPE_MODELS",
        "LEXISCOPE_JOBS_POLICY",
        "LEXISCOPE_MAX_VOCABULARY",
        "LEXISCOPE_MAX_JOBS_PER_USER",
        "LEXISCOPE_AUTH",
        "LEXISCOPE_STORE",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def dash_app(tmp_path):
    from dashboard.app import app
    from dashboard.lib import store

    root = tmp_path / "store"
    root.mkdir()
    store.configure(root)
    http = app.server.test_client()
    assert http.get("/_dash-dependencies").status_code == 200
    yield app, http, root
    store.configure(None)
    pid = client.embedded_worker_pid(root)
    if pid:
        os.kill(pid, 9)


def queue_form(http, headers=None, **values):
    """POST the Jobs form's Queue button as the browser does, with `values` over the form's defaults."""
    from dashboard.components.jobs_form import DEFAULTS
    from dashboard.pages.jobs import FIELDS

    ours = dict(FORM_STATES)  # every field the callback reads, in its order; ours over the form's defaults
    states = [{"id": "jobs-refresh", "property": "data", "value": 0}]
    for field in FIELDS:
        cid = f"jobs-{field.replace('_', '-')}"
        states.append({"id": cid, "property": "value", "value": values.get(cid, ours.get(cid, DEFAULTS.get(field)))})
    body = {
        "output": QUEUE_OUTPUT,
        "outputs": [{"id": "jobs-message", "property": "children"}, {"id": "jobs-refresh", "property": "data"}],
        "inputs": [{"id": "jobs-submit", "property": "n_clicks", "value": 1}],
        "state": states,
        "changedPropIds": ["jobs-submit.n_clicks"],
    }
    return http.post(ROUTE, json=body, headers=headers or {})


def press_cancel(http, job_id, headers=None):
    key = next(cb["output"] for cb in http.get("/_dash-dependencies").json if cb["output"].startswith(CANCEL_PREFIX))
    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in key[2:-2].split("...")]
    cid = {"job": job_id, "type": "jobs-cancel"}
    body = {
        "output": key,
        "outputs": outputs,
        "inputs": [[{"id": cid, "property": "n_clicks", "value": 1}]],
        "state": [{"id": "jobs-refresh", "property": "data", "value": 0}],
        "changedPropIds": [json.dumps(cid, sort_keys=True, separators=(",", ":")) + ".n_clicks"],
    }
    r = http.post(ROUTE, json=body, headers=headers or {})
    assert r.status_code == 200, r.status_code
    return r.get_data(as_text=True)


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- 1. one request exhausts memory ------------------------------------------------------------------------


class PeakRSS:
    """The highest resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.before = self.peak = self.proc.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.growth_mb = (self.peak - self.before) / 2**20


def test_a_huge_layer_range_is_refused_at_once_without_allocating(dash_app):
    _, http, root = dash_app
    queue_form(http, **{"jobs-layers": "top"})  # warm up: the first request imports what it needs
    with PeakRSS() as m:
        r = queue_form(http, **{"jobs-layers": "0-99999999"})
    print(f"\n'0-99999999' refused in {m.seconds * 1000:.1f} ms; peak resident memory +{m.growth_mb:.1f} MB")
    assert r.status_code == 200
    assert "layers: 99999999 is too high; layer numbers go up to 127 at most" in r.get_data(as_text=True)
    assert m.seconds < 1.0, f"took {m.seconds:.2f} s"
    assert m.growth_mb < 50, f"resident memory grew by {m.growth_mb:.0f} MB"
    assert [j for j in jobstore.list_jobs(root) if j["status"] == "queued"] == []


@pytest.mark.parametrize(
    "layers, message",
    [
        ([3], "run.layers: 'glove-6b-50d' is a static model; it has only layer 0"),
        ([0, 1], "static model"),
        (list(range(MAX_LAYERS + 1)), "run.layers: layer numbers go up to 127 at most"),
    ],
)
def test_layers_a_model_cannot_have_are_refused_at_submit(tmp_path, layers, message):
    model = "minilm-l6" if len(layers) > 2 else "glove-6b-50d"
    root = tmp_path / "store"
    with pytest.raises(PlanError, match=message):
        client.submit({**SMALL, "model": model, "layers": layers}, root)
    with pytest.raises(PlanError, match=message):  # trusted (CLI) submissions too: the worker would fail anyway
        client.submit({**SMALL, "model": model, "layers": layers}, root, trusted=True)
    assert jobstore.list_jobs(root) == []
    assert check_run({**SMALL, "layers": [0]}).layers == [0]


def test_every_form_field_has_a_size_cap(dash_app):
    _, http, root = dash_app
    cases = {
        "jobs-name": ("n" * 101, "name: 101 characters is over the limit of 100"),
        "jobs-words": ("w " * 600_000, "words: 1,200,000 characters is over the limit of 1,000,000"),
        "jobs-groups-text": ("g: " + "w " * 600_000, "groups_text: 1,200,003 characters is over the limit"),
        "jobs-layers": ("0," * 150, "layers: 300 characters is over the limit of 200"),
        "jobs-top-n": ("9" * 30, "vocabulary.top_n: '99999999999999999999' is not a number"),
    }
    for field, (value, message) in cases.items():
        extra = {"jobs-groups-source": "paste"} if field == "jobs-groups-text" else {}
        r = queue_form(http, **{field: value, **extra})
        assert r.status_code == 200 and message in r.get_data(as_text=True), (field, r.get_data(as_text=True)[:300])
    # YAML aliases would blow a short text up into a huge one: refused before they are expanded.
    bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b]"
    r = queue_form(http, **{"jobs-groups-source": "paste", "jobs-groups-text": bomb})
    assert "YAML anchors and aliases" in r.get_data(as_text=True)
    assert jobstore.list_jobs(root) == []


def test_the_web_server_caps_the_whole_request(dash_app):
    from dashboard.guards import MAX_REQUEST_BYTES

    _, http, _ = dash_app
    assert queue_form(http, **{"jobs-words": "w" * (MAX_REQUEST_BYTES + 10)}).status_code == 413


# -- 2. the vocabulary cap and pasted concept groups --------------------------------------------------------


def test_pasted_group_words_count_against_the_vocabulary_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("LEXISCOPE_MAX_VOCABULARY", "1000")
    root = tmp_path / "store"
    big_group = {"many": [f"word{i}" for i in range(4000)]}
    cfg = {**SMALL, "vocabulary": {"top_n": 500, "concept_groups": big_group}}
    with pytest.raises(PlanError) as e:
        client.submit(cfg, root)
    assert str(e.value) == (
        "run.vocabulary.top_n: 4,500 words is over this server's limit of 1,000 "
        "(500 top words + 4,000 pasted words and group words)"
    )
    # Not counted when the group words do not join the vocabulary; a small group fits.
    client.submit({**cfg, "vocabulary": {**cfg["vocabulary"], "include_group_words": False}}, root)
    client.submit({**SMALL, "vocabulary": {"top_n": 500, "concept_groups": {"few": ["dog", "cat"]}}}, root)
    assert len(jobstore.list_jobs(root)) == 2


# -- 3. the per-user queue limit under parallel submits -----------------------------------------------------


def _submit_in_child(root, barrier, results):
    barrier.wait()
    try:
        client.submit(SMALL, root, user="bob")
        results.put("queued")
    except Exception as e:  # noqa: BLE001 - reported to the parent, which names it
        results.put(f"{type(e).__name__}: {e}")


def test_parallel_submits_cannot_pass_the_per_user_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("LEXISCOPE_MAX_JOBS_PER_USER", "3")
    root = tmp_path / "store"
    client.cancel(client.submit(SMALL, root, user="someone-else")["id"], root)  # the queue's SQLite file exists
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_submit_in_child, args=(root, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert outcomes.count("queued") == 3, outcomes
    assert all("already has 3 queued or running jobs (limit 3)" in o for o in outcomes if o != "queued"), outcomes
    assert len([j for j in jobstore.list_jobs(root) if j["user"] == "bob" and j["status"] == "queued"]) == 3


# -- 4. who may cancel --------------------------------------------------------------------------------------


def test_only_the_owner_or_an_admin_may_cancel(tmp_path, monkeypatch):
    root = tmp_path / "store"
    policy = tmp_path / "policy.yaml"
    policy.write_text("admins: [carol]\n")
    monkeypatch.setenv("LEXISCOPE_JOBS_POLICY", str(policy))
    assert Policy.load().admins == ["carol"]
    a1, a2, a3 = (client.submit(SMALL, root, user="alice")["id"] for _ in range(3))
    with pytest.raises(client.NotAllowed, match=f"job {a1} belongs to alice; only its owner or an admin"):
        client.cancel(a1, root, user="bob")
    assert jobstore.read_job(a1, root)["status"] == "queued" and not jobstore.read_job(a1, root)["cancel_requested"]
    assert client.cancel(a1, root, user="alice")["status"] == "cancelled"
    assert client.cancel(a2, root, user="carol")["status"] == "cancelled"  # an admin
    assert client.cancel(a3, root)["status"] == "cancelled"  # the CLI: whoever can run it owns the store


def test_cancelling_a_finished_job_says_so_and_changes_nothing(tmp_path):
    root = tmp_path / "store"
    job_id = client.submit(SMALL, root, user="alice")["id"]
    jobstore.claim_job(job_id, root, worker="w", host="h", pid=1)
    jobstore.update_job(job_id, root, status="done", stage="done", progress=1.0, run_ids=["r"], ended="t")
    before = jobstore.read_job(job_id, root)
    with pytest.raises(client.JobFinished, match=f"job {job_id} has already finished \\(done\\); nothing was changed"):
        client.cancel(job_id, root, user="alice")
    assert jobstore.read_job(job_id, root) == before
    assert not (jobstore.jobs_dir(root) / f"{job_id}.cancel").exists()

    from lexiscope import app

    res = CliRunner().invoke(app, ["jobs", "--store", str(root), "--cancel", job_id])
    assert res.exit_code == 1 and "has already finished (done); nothing was changed" in res.output
    assert jobstore.read_job(job_id, root) == before


def test_the_jobs_page_shows_owners_and_refuses_other_users_cancels(dash_app, monkeypatch):
    from dash import html

    _, http, root = dash_app
    monkeypatch.setenv("LEXISCOPE_AUTH", "alice:a1,bob:b2")  # the app checks passwords; here: who is asking
    alice_job = client.submit(SMALL, root, user="alice")["id"]

    from dashboard.app import app
    from dashboard.pages.jobs import job_list

    def rendered(user, password):
        with app.server.test_request_context("/jobs", headers=basic(user, password)):
            listed = job_list(client.list_jobs(root))
            return json.dumps(html.Div(listed).to_plotly_json(), default=lambda o: o.to_plotly_json())

    as_bob, as_alice = rendered("bob", "b2"), rendered("alice", "a1")
    assert "lx-job-owner" in as_bob and '"alice"' in as_bob  # the owner column
    assert '"jobs-cancel"' not in as_bob and '"jobs-cancel"' in as_alice  # Cancel only for who may use it

    answer = press_cancel(http, alice_job, basic("bob", "b2"))  # a forged click
    assert f"job {alice_job} belongs to alice" in answer
    assert jobstore.read_job(alice_job, root)["status"] == "queued"
    assert "cancelled" in press_cancel(http, alice_job, basic("alice", "a1"))
    assert jobstore.read_job(alice_job, root)["status"] == "cancelled"
    assert "has already finished (cancelled)" in press_cancel(http, alice_job, basic("alice", "a1"))


# -- 6. queued plans run as local ones ----------------------------------------------------------------------


def _vector_file(path):
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "tiger", "red", "blue", "green", "one", "two", "three", "four", "five", "six"] * 3
    words = [f"{w}{i // 12 or ''}" for i, w in enumerate(words)]
    path.write_text("".join(f"{w} {' '.join(f'{v:.5f}' for v in rng.normal(size=6))}\n" for w in words))


def test_queued_corpus_lists_keep_named_sources_and_make_files_absolute(tmp_path, monkeypatch):
    """The default plan's corpus is a list (`[lee, "stsb:en"]`): `demo` and `--queue` must take it as it is."""
    from jobs.cli import absolute_paths

    (tmp_path / "mine.txt").write_text("A sentence of my own.\n")
    monkeypatch.chdir(tmp_path)
    listed = absolute_paths(parse_run({"model": "minilm-l6", "corpus": ["lee", "stsb:en", "mine.txt"]}))
    assert listed.corpus == ["lee", "stsb:en", str(tmp_path / "mine.txt")]
    assert absolute_paths(parse_run({"model": "minilm-l6", "corpus": "mine.txt"})).corpus == str(tmp_path / "mine.txt")
    assert absolute_paths(parse_run({"model": "minilm-l6", "corpus": "stsb:en"})).corpus == "stsb:en"


def test_a_queued_plan_with_relative_paths_runs_like_precompute(tmp_path, monkeypatch):
    from lexiscope import app

    work = tmp_path / "work"
    work.mkdir()
    _vector_file(work / "vecs.txt")
    plan = {
        "runs": [
            {
                "model": "vecs.txt",
                "vocabulary": {"top_n": 0, "words": ["cat", "dog", "tiger", "red", "blue", "one"]},
                "geometry": {"clusters": 2, "pcs_removed": 1},
                "projections": {"umap3d": False, "umap2d": False, "neighbors": 3},
                "sae": None,
            }
        ]
    }
    (work / "plan.yaml").write_text(json.dumps(plan))
    root = tmp_path / "store"
    monkeypatch.chdir(work)
    res = CliRunner().invoke(app, ["precompute", "plan.yaml", "--queue", "--store", str(root)])
    assert res.exit_code == 0, res.output
    (job,) = jobstore.list_jobs(root)
    assert job["config"]["model"] == str(work / "vecs.txt")
    monkeypatch.chdir(tmp_path)  # a worker runs elsewhere
    done = run_job(job["id"], root, device="cpu")
    assert done["status"] == "done", done["error"]
    first = Catalog(root).open(done["run_ids"][0])
    created = first.attrs["created"]
    first.close()

    # --force: honoured by the queued job (the run is computed again), not silently dropped.
    time.sleep(1.1)  # `created` has one-second resolution
    monkeypatch.chdir(work)
    res = CliRunner().invoke(app, ["precompute", "plan.yaml", "--queue", "--force", "--store", str(root)])
    assert res.exit_code == 0, res.output
    forced = next(j for j in jobstore.list_jobs(root) if j["id"] != job["id"])
    assert forced["force"] is True
    again = run_job(forced["id"], root, device="cpu")
    assert again["status"] == "done" and again["run_ids"] == done["run_ids"]
    assert Catalog(root).open(again["run_ids"][0]).attrs["created"] > created


def test_force_is_refused_from_untrusted_submitters(tmp_path):
    with pytest.raises(PlanError, match="force: only trusted submissions"):
        client.submit(SMALL, tmp_path / "store", force=True)


def test_the_policy_examples_keep_working():
    cfg = check_run({**SMALL, "vocabulary": {"top_n": 10, "words": ["a"]}}, Policy())
    assert cfg == parse_run({**SMALL, "vocabulary": {"top_n": 10, "words": ["a"]}})
