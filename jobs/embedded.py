"""The embedded worker: with no broker configured, one local worker process per store, started by
`lexiscope serve` or by the Jobs page when a job waits and no worker runs. It runs `python -m jobs.cli worker`
and lives as long as the process that started it (jobs/worker.py watches that parent)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from jobs.celery_app import broker_url, is_embedded
from jobs.liveness import pid_alive
from store import jobs as jobstore
from store.schema import default_root


def _pidfile(root) -> Path:
    return jobstore.jobs_dir(root) / ".embedded-worker.pid"


def embedded_worker_pid(root=None) -> int | None:
    """The pid of this store's running embedded worker, or None."""
    try:
        pid = int(_pidfile(root).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def ensure_embedded_worker(root=None, device: str = "auto") -> subprocess.Popen | None:
    """In embedded mode, start the one local worker for this store unless it is running already.
    Returns the new process, or None (distributed mode, or a worker is alive)."""
    root = Path(default_root(root)).resolve()
    if not is_embedded(broker_url(root)):
        return None
    jobstore.jobs_dir(root).mkdir(parents=True, exist_ok=True)
    with open(jobstore.jobs_dir(root) / ".embedded-worker.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if embedded_worker_pid(root):
            return None
        log_file = open(jobstore.jobs_dir(root) / ".embedded-worker.log", "ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobs.cli",
                "worker",
                "--store",
                str(root),
                "--device",
                device,
                "--parent-pid",
                str(os.getpid()),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        log_file.close()
        _pidfile(root).write_text(str(proc.pid))
    return proc
