"""The job queue, for real: a redis-server on loopback and `lexiscope worker` processes (distributed
mode), the embedded SQLite broker with its local worker, the admin policy, cancel, crash and GPU OOM."""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compute.config import PlanError, parse_run
from jobs import client
from jobs.liveness import heartbeat_timeout
from jobs.worker import run_job, run_with_oom_retry
from store import Catalog
from store import jobs as jobstore
from store.schema import TMP_PREFIX, runs_dir

REPO = Path(__file__).resolve().parents[1]
# The SAE stage needs compute.features (the SAE issue); without it the jobs run without an SAE.
TINY_SAE = (
    {"arch": "topk", "d_sae": 64, "k": 4, "steps": 30, "batch_size": 256}
    if importlib.util.find_spec("compute.features")
    else None
)
# A few seconds per job: 500 GloVe words, no UMAP, a tiny SAE.
SMALL = {
    "model": "glove-6b-50d",
    "vocabulary": {"top_n": 500},
    "projections": {"umap3d": False, "umap2d": False},
    "sae": TINY_SAE,
}
# Without the SAE stages, where a job's behaviour does not depend on them (it is faster).
NO_SAE = {**SMALL, "sae": None}
# Long enough to be caught mid-run: 5,000 words with both UMAP maps.
LONG = {"model": "glove-6b-50d", "vocabulary": {"top_n": 5000}, "projections": {"umap_epochs": 200}, "sae": None}


