"""Running a job inside a worker: the pipeline with a progress reporter that writes the job record, a
heartbeat thread, one retry at half the batch sizes on GPU out-of-memory, and the worker process itself
(`lexiscope worker`: Celery's solo pool, one job at a time, no fork, so CUDA is first initialised in the
process that runs the job). Job state goes to the store's records (store/jobs.py).

Each worker also keeps the queue honest when others fail: a reaper thread marks the jobs of dead workers
failed (nobody needs to open the Jobs page), and after every (re)connection to the broker it publishes again
the jobs that the store holds as queued, so a broker that restarted empty loses none of them."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import h5py
import torch
from celery import bootsteps

from compute import comparison, pipeline
from compute.config import PlanError, RunConfig, parse_run
from compute.embeddings import ModelError
from compute.progress import Cancelled, Progress
from jobs import liveness
from jobs.celery_app import QUEUE, TASK_NAME, celery_app
from jobs.client import publish
from jobs.liveness import heartbeat_timeout, pid_alive
from jobs.policy import check_compare
from store import StoreError
from store import jobs as jobstore
from store.schema import RUN_SUFFIX, default_root, runs_dir

log = logging.getLogger("lexiscope.queue")


class GPUOutOfMemory(RuntimeError):
    """Out of GPU memory even after halving the batch sizes."""


# Rough share of the time per stage, for one overall progress fraction: the setup stages before the
# layers (start, width), then each layer's stages in the order the pipeline runs them.
_SETUP_STAGES = {"load model": (0.0, 0.05), "vocabulary": (0.05, 0.05), "extract": (0.1, 0.2)}
_LAYER_STAGES = {
    pipeline.WORD_STAGE: 0.3,
    "projections": 0.3,
    "sae": 0.3,
    "features": 0.05,
    "write": 0.05,
}
_LAYER_LABEL = re.compile(r" L(\d+) (.+)$")


class _Reporter:
    """The progress callback of a running job: writes stage + overall progress to the record (at most
    twice a second), and raises Cancelled once the job's cancel flag is set."""

    def __init__(self, job_id: str, root, cfg: RunConfig):
        self.job_id, self.root = job_id, root
        self.n_layers = len(cfg.layers) if isinstance(cfg.layers, list) else None
        self.layers_seen: list[str] = []
        self.contextual = False
        self.overall = 0.0
        self.last_write = self.last_check = 0.0
        self.stage = None

    def estimate(self, label: str, frac: float) -> float:
        m = _LAYER_LABEL.search(label)
        if not m:
            for name, (start, width) in _SETUP_STAGES.items():
                if label.endswith(name):
                    self.contextual |= name != "vocabulary"
                    return start + width * frac
            return 0.0
        layer, stage = m.groups()
        if layer not in self.layers_seen:
            self.layers_seen.append(layer)
        # layers 'all': the pipeline runs the last layer first, so the first layer seen gives the count
        n = self.n_layers or (int(self.layers_seen[0]) + 1 if self.contextual else 1)
        names = list(_LAYER_STAGES)
        done = sum(_LAYER_STAGES[s] for s in names[: names.index(stage)]) if stage in names else 0.0
        within = done + _LAYER_STAGES.get(stage, 0.0) * frac
        start = 0.3 if self.contextual else 0.1
        return start + (1 - start) * min(1.0, (len(self.layers_seen) - 1 + within) / max(1, n))

    def __call__(self, label: str, frac: float):
        now = time.monotonic()
        if frac in (0.0, 1.0) or now - self.last_check > 0.2:  # always at stage boundaries
            self.last_check = now
            if jobstore.cancel_requested(self.job_id, self.root):
                raise Cancelled(f"job {self.job_id} was cancelled")
        self.overall = max(self.overall, min(0.99, self.estimate(label, frac)))
        if label != self.stage or now - self.last_write > 0.5:
            self.stage, self.last_write = label, now
            jobstore.update_job(
                self.job_id, self.root, stage=label, progress=round(self.overall, 4), heartbeat=jobstore.now_iso()
            )


def beat_interval() -> float:
    """Seconds between heartbeats, and between the reaper's rounds."""
    return max(0.5, min(5.0, heartbeat_timeout() / 4))


class _Heartbeat(threading.Thread):
    """Writes the job's heartbeat every few seconds while the job runs (a dead worker stops writing)."""

    def __init__(self, job_id, root):
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.job_id, self.root = job_id, root
        self.stop = threading.Event()
        self.interval = beat_interval()

    def run(self):
        while not self.stop.wait(self.interval):
            try:
                jobstore.update_job(self.job_id, self.root, heartbeat=jobstore.now_iso())
            except Exception as e:  # a flaky shared disk must not kill the job; the next beat retries
                log.warning("heartbeat for %s failed: %s", self.job_id, e)


