"""Is a job's worker alive? A running job whose worker died is marked failed by whoever lists the jobs
(jobs.client.list_jobs): at once when its worker ran on this host and its process is gone, otherwise once
its heartbeat is older than `heartbeat_timeout()` seconds (other hosts, and hung workers)."""

from __future__ import annotations

import socket

import psutil

from store import jobs as jobstore
from store.settings import settings


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a running job counts as crashed ($LEXISCOPE_HEARTBEAT_TIMEOUT)."""
    return settings().heartbeat_timeout


def pid_alive(pid) -> bool:
    """Whether process `pid` of this host runs; a zombie (killed, not yet waited for) counts as gone.
    Unknown (a pid that is not a number, or no permission to look) counts as alive: the heartbeat decides."""
    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, TypeError, ValueError):
        return True


def worker_gone(job: dict) -> bool:
    """On this host a dead process is seen at once; elsewhere (or hung) the heartbeat tells."""
    if job.get("host") == socket.gethostname() and job.get("pid") and not pid_alive(job["pid"]):
        return True
    return jobstore.age_seconds(job.get("heartbeat")) > heartbeat_timeout()


def _failed(job: dict) -> dict | None:
    if job["status"] != "running" or not worker_gone(job):
        return None
    age = jobstore.age_seconds(job.get("heartbeat"))
    return dict(
        status="failed",
        ended=jobstore.now_iso(),
        error=f"worker {job.get('worker') or '?'} stopped during stage '{job.get('stage')}' "
        f"(no heartbeat for {age:.0f} s): it crashed or was killed; the run was not stored",
    )


def reap_job(job_id: str, root=None) -> dict | None:
    """Mark a running job whose worker is gone as failed (rechecked under the record's lock), and delete its
    writer's temporary file. None when the job is not running or its worker is alive."""
    job = jobstore.update_if(job_id, root, _failed)
    if job is not None and job.get("pid"):
        same_host = job.get("host") == socket.gethostname()
        jobstore.remove_writer_tmp(root, job["pid"], older_than=None if same_host else heartbeat_timeout())
    return job


def reap(jobs: list[dict], root=None) -> list[dict]:
    """The records (as store.jobs.list_jobs reads them), with running jobs whose worker is gone marked failed."""
    out = []
    for job in jobs:
        if job.get("status") == "running" and worker_gone(job):
            job = {**(reap_job(job["id"], root) or job), "cancel_requested": job["cancel_requested"]}
        out.append(job)
    return out