def with_seed(cfg: dict, seed: int) -> dict:
    return {**cfg, "geometry": {"seed": seed}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(fn, timeout: float, what: str, every: float = 0.25):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def job(root, job_id):
    return next(j for j in client.list_jobs(root) if j["id"] == job_id)


def no_partial_files(root) -> list[str]:
    d = runs_dir(root)
    return [p.name for p in d.iterdir() if p.name.startswith(TMP_PREFIX)] if d.is_dir() else []


@pytest.fixture(autouse=True)
def _no_broker_env(monkeypatch):
    for var in (
        "LEXISCOPE_BROKER_URL",
        "LEXISCOPE_MODELS",
        "LEXISCOPE_JOBS_POLICY",
        "LEXISCOPE_MAX_VOCABULARY",
        "LEXISCOPE_MAX_SAE_STEPS",
        "LEXISCOPE_MAX_JOBS_PER_USER",
        "LEXISCOPE_STORE",
    ):
        monkeypatch.delenv(var, raising=False)


class Workers:
    """`lexiscope worker` subprocesses, each logging to a file; all killed at the end."""

    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, []

    def start(self, root, broker=None) -> subprocess.Popen:
        log = self.tmp / f"worker-{len(self.procs)}.log"
        cmd = [sys.executable, "-m", "lexiscope", "worker", "--store", str(root), "--device", "cpu"]
        if broker:
            cmd += ["--broker", broker]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        proc.log = log
        self.procs.append(proc)
        return proc

    def wait_ready(self, proc):
        wait_for(lambda: proc.poll() is not None or b" ready." in proc.log.read_bytes(), 60, "a worker to start")
        assert proc.poll() is None, proc.log.read_text()[-3000:]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


@pytest.fixture
def workers(tmp_path):
    w = Workers(tmp_path)
    yield w
    w.stop()


class RedisServer:
    """A redis-server on loopback, with no persistence (as a default install of Redis may run): a restart
    empties it."""

    def __init__(self, tmp: Path):
        self.exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(self.exe).is_file():
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.tmp, self.port, self.proc = tmp, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import redis

        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.exe, *args, "--dir", str(self.tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        server = redis.Redis(port=self.port)

        def up():
            try:
                return server.ping()
            except redis.ConnectionError:
                return False

        wait_for(up, 20, "redis-server")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url


# -- distributed mode -----------------------------------------------------------------------------


@pytest.mark.slow
def test_redis_two_workers_share_jobs_and_a_killed_worker_fails_its_job(tmp_path, redis_url, workers):
    root = tmp_path / "store"
    procs = [workers.start(root, redis_url) for _ in range(2)]
    for p in procs:
        workers.wait_ready(p)
    pids = {p.pid for p in procs}

    cfgs = [with_seed(SMALL, seed) for seed in range(4)]
    ids = [client.submit(c, root, user="tester", trusted=True, broker=redis_url)["id"] for c in cfgs]
    done = wait_for(
        lambda: all(job(root, i)["status"] in jobstore.TERMINAL for i in ids) and [job(root, i) for i in ids],
        180,
        "4 jobs to finish",
    )
    assert [j["status"] for j in done] == ["done"] * 4, [j["error"] for j in done]
    assert {j["pid"] for j in done} == pids, "both workers should have taken work"
    assert all(j["progress"] == 1.0 and len(j["run_ids"]) == 1 for j in done)

    # Every job's run is in the store, and is the run of that job's config (its seed).
    cat = Catalog(root)
    assert sorted(cat.run_ids()) == sorted(j["run_ids"][0] for j in done)
    for j, cfg in zip(done, cfgs):
        run = cat.open(j["run_ids"][0])
        assert run.config["geometry"]["seed"] == cfg["geometry"]["seed"]
        assert run.attrs["config_hash"] == parse_run(cfg).config_hash(0)

    # Kill a worker mid-job: the job is marked failed, nothing of it reaches the store.
    long_cfg = with_seed(LONG, 7)
    long_id = client.submit(long_cfg, root, user="tester", trusted=True, broker=redis_url)["id"]
    running = wait_for(
        lambda: (j := job(root, long_id))["status"] == "running" and " L0 " in (j["stage"] or "") and j,
        120,
        "the long job to reach its first layer stage",
    )
    assert running["pid"] in pids
    os.kill(running["pid"], signal.SIGKILL)
    failed = wait_for(
        lambda: (j := job(root, long_id))["status"] != "running" and j,
        heartbeat_timeout() + 10,
        "the killed job to be marked failed",
    )
    assert failed["status"] == "failed"
    assert "crashed or was killed" in failed["error"]
    assert Catalog(root).find_hash(parse_run(long_cfg).config_hash(0)) is None
    assert no_partial_files(root) == []
    assert len(Catalog(root).run_ids()) == 4


def started_lines(workers, job_id: str) -> int:
    """How many times a worker began running `job_id` (jobs.worker.run_job logs it after its claim)."""
    return sum(p.log.read_text(errors="replace").count(f"job {job_id}: started by") for p in workers.procs)


@pytest.mark.slow
def test_a_killed_worker_fails_its_job_without_anyone_listing_and_the_other_goes_on(tmp_path, redis_url, workers):
    """Nobody lists the jobs here (no Jobs page, no `lexiscope jobs`: records are read raw, which reaps nothing):
    the surviving worker's reaper marks the killed worker's job failed, and that worker runs the next job."""
    root = tmp_path / "store"
    procs = [workers.start(root, redis_url) for _ in range(2)]
    for p in procs:
        workers.wait_ready(p)
    long_id = client.submit(with_seed(LONG, 11), root, trusted=True, broker=redis_url)["id"]
    running = wait_for(
        lambda: (j := jobstore.read_job(long_id, root))["status"] == "running" and " L0 " in (j["stage"] or "") and j,
        120,
        "the long job to reach its first layer stage",
    )
    killed = next(p for p in procs if p.pid == running["pid"])
    survivor = next(p for p in procs if p is not killed)
    os.kill(killed.pid, signal.SIGKILL)
    t0 = time.monotonic()
    failed = wait_for(
        lambda: (j := jobstore.read_job(long_id, root))["status"] != "running" and j, 30, "the reaper to fail the job"
    )
    seconds = time.monotonic() - t0
    print(f"\nkill -9 of a worker mid-job -> job marked failed by the other worker's reaper in {seconds:.1f} s")
    assert failed["status"] == "failed" and "crashed or was killed" in failed["error"]
    assert seconds < 15, "bounded: one reaper round (<= 5 s) after the kill, plus a shared machine's slack"
    assert "reaper: job" in survivor.log.read_text(errors="replace")
    assert no_partial_files(root) == []

    next_id = client.submit(NO_SAE, root, trusted=True, broker=redis_url)["id"]
    done = wait_for(lambda: (j := jobstore.read_job(next_id, root))["status"] in jobstore.TERMINAL and j, 120, "a job")
    assert done["status"] == "done" and done["pid"] == survivor.pid, done["error"]


@pytest.mark.slow
def test_a_redis_restart_mid_queue_loses_no_job_and_runs_none_twice(tmp_path, redis_server, workers):
    """Redis without persistence restarts while both workers are busy and four jobs wait in it: the queued
    messages are gone with it. The workers reconnect, publish the store's queued jobs again, and every job
    runs exactly once (a duplicate message finds its job claimed and is skipped)."""
    root = tmp_path / "store"
    url = redis_server.url
    procs = [workers.start(root, url) for _ in range(2)]
    for p in procs:
        workers.wait_ready(p)
    medium = {**NO_SAE, "vocabulary": {"top_n": 4000}}  # busy long enough to span the restart
    cfgs = [with_seed(medium, s) for s in range(2)] + [with_seed(NO_SAE, s) for s in range(2, 6)]
    ids = [client.submit(c, root, trusted=True, broker=url)["id"] for c in cfgs]
    wait_for(
        lambda: sum(jobstore.read_job(i, root)["status"] == "running" for i in ids) == 2,
        120,
        "both workers to be running a job",
    )
    import redis

    queued_before = redis.Redis(port=redis_server.port).llen("lexiscope")
    redis_server.stop()
    t_down = time.monotonic()
    time.sleep(2)
    redis_server.start()
    t_up = time.monotonic()
    assert redis.Redis(port=redis_server.port).llen("lexiscope") == 0, "the restarted Redis is empty"

    def next_start():
        started = [jobstore.read_job(i, root)["started"] for i in ids[2:]]
        return any(started) and time.monotonic()

    resumed = wait_for(next_start, 120, "a queued job to start after the restart")
    done = wait_for(
        lambda: (
            all(jobstore.read_job(i, root)["status"] in jobstore.TERMINAL for i in ids)
            and [jobstore.read_job(i, root) for i in ids]
        ),
        300,
        "every job to finish",
    )
    first_free = max(jobstore.age_seconds(j["ended"]) for j in done[:2])  # the jobs running through the restart
    first_next = max(jobstore.age_seconds(j["started"]) for j in done[2:])
    print(
        f"\nredis restart ({t_up - t_down:.1f} s down, {queued_before} messages waiting): first queued job started "
        f"{resumed - t_up:.1f} s after redis came back, {first_free - first_next:.2f} s after the first worker was "
        f"free again; all {len(ids)} jobs done {time.monotonic() - t_up:.1f} s after"
    )
    assert [j["status"] for j in done] == ["done"] * len(ids), [j["error"] for j in done]
    assert queued_before >= 3
    assert {started_lines(workers, i) for i in ids} == {1}, "every job ran exactly once"
    run_ids = [j["run_ids"][0] for j in done]
    assert sorted(Catalog(root).run_ids()) == sorted(set(run_ids)) and len(set(run_ids)) == len(ids)
    assert all(p.poll() is None for p in procs), "both workers survived the restart"


# -- embedded mode: the local worker, cancel -------------------------------------------------------


@pytest.mark.slow
def test_embedded_worker_runs_a_job_and_cancel_stops_a_running_one(tmp_path):
    root = tmp_path / "store"
    proc = client.ensure_embedded_worker(root, device="cpu")
    try:
        assert proc is not None and client.ensure_embedded_worker(root) is None, "one local worker per store"
        assert client.embedded_worker_pid(root) == proc.pid

        long_cfg = with_seed(LONG, 3)
        long_id = client.submit(long_cfg, root, user="ann")["id"]
        wait_for(lambda: "enhancement" in (job(root, long_id)["stage"] or ""), 120, "the job to run")
        client.cancel(long_id, root)
        stopped = wait_for(lambda: (j := job(root, long_id))["status"] != "running" and j, 60, "the job to stop")
        assert stopped["status"] == "cancelled" and stopped["error"] is None
        assert Catalog(root).find_hash(parse_run(long_cfg).config_hash(0)) is None
        assert no_partial_files(root) == []
        assert proc.poll() is None, "cancelling a job must not stop the worker"

        # The same worker then runs the next job to the end.
        small_id = client.submit(NO_SAE, root, user="ann")["id"]
        done = wait_for(lambda: (j := job(root, small_id))["status"] in jobstore.TERMINAL and j, 120, "a job")
        assert done["status"] == "done", done["error"]
        assert Catalog(root).run_ids() == done["run_ids"]
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_cancel_before_start_skips_the_job(tmp_path):
    root = tmp_path / "store"
    job_id = client.submit(SMALL, root)["id"]  # no worker: it stays queued
    assert client.cancel(job_id, root)["status"] == "cancelled"
    # A worker that gets the message later (here: run in-process) skips it and writes nothing.
    assert run_job(job_id, root, device="cpu")["status"] == "cancelled"
    assert not runs_dir(root).exists() or not any(runs_dir(root).iterdir())


def test_a_cancel_that_arrives_as_the_run_is_written_removes_it(tmp_path, monkeypatch):
    """The window after the writer's rename: the job ends cancelled and the finished file is removed."""
    import store.writer

    root = tmp_path / "store"
    job_id = jobstore.create_job(parse_run(NO_SAE).model_dump(mode="json"), root)["id"]
    exit_ = store.writer.RunWriter.__exit__

    def exit_then_cancel(self, *exc):
        out = exit_(self, *exc)
        assert self.final.exists()
        jobstore.request_cancel(job_id, root)
        return out

    monkeypatch.setattr(store.writer.RunWriter, "__exit__", exit_then_cancel)
    assert run_job(job_id, root, device="cpu")["status"] == "cancelled"
    assert list(runs_dir(root).iterdir()) == []


# -- safety ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"model": "bert-base-uncased"}, "model: 'bert-base-uncased' is not on this server's model list"),
        ({"model": "/home/admin/secret.model"}, "is not on this server's model list"),
        ({"model": "glove-6b-50d", "vocabulary": {"top_n": 400000}}, "vocabulary.top_n: 400,000 words is over"),
        ({"model": "glove-6b-50d", "vocabulary": {"top_n": 1000, "words": ["w"] * 60000}}, "vocabulary.top_n"),
        ({"model": "glove-6b-50d", "sae": {"steps": 10**6}}, "sae.steps: 1,000,000 steps is over"),
        ({"model": "glove-6b-50d", "sae": {"d_sae": 10**6}}, "sae.d_sae: 1,000,000 features is over"),
        ({"model": "glove-6b-50d", "sae": {"expansion": 500}}, "sae.expansion: 500 is over"),
        ({"model": "glove-6b-50d", "sae": {"k": "many"}}, "run.sae.k: Input should be a valid integer"),
        ({"model": "glove-6b-50d", "colour": "red"}, "run.colour: Extra inputs are not permitted"),
        ({"layers": [0]}, "run.model: Field required"),
        ({"model": "glove-6b-50d", "vocabulary": {"word_lists": ["/etc/passwd"]}}, "vocabulary.word_lists"),
        ({"model": "glove-6b-50d", "vocabulary": {"concept_groups": "/etc/groups.yaml"}}, "concept_groups"),
        ({"model": "minilm-l6", "corpus": "/etc/passwd"}, "run.corpus"),
    ],
)
def test_unsafe_or_malformed_configs_are_refused_and_nothing_is_queued(tmp_path, cfg, message):
    root = tmp_path / "store"
    with pytest.raises(PlanError) as e:
        client.submit(cfg, root, user="mallory")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert jobstore.list_jobs(root) == []
    assert not (root / "queue.sqlite").exists()