def is_oom(e: BaseException) -> bool:
    """A CUDA out-of-memory error (torch.cuda.OutOfMemoryError, or the RuntimeError older torch raised)."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower()
    )


def halve_batches(cfg: RunConfig) -> RunConfig:
    update = {"batch_size": max(1, cfg.batch_size // 2)}
    if cfg.sae is not None:
        update["sae"] = cfg.sae.model_copy(update={"batch_size": max(1, cfg.sae.batch_size // 2)})
    return cfg.model_copy(update=update)


def _batches(cfg: RunConfig) -> str:
    sae = f", sae.batch_size {cfg.sae.batch_size}" if cfg.sae is not None else ""
    return f"batch_size {cfg.batch_size}{sae}"


def run_with_oom_retry(cfg: RunConfig, run, on_retry=None):
    """run(cfg); on GPU out-of-memory, once more with half the batch sizes, then GPUOutOfMemory."""
    try:
        return run(cfg)
    except Exception as e:
        if not is_oom(e):
            raise
        smaller = halve_batches(cfg)
        log.warning("GPU out of memory at %s; retrying at %s", _batches(cfg), _batches(smaller))
        _free_gpu()
        if on_retry:
            on_retry(smaller)
    try:
        return run(smaller)
    except Exception as e:
        if not is_oom(e):
            raise
        _free_gpu()
        raise GPUOutOfMemory(
            f"GPU out of memory at {_batches(cfg)} and again at {_batches(smaller)}; "
            f"lower the batch sizes, the SAE width or the vocabulary"
        ) from None


def _free_gpu():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def _one_line(e: BaseException) -> str:
    # A KeyError's str() is the repr of its message; other messages keep their quotes.
    message = e.args[0] if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) else str(e)
    text = (message.strip().splitlines() or [""])[0]
    if isinstance(e, (PlanError, ModelError, StoreError, GPUOutOfMemory, ValueError)) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _run_files(root) -> set[str]:
    d = runs_dir(root)
    return {p.name for p in d.glob(f"*{RUN_SUFFIX}")} if d.is_dir() else set()


def _remove_runs_of(cfgs: list[RunConfig], root, names):
    """A cancelled job writes nothing: remove the complete runs it wrote before the cancel reached it
    (earlier layers of a multi-layer run, or a write that finished just as the cancel came)."""
    for name in names:
        path = runs_dir(root) / name
        try:
            with h5py.File(path, "r") as f:
                layer = int(f.attrs.get("layer", -1))
                mine = f.attrs.get("config_hash") in {c.config_hash(layer) for c in cfgs}
            if mine:
                path.unlink()
                log.info("cancelled: removed %s", name)
        except (OSError, KeyError, ValueError):
            continue


def run_job(job_id: str, root=None, device: str = "auto", worker: str | None = None) -> dict:
    """Run one queued job in this process and record the outcome. A job that is not queued any more
    (cancelled before it started, or a redelivered message of a job that already ran) is skipped."""
    root = default_root(root)
    job = jobstore.read_job(job_id, root)
    if job["cancel_requested"]:
        return jobstore.transition(
            job_id, root, ("queued",), status="cancelled", stage="cancelled", ended=jobstore.now_iso()
        ) or jobstore.read_job(job_id, root)
    job = jobstore.claim_job(
        job_id,
        root,
        worker=worker or f"pid-{os.getpid()}@{socket.gethostname()}",
        host=socket.gethostname(),
        pid=os.getpid(),
        device=device,
    )
    if job is None:
        log.info("job %s is not queued any more; skipped", job_id)
        return jobstore.read_job(job_id, root)
    log.info("job %s: started by %s", job_id, job["worker"])
    beat = _Heartbeat(job_id, root)
    beat.start()
    if job.get("kind") == "compare":
        try:
            final = _compare(job_id, root, job)
        finally:
            beat.stop.set()
            beat.join()
        return jobstore.update_job(job_id, root, ended=jobstore.now_iso(), heartbeat=jobstore.now_iso(), **final)
    before = _run_files(root)
    try:
        cfg = parse_run(job["config"], "config")
        dev = pipeline.resolve_device(device)
        jobstore.update_job(job_id, root, device=_device_name(dev))
        reporter = _Reporter(job_id, root, cfg)
        ids = run_with_oom_retry(
            cfg,
            lambda c: pipeline.precompute_run(
                c, store=root, device=dev, force=bool(job.get("force")), progress=Progress(reporter, show=False)
            ),
            on_retry=lambda c: jobstore.update_job(
                job_id, root, stage=f"retrying after GPU out of memory at {_batches(c)}"
            ),
        )
        final = dict(status="done", stage="done", progress=1.0, run_ids=list(ids), error=None)
    except Cancelled:
        _remove_runs_of([cfg, halve_batches(cfg)], root, _run_files(root) - before)
        final = dict(status="cancelled", stage="cancelled", error=None)
    except Exception as e:
        log.exception("job %s failed", job_id)
        final = dict(status="failed", error=_one_line(e))
    finally:
        beat.stop.set()
        beat.join()
    job = jobstore.update_job(job_id, root, ended=jobstore.now_iso(), heartbeat=jobstore.now_iso(), **final)
    _free_gpu()
    return job


def _compare(job_id: str, root, job: dict) -> dict:
    """A compare job: two stored runs compared into a comparison file (compute/comparison.py); its final fields.
    The file is written atomically, so a cancelled or failed job leaves nothing."""

    def report(label: str, frac: float):
        if jobstore.cancel_requested(job_id, root):
            raise Cancelled(f"job {job_id} was cancelled")
        jobstore.update_job(job_id, root, stage=label, progress=round(0.95 * frac, 4), heartbeat=jobstore.now_iso())

    try:
        run_a, run_b = check_compare(job["config"], root)
        jobstore.update_job(job_id, root, device="cpu")
        comparison.compare_stored(root, run_a, run_b, progress=Progress(report, show=False))
        return dict(status="done", stage="done", progress=1.0, run_ids=[run_a, run_b], error=None)
    except Cancelled:
        return dict(status="cancelled", stage="cancelled", error=None)
    except Exception as e:
        log.exception("job %s failed", job_id)
        return dict(status="failed", error=_one_line(e))


# -- the worker process ----------------------------------------------------------------------------


def _celery_task(self, job_id: str, store: str):
    conf = self.app.conf
    root = conf.get("lexiscope_store") or store
    run_job(job_id, root, device=conf.get("lexiscope_device") or "auto", worker=self.request.hostname)


def start_worker(
    root=None,
    device: str = "auto",
    broker: str | None = None,
    hostname: str | None = None,
    loglevel: str = "INFO",
    parent_pid: int | None = None,
):
    """Run a worker in this process until it is stopped: one job at a time, no fork (solo pool)."""
    root = Path(default_root(root)).resolve()
    jobstore.jobs_dir(root).mkdir(parents=True, exist_ok=True)
    app = celery_app(root, broker)
    app.task(name=TASK_NAME, bind=True, ignore_result=True)(_celery_task)
    app.conf.lexiscope_store = str(root)
    app.conf.lexiscope_device = device
    app.conf.lexiscope_broker = broker
    app.steps["consumer"].add(RepublishQueued)
    Reaper(root).start()
    if parent_pid:
        _exit_with_parent(parent_pid)
    name = hostname or f"lexiscope-{os.getpid()}@%h"
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--queues={QUEUE}",
            f"--hostname={name}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


class Reaper(threading.Thread):
    """Marks the running jobs of dead workers failed, every beat_interval() seconds: at once for a worker of
    this host whose process is gone, after the heartbeat timeout for other hosts (jobs/liveness.py). Every
    worker runs one, so a killed worker's job fails while the others work, whether or not anyone looks."""

    def __init__(self, root):
        super().__init__(daemon=True, name="reaper")
        self.root = root
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(beat_interval()):
            try:
                jobs = jobstore.list_jobs(self.root)
                running = {j["id"] for j in jobs if j["status"] == "running"}
                for job in liveness.reap(jobs, self.root):
                    if job["id"] in running and job["status"] == "failed":
                        log.warning("reaper: job %s failed: %s", job["id"], job.get("error"))
            except Exception as e:  # a flaky shared disk must not stop the reaper; the next round retries
                log.warning("reaper round failed: %s", e)


def republish_queued(root, broker: str | None = None) -> list[str]:
    """Publish again every job the store holds as queued. The store, not the broker, is the record of what
    is queued: a broker that lost its messages (Redis restarted without persistence) gets them back, and a
    message that survived arrives twice, where the second finds its job no longer queued and is skipped."""
    ids = [j["id"] for j in jobstore.list_jobs(root) if j["status"] == "queued" and not j["cancel_requested"]]
    for job_id in reversed(ids):  # oldest first
        publish(job_id, root, broker)
    return ids


class RepublishQueued(bootsteps.StartStopStep):
    """A consumer bootstep: Celery starts it after every (re)connection to the broker."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c):
        conf = c.app.conf
        try:
            ids = republish_queued(conf.lexiscope_store, conf.get("lexiscope_broker"))
        except Exception as e:  # the broker went away again: the next reconnection retries
            log.warning("could not republish the queued jobs: %s", e)
            return
        if ids:
            log.info("republished %d queued job(s) after connecting to the broker", len(ids))


def _exit_with_parent(parent_pid: int):
    """The embedded worker lives as long as the server that started it: on the parent's death it gets a
    SIGTERM (Celery's warm shutdown: the job in hand finishes first)."""

    def watch():
        while pid_alive(parent_pid):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
