"""The job queue: Celery, with job state kept in the store (store/jobs.py), not in a result backend.

Two modes, one code path:
- embedded (no broker configured): the broker is kombu's SQLAlchemy transport on a SQLite file in the
  store (`sqla+sqlite:///<store>/queue.sqlite`); `lexiscope serve` (or the first job submitted from the
  dashboard) starts one local worker process. Nothing to install.
- distributed: `LEXISCOPE_BROKER_URL=redis://host:6379/0`; any number of `lexiscope worker` processes on
  GPU nodes that mount the same store.

Each worker runs one job at a time in its own process (`--pool=solo`, concurrency 1): there is no fork,
and torch is imported inside the task, so CUDA is first initialised in the process that uses it.
This module imports neither torch nor the pipeline at module level; the dashboard imports it to submit.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from compute.config import PlanError, RunConfig, parse_run
from store import jobs as jobstore
from store.schema import default_root
from store.settings import SettingsError, settings

log = logging.getLogger("lexiscope.queue")

TASK_NAME = "lexiscope.run_job"
QUEUE = "lexiscope"
DEFAULT_MODELS = ("glove-6b-50d", "minilm-l6")
NAMED_CORPORA = ("lee",)
MAX_EXPANSION = 64  # d_sae / d when only `expansion` is given (the input width is not known before loading)


class QueueError(RuntimeError):
    """The queue cannot take the job (broker unreachable); one line."""


class GPUOutOfMemory(RuntimeError):
    """Out of GPU memory even after halving the batch sizes."""


# -- admin policy -------------------------------------------------------------------------------

@dataclass
class Policy:
    """What the job form may ask for. YAML file at $LEXISCOPE_JOBS_POLICY (same keys), then env vars."""
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    max_vocabulary: int = 50_000     # words per run (top_n x languages + pasted words)
    max_sae_steps: int = 20_000
    max_d_sae: int = 16_384
    max_jobs_per_user: int = 3       # queued or running at once

    @classmethod
    def load(cls) -> "Policy":
        p = cls()
        try:
            env = settings()
        except SettingsError as e:
            raise PlanError(str(e)) from None
        path = env.jobs_policy
        if path:
            try:
                data = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise PlanError(f"LEXISCOPE_JOBS_POLICY: cannot read {path} ({e.__class__.__name__})") from None
            unknown = set(data) - set(cls.__dataclass_fields__)
            if unknown:
                raise PlanError(f"LEXISCOPE_JOBS_POLICY: unknown keys {sorted(unknown)}")
            for k, v in data.items():
                setattr(p, k, [str(m) for m in v] if k == "models" else _int(v, f"LEXISCOPE_JOBS_POLICY: {k}"))
        if env.models:
            p.models = list(env.models)
        for key in ("max_vocabulary", "max_sae_steps", "max_d_sae", "max_jobs_per_user"):
            if getattr(env, key) is not None:
                setattr(p, key, getattr(env, key))
        return p


def _int(value, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PlanError(f"{where}: '{value}' is not a whole number") from None


def check_run(data, policy: Policy | None = None, source: str = "run") -> RunConfig:
    """Validate a run config; with a policy, also enforce the allowlist and the caps and refuse anything
    that reads server files. Raises PlanError with one line naming the field."""
    cfg = parse_run(data, source)
    if policy is None:
        return cfg
    if cfg.model not in policy.models:
        raise PlanError(f"{source}.model: '{cfg.model}' is not on this server's model list "
                        f"({', '.join(policy.models)})")
    v = cfg.vocabulary
    if v.word_lists:
        raise PlanError(f"{source}.vocabulary.word_lists: server files are not allowed here; paste the words")
    if isinstance(v.concept_groups, str) and v.concept_groups != "default":
        raise PlanError(f"{source}.vocabulary.concept_groups: server files are not allowed here; "
                        f"use 'default' or paste the groups")
    if cfg.corpus is not None and cfg.corpus not in NAMED_CORPORA and not cfg.corpus.startswith("stsb:"):
        raise PlanError(f"{source}.corpus: only the named corpora ('lee', 'stsb:<lang>') are allowed here")
    if cfg.sts is not None and cfg.sts.path is not None:
        raise PlanError(f"{source}.sts.path: server paths are not allowed here")
    n_words = v.top_n * len(v.languages) + len(v.words)
    if n_words > policy.max_vocabulary:
        raise PlanError(f"{source}.vocabulary.top_n: {n_words:,} words is over this server's limit of "
                        f"{policy.max_vocabulary:,}")
    if cfg.sae is not None:
        s = cfg.sae
        steps = s.steps if s.steps is not None else (
            int(s.epochs * n_words / max(1, min(s.batch_size, n_words or 1))) if s.epochs else 4000)
        if steps > policy.max_sae_steps:
            raise PlanError(f"{source}.sae.steps: {steps:,} steps is over this server's limit of "
                            f"{policy.max_sae_steps:,}")
        if s.d_sae is not None and s.d_sae > policy.max_d_sae:
            raise PlanError(f"{source}.sae.d_sae: {s.d_sae:,} features is over this server's limit of "
                            f"{policy.max_d_sae:,}")
        if s.d_sae is None and s.expansion is not None and s.expansion > MAX_EXPANSION:
            raise PlanError(f"{source}.sae.expansion: {s.expansion:g} is over this server's limit of "
                            f"{MAX_EXPANSION}; give d_sae instead")
    return cfg


# -- Celery --------------------------------------------------------------------------------------

def broker_url(root=None, broker: str | None = None) -> str:
    """The broker: the argument, else $LEXISCOPE_BROKER_URL, else a SQLite file in the store."""
    url = broker or settings().broker_url
    if url:
        return url
    return f"sqla+sqlite:///{Path(default_root(root)).resolve() / 'queue.sqlite'}"


def is_embedded(url: str) -> bool:
    return url.startswith("sqla+sqlite")


_apps: dict = {}


def celery_app(root=None, broker: str | None = None):
    """The Celery app for this broker (cached). No result backend: job state lives in the store."""
    from celery import Celery
    url = broker_url(root, broker)
    if url in _apps:
        return _apps[url]
    embedded = is_embedded(url)
    if embedded:
        default_root(root).mkdir(parents=True, exist_ok=True)
    app = Celery("lexiscope", broker=url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True, result_backend=None,
        task_serializer="json", accept_content=["json"],
        task_default_queue=QUEUE,
        # One job at a time per worker, acknowledged when it ends: a worker never holds a second job
        # that it could take down with it. A redelivered job that already ran is skipped (claim_job).
        task_acks_late=True, worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # SQLite: these options go to create_engine; wait for a busy database instead of failing.
        broker_transport_options={"connect_args": {"timeout": 30}} if embedded else {"visibility_timeout": 24 * 3600},
        # The SQLite transport has no fanout exchange, so no remote control (revoke) in embedded mode;
        # cancelling goes through the job record either way.
        worker_enable_remote_control=not embedded,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK_NAME, bind=True, ignore_result=True)(_celery_task)
    _apps[url] = app
    return app


def _celery_task(self, job_id: str, store: str):
    conf = self.app.conf
    root = conf.get("lexiscope_store") or store
    run_job(job_id, root, device=conf.get("lexiscope_device") or "auto", worker=self.request.hostname)


def submit(data, root=None, user: str = "anonymous", trusted: bool = False, broker: str | None = None,
           source: str = "dashboard", policy: Policy | None = None) -> dict:
    """Validate a run config and queue it; returns the job record. Untrusted submissions (the dashboard)
    go through the admin policy and the per-user cap. Raises PlanError (nothing queued) or QueueError."""
    root = Path(default_root(root)).resolve()
    user = user or "anonymous"
    if trusted:
        cfg = check_run(data)
    else:
        policy = policy or Policy.load()
        cfg = check_run(data, policy)
        active = jobstore.count_active(root, user)
        if active >= policy.max_jobs_per_user:
            raise PlanError(f"user '{user}' already has {active} queued or running jobs "
                            f"(limit {policy.max_jobs_per_user}); wait or cancel one")
    job = jobstore.create_job(cfg.model_dump(mode="json"), root, user=user, source=source)
    url = broker_url(root, broker)
    try:
        celery_app(root, broker).send_task(TASK_NAME, args=[job["id"], str(root)], task_id=job["id"], queue=QUEUE,
                                           retry=True, retry_policy={"max_retries": 2, "interval_start": 0.5})
    except Exception as e:
        jobstore.update_job(job["id"], root, status="failed", ended=jobstore.now_iso(),
                            error=f"could not reach the broker at {_safe_url(url)}: {e}")
        raise QueueError(f"could not reach the broker at {_safe_url(url)}: {e}") from None
    return jobstore.update_job(job["id"], root, task_id=job["id"])


def cancel(job_id: str, root=None, broker: str | None = None) -> dict:
    """Cancel a job: set its flag (a running job stops at its next progress update and writes nothing)
    and, with a broker that supports it, revoke the message so no worker starts it."""
    job = jobstore.request_cancel(job_id, root)
    url = broker_url(root, broker)
    if not is_embedded(url):
        try:
            celery_app(root, broker).control.revoke(job_id)
        except Exception as e:  # the flag alone is enough; revoke only saves a worker the round trip
            log.warning("revoke %s failed: %s", job_id, e)
    return job


def _safe_url(url: str) -> str:
    """The broker URL without its password."""
    from kombu.utils.url import maybe_sanitize_url
    return maybe_sanitize_url(url)


# -- running a job (inside a worker) -----------------------------------------------------------

# Rough share of the time per stage, for one overall progress fraction: the setup stages before the
# layers (start, width), then each layer's stages in the order the pipeline runs them.
_SETUP_STAGES = {"load model": (0.0, .05), "vocabulary": (.05, .05), "extract": (.1, .2)}
_LAYER_STAGES = {"geometry": .05, "enhancement": .15, "word similarity": .1, "projections": .3, "sae": .3,
                 "features": .05, "write": .05}
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
        done = sum(_LAYER_STAGES[s] for s in names[:names.index(stage)]) if stage in names else 0.0
        within = done + _LAYER_STAGES.get(stage, 0.0) * frac
        start = 0.3 if self.contextual else 0.1
        return start + (1 - start) * min(1.0, (len(self.layers_seen) - 1 + within) / max(1, n))

    def __call__(self, label: str, frac: float):
        now = time.monotonic()
        if frac in (0.0, 1.0) or now - self.last_check > 0.2:  # always at stage boundaries
            self.last_check = now
            if jobstore.cancel_requested(self.job_id, self.root):
                from compute.progress import Cancelled
                raise Cancelled(f"job {self.job_id} was cancelled")
        self.overall = max(self.overall, min(0.99, self.estimate(label, frac)))
        if label != self.stage or now - self.last_write > 0.5:
            self.stage, self.last_write = label, now
            jobstore.update_job(self.job_id, self.root, stage=label, progress=round(self.overall, 4),
                                heartbeat=jobstore.now_iso())


class _Heartbeat(threading.Thread):
    """Writes the job's heartbeat every few seconds while the job runs (a dead worker stops writing)."""

    def __init__(self, job_id, root):
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.job_id, self.root = job_id, root
        self.stop = threading.Event()
        self.interval = max(0.5, min(5.0, jobstore.heartbeat_timeout() / 4))

    def run(self):
        while not self.stop.wait(self.interval):
            try:
                jobstore.update_job(self.job_id, self.root, heartbeat=jobstore.now_iso())
            except Exception as e:  # a flaky shared disk must not kill the job; the next beat retries
                log.warning("heartbeat for %s failed: %s", self.job_id, e)