def test_policy_from_env_and_yaml_and_the_per_user_cap(tmp_path, monkeypatch):
    root = tmp_path / "store"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("models: [minilm-l6]\nmax_jobs_per_user: 2\n")
    monkeypatch.setenv("LEXISCOPE_JOBS_POLICY", str(policy_file))
    with pytest.raises(PlanError, match="'glove-6b-50d' is not on this server's model list \\(minilm-l6\\)"):
        client.submit({"model": "glove-6b-50d"}, root)
    monkeypatch.setenv("LEXISCOPE_MODELS", "glove-6b-50d")  # env overrides the file
    inline_groups = {"pets": ["dog", "cat"], "fruit": ["apple", "pear"]}
    cfg = {**SMALL, "vocabulary": {"top_n": 0, "words": ["one", "two"], "concept_groups": inline_groups}}
    first = client.submit(cfg, root, user="bob")
    assert first["config"]["vocabulary"]["concept_groups"] == inline_groups
    client.submit(SMALL, root, user="bob")
    with pytest.raises(PlanError, match="user 'bob' already has 2 queued or running jobs \\(limit 2\\)"):
        client.submit(SMALL, root, user="bob")
    client.submit(SMALL, root, user="carol")  # the cap is per user
    client.cancel(first["id"], root)
    client.submit(SMALL, root, user="bob")  # a cancelled job frees a slot
    assert sorted(j["user"] for j in jobstore.list_jobs(root) if j["status"] == "queued") == ["bob", "bob", "carol"]
    monkeypatch.setenv("LEXISCOPE_MAX_VOCABULARY", "lots")
    with pytest.raises(PlanError, match="LEXISCOPE_MAX_VOCABULARY: 'lots' is not a whole number"):
        client.submit(SMALL, root, user="dave")


