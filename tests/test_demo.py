"""`lexiscope demo`: the plan's first run is computed before the dashboard serves, the others are queued as jobs
for the embedded worker and land in the catalog while it serves; a second demo queues nothing."""

import json
import os
import signal
import time

import pytest
from helpers import SMALL_GLOVE_RUN
from typer.testing import CliRunner

import lexiscope
from compute.config import parse_plan
from jobs import client
from jobs.cli import queue_runs
from store import Catalog
from store import jobs as jobstore

TINY_RUN = {  # a second run with its own config hash, quick for the worker
    "name": "glove-tiny",
    "model": "glove-6b-50d",
    "vocabulary": {"top_n": 300, "concept_groups": "default"},
    "geometry": {"clusters": 3, "pcs_removed": 2, "pairs": 200},
    "projections": {"umap3d": False, "umap2d": False, "neighbors": 5},
    "sae": None,
}


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    for var in ("LEXISCOPE_BROKER_URL", "LEXISCOPE_JOBS_POLICY", "LEXISCOPE_AUTH"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "store"
    yield root
    pid = client.embedded_worker_pid(root)
    if pid:
        os.kill(pid, signal.SIGKILL)


def _names(root) -> list[str]:
    """The plan names of the runs in the store's catalog (a run id is `<name>-L<layer>-<hash>`)."""
    return sorted(run_id.rsplit("-L", 1)[0] for run_id in Catalog(root).run_ids())


@pytest.mark.slow
def test_demo_serves_after_the_first_run_and_the_rest_lands_through_the_worker(tmp_path, embedded, monkeypatch):
    import dashboard.app  # noqa: F401  (builds the Dash app, which the pages register with)
    from dashboard.lib import store as dash_store
    from dashboard.pages import jobs as jobs_page
    from dashboard.pages import runs as runs_page

    root = embedded
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"runs": [SMALL_GLOVE_RUN, TINY_RUN]}))
    at_serve = []

    def fake_serve(store=None, host=None, port=None):  # what the dashboard would find when it starts
        at_serve.append(dict(names=_names(store), jobs=jobstore.list_jobs(store)))

    monkeypatch.setattr(lexiscope.dashboard_cli, "serve", fake_serve)
    args = ["demo", str(plan), "--store", str(root), "--device", "cpu"]
    res = CliRunner().invoke(lexiscope.app, args)
    assert res.exit_code == 0, res.output
    (seen,) = at_serve
    assert "glove-small" in seen["names"]
    (job,) = seen["jobs"]
    assert job["config"]["name"] == "glove-tiny" and job["source"] == "cli"
    assert client.embedded_worker_pid(root), "demo starts the store's worker"

    # A dashboard opened now: the first run on the Runs page, the second one's job on the Jobs page.
    dash_store.configure(root)
    try:
        assert "glove-small" in str(runs_page.layout())
        assert job["id"] in str(jobs_page.job_list())
        deadline = time.monotonic() + 600
        while (done := jobstore.read_job(job["id"], root))["status"] in jobstore.ACTIVE:
            assert time.monotonic() < deadline, f"job still {done['status']}: {done.get('stage')}"
            time.sleep(1)
        assert done["status"] == "done", done.get("error")
        # The same dashboard catalog, without a restart, now lists the landed run; the Jobs page shows it done.
        (landed,) = done["run_ids"]
        assert landed in set(dash_store.catalog().run_ids())
        assert landed in str(runs_page.layout())
        rows = {r.id: r.to_plotly_json()["props"] for r in jobs_page.job_list()}
        assert rows[f"job-{job['id']}"]["data-status"] == "done"
    finally:
        dash_store.configure(None)
    assert _names(root) == ["glove-small", "glove-tiny"]

    # A second demo on the complete store: nothing computed again, nothing queued, serves at once.
    files = {p.name: p.stat().st_mtime_ns for p in (root / "runs").iterdir()}
    res = CliRunner().invoke(lexiscope.app, args)
    assert res.exit_code == 0, res.output
    assert "not queued  glove-tiny: already in the store" in res.output
    assert len(at_serve) == 2 and len(jobstore.list_jobs(root)) == 1
    assert {p.name: p.stat().st_mtime_ns for p in (root / "runs").iterdir()} == files


def test_demo_does_not_queue_a_config_twice(tmp_path, embedded):
    """A job already queued (or running) for the same config is not duplicated; a different config is queued."""
    root = embedded
    plan = parse_plan({"runs": [TINY_RUN]})
    (first,) = queue_runs(plan, root, skip_done=True)
    renamed = parse_plan({"runs": [{**TINY_RUN, "name": "same-config-other-name"}]})
    assert queue_runs(renamed, root, skip_done=True) == []
    other = parse_plan({"runs": [{**TINY_RUN, "vocabulary": {"top_n": 200, "concept_groups": "default"}}]})
    assert len(queue_runs(other, root, skip_done=True)) == 1
    jobstore.request_cancel(first["id"], root)  # an ended job no longer blocks a new one
    assert len(queue_runs(plan, root, skip_done=True)) == 1
    assert len(jobstore.list_jobs(root)) == 3