def is_oom(e: BaseException) -> bool:
    """A CUDA out-of-memory error (torch.cuda.OutOfMemoryError, or the RuntimeError older torch raised)."""
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom_type is not None and isinstance(e, oom_type):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


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
        raise GPUOutOfMemory(f"GPU out of memory at {_batches(cfg)} and again at {_batches(smaller)}; "
                             f"lower the batch sizes, the SAE width or the vocabulary") from None


def _free_gpu():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def _one_line(e: BaseException) -> str:
    from compute.embeddings import ModelError
    from store import StoreError
    text = (str(e).strip().splitlines() or [""])[0].strip("'\"")
    if isinstance(e, (PlanError, ModelError, StoreError, GPUOutOfMemory, ValueError)) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _run_files(root) -> set[str]:
    from store.schema import RUN_SUFFIX, runs_dir
    d = runs_dir(root)
    return {p.name for p in d.glob(f"*{RUN_SUFFIX}")} if d.is_dir() else set()


def _remove_runs_of(cfgs: list[RunConfig], root, names):
    """A cancelled job writes nothing: remove the complete runs it wrote before the cancel reached it
    (earlier layers of a multi-layer run, or a write that finished just as the cancel came)."""
    import h5py

    from store.schema import runs_dir
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
        return jobstore._transition(job_id, root, ("queued",), status="cancelled", stage="cancelled",
                                    ended=jobstore.now_iso()) or jobstore.read_job(job_id, root)
    job = jobstore.claim_job(job_id, root, worker=worker or f"pid-{os.getpid()}@{socket.gethostname()}",
                             host=socket.gethostname(), pid=os.getpid(), device=device)
    if job is None:
        log.info("job %s is not queued any more; skipped", job_id)
        return jobstore.read_job(job_id, root)
    beat = _Heartbeat(job_id, root)
    beat.start()
    before = _run_files(root)
    try:
        from compute.pipeline import precompute_run, resolve_device
        from compute.progress import Cancelled, Progress
        cfg = parse_run(job["config"], "config")
        dev = resolve_device(device)
        jobstore.update_job(job_id, root, device=_device_name(dev))
        reporter = _Reporter(job_id, root, cfg)
        ids = run_with_oom_retry(
            cfg, lambda c: precompute_run(c, store=root, device=dev, progress=Progress(reporter, show=False)),
            on_retry=lambda c: jobstore.update_job(job_id, root, stage=f"retrying after GPU out of memory at "
                                                                        f"{_batches(c)}"))
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