# -- crash detection without the worker's host ---------------------------------------------------


def test_a_stale_heartbeat_from_another_host_fails_the_job_and_removes_its_temp_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LEXISCOPE_HEARTBEAT_TIMEOUT", "30")
    root = tmp_path / "store"
    stale = jobstore.create_job(parse_run(SMALL).model_dump(mode="json"), root)["id"]
    fresh = jobstore.create_job(parse_run(SMALL).model_dump(mode="json"), root)["id"]
    old = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 45))
    jobstore.claim_job(stale, root, host="gpu-node-7", pid=4242, worker="w@gpu-node-7")
    jobstore.update_job(stale, root, heartbeat=old, stage="glove L0 sae")
    jobstore.claim_job(fresh, root, host="gpu-node-8", pid=4242, worker="w@gpu-node-8")
    runs_dir(root).mkdir(parents=True)
    tmp_file = runs_dir(root) / f"{TMP_PREFIX}glove-L0-abc-4242.h5"
    tmp_file.write_bytes(b"partial")
    os.utime(tmp_file, (time.time() - 60, time.time() - 60))

    by_id = {j["id"]: j for j in client.list_jobs(root)}
    assert by_id[stale]["status"] == "failed"
    assert "w@gpu-node-7 stopped during stage 'glove L0 sae'" in by_id[stale]["error"]
    assert by_id[fresh]["status"] == "running"
    assert not tmp_file.exists()


# -- GPU out of memory -----------------------------------------------------------------------------


def test_oom_retries_once_with_half_the_batch_sizes_then_fails_clearly(tmp_path, monkeypatch):
    import torch

    cfg = parse_run({**SMALL, "batch_size": 64, "sae": {"d_sae": 64, "batch_size": 256}})
    seen = []

    def oom_once(c):
        seen.append((c.batch_size, c.sae.batch_size))
        if len(seen) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return ["ok"]

    assert run_with_oom_retry(cfg, oom_once) == ["ok"]
    assert seen == [(64, 256), (32, 128)]

    # Through a job: the pipeline always runs out of memory -> failed, with both batch sizes named.
    import compute.pipeline

    def always_oom(c, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(compute.pipeline, "precompute_run", always_oom)
    root = tmp_path / "store"
    job_id = jobstore.create_job(cfg.model_dump(mode="json"), root)["id"]
    out = run_job(job_id, root, device="cpu")
    assert out["status"] == "failed"
    assert out["error"] == (
        "GPU out of memory at batch_size 64, sae.batch_size 256 and again at batch_size 32, "
        "sae.batch_size 128; lower the batch sizes, the SAE width or the vocabulary"
    )

    # Other errors are not retried.
    calls = []

    def broken(c):
        calls.append(c)
        raise ValueError("vocabulary: only 3 words are in model 'glove-6b-50d'")

    with pytest.raises(ValueError):
        run_with_oom_retry(cfg, broken)
    assert len(calls) == 1


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_precompute_queue_lists_and_cancels_jobs(tmp_path):
    from typer.testing import CliRunner

    from lexiscope import app

    root = tmp_path / "store"
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"runs": [{**SMALL, "name": "a"}, {**SMALL, "name": "b"}]}))
    runner = CliRunner()
    res = runner.invoke(app, ["precompute", str(plan), "--queue", "--store", str(root)])
    assert res.exit_code == 0, res.output
    queued = jobstore.list_jobs(root)
    assert sorted(j["config"]["name"] for j in queued) == ["a", "b"]
    assert all(j["status"] == "queued" and j["source"] == "cli" for j in queued)
    assert all(f"queued {j['id']}" in res.output for j in queued)

    res = runner.invoke(app, ["jobs", "--store", str(root)])
    assert res.exit_code == 0 and all(j["id"] in res.output for j in queued)
    res = runner.invoke(app, ["jobs", "--store", str(root), "--cancel", queued[0]["id"]])
    assert res.exit_code == 0 and "cancelled" in res.output
    assert jobstore.read_job(queued[0]["id"], root)["status"] == "cancelled"

    bad = tmp_path / "bad.yaml"
    bad.write_text("runs:\n  - model: glove-6b-50d\n    sae: {k: many}\n")
    res = runner.invoke(app, ["precompute", str(bad), "--queue", "--store", str(root)])
    assert res.exit_code == 2 and "bad.yaml.runs[0].sae.k" in res.output
    assert len(jobstore.list_jobs(root)) == 2