# -- worker processes ------------------------------------------------------------------------------

def start_worker(root=None, device: str = "auto", broker: str | None = None, hostname: str | None = None,
                 loglevel: str = "INFO", parent_pid: int | None = None):
    """Run a worker in this process until it is stopped: one job at a time, no fork (solo pool)."""
    root = Path(default_root(root)).resolve()
    jobstore.jobs_dir(root).mkdir(parents=True, exist_ok=True)
    app = celery_app(root, broker)
    app.conf.lexiscope_store = str(root)
    app.conf.lexiscope_device = device
    if parent_pid:
        _exit_with_parent(parent_pid)
    name = hostname or f"lexiscope-{os.getpid()}@%h"
    app.worker_main(["worker", "--pool=solo", "--concurrency=1", f"--queues={QUEUE}", f"--hostname={name}",
                     f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "--without-heartbeat"])


def _exit_with_parent(parent_pid: int):
    """The embedded worker lives as long as the server that started it: on the parent's death it gets a
    SIGTERM (Celery's warm shutdown: the job in hand finishes first)."""
    def watch():
        while jobstore._pid_alive(parent_pid):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _pidfile(root) -> Path:
    return jobstore.jobs_dir(root) / ".embedded-worker.pid"


def embedded_worker_pid(root=None) -> int | None:
    try:
        pid = int(_pidfile(root).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if jobstore._pid_alive(pid) else None


def ensure_embedded_worker(root=None, device: str = "auto") -> subprocess.Popen | None:
    """In embedded mode, start the one local worker for this store unless it is running already.
    Returns the new process, or None (distributed mode, or a worker is alive)."""
    root = Path(default_root(root)).resolve()
    if not is_embedded(broker_url(root)):
        return None
    jobstore.jobs_dir(root).mkdir(parents=True, exist_ok=True)
    import fcntl
    with open(jobstore.jobs_dir(root) / ".embedded-worker.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if embedded_worker_pid(root):
            return None
        log_file = open(jobstore.jobs_dir(root) / ".embedded-worker.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "compute.cli", "worker", "--store", str(root), "--device", device,
             "--parent-pid", str(os.getpid())],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(Path(__file__).resolve().parents[1]))
        log_file.close()
        _pidfile(root).write_text(str(proc.pid))
    return proc
