"""Submitting, cancelling and listing jobs: what the dashboard and the CLI call. Torch-free: it validates with
compute.config (pydantic) and sends the task by name, so importing it never loads the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

from compute.config import PlanError
from jobs import liveness
from jobs.celery_app import QUEUE, TASK_NAME, broker_url, celery_app, is_embedded, safe_url
from jobs.embedded import embedded_worker_pid, ensure_embedded_worker
from jobs.policy import Policy, check_compare, check_run
from store import jobs as jobstore
from store.jobs import JobFinished
from store.schema import default_root

# The dashboard and the CLI reach the queue's state through this module alone.
__all__ = [
    "QueueError",
    "NotAllowed",
    "JobFinished",
    "submit",
    "submit_compare",
    "cancel",
    "list_jobs",
    "count_active",
    "broker_url",
    "is_embedded",
    "safe_url",
    "embedded_worker_pid",
    "ensure_embedded_worker",
    "may_cancel",
    "publish",
]

log = logging.getLogger("lexiscope.queue")


class QueueError(RuntimeError):
    """The queue cannot take the job (broker unreachable); one line."""


class NotAllowed(PermissionError):
    """This user may not do that to this job (cancel someone else's); one line."""


def list_jobs(root=None) -> list[dict]:
    """Every job, newest first; running jobs whose worker is gone are marked failed first."""
    return liveness.reap(jobstore.list_jobs(root), root)


def count_active(root=None, user: str | None = None) -> int:
    """Queued or running jobs (of one user)."""
    return sum(1 for j in list_jobs(root) if j["status"] in jobstore.ACTIVE and (user is None or j.get("user") == user))


def submit(
    data,
    root=None,
    user: str = "anonymous",
    trusted: bool = False,
    broker: str | None = None,
    source: str = "dashboard",
    policy: Policy | None = None,
    force: bool = False,
) -> dict:
    """Validate a run config and queue it; returns the job record. Untrusted submissions (the dashboard)
    go through the admin policy and the per-user cap; only trusted ones may `force` a recomputation of runs
    already in the store. Raises PlanError (nothing queued) or QueueError."""
    root = Path(default_root(root)).resolve()
    user = user or "anonymous"
    if trusted:
        cfg = check_run(data)
    else:
        if force:
            raise PlanError("force: only trusted submissions (the CLI) may recompute stored runs")
        policy = policy or Policy.load()
        cfg = check_run(data, policy)
    return _queue(cfg.model_dump(mode="json"), root, user, trusted, policy, broker, source, force)


def submit_compare(
    run_a: str,
    run_b: str,
    root=None,
    user: str = "anonymous",
    trusted: bool = False,
    broker: str | None = None,
    source: str = "dashboard",
    policy: Policy | None = None,
) -> dict:
    """Queue the comparison of two stored runs (a job of kind `compare`, run by the worker with
    compute/comparison.py); returns its record, or the record of a queued or running job for the same pair.
    Untrusted submissions count towards the per-user cap. Raises PlanError (nothing queued) or QueueError."""
    root = Path(default_root(root)).resolve()
    a, b = check_compare({"run_a": run_a, "run_b": run_b}, root)
    for job in list_jobs(root):
        if job.get("kind") == "compare" and job["status"] in jobstore.ACTIVE:
            if {job["config"].get("run_a"), job["config"].get("run_b")} == {a, b}:
                return job
    if not trusted:
        policy = policy or Policy.load()
    return _queue({"run_a": a, "run_b": b}, root, user or "anonymous", trusted, policy, broker, source, kind="compare")


def _queue(config: dict, root, user, trusted, policy, broker, source, force=False, kind="run") -> dict:
    """Count, create and publish as one step: parallel submits (threads, processes, gunicorn workers) can neither
    pass the per-user cap nor race each other setting up the embedded queue's SQLite file."""
    url = broker_url(root, broker)
    with jobstore.submit_lock(root):
        if not trusted:
            active = count_active(root, user)
            if active >= policy.max_jobs_per_user:
                raise PlanError(
                    f"user '{user}' already has {active} queued or running jobs "
                    f"(limit {policy.max_jobs_per_user}); wait or cancel one"
                )
        job = jobstore.create_job(config, root, user=user, source=source, force=force, kind=kind)
        try:
            publish(job["id"], root, broker)
        except Exception as e:
            jobstore.update_job(
                job["id"],
                root,
                status="failed",
                ended=jobstore.now_iso(),
                error=f"could not reach the broker at {safe_url(url)}: {e}",
            )
            raise QueueError(f"could not reach the broker at {safe_url(url)}: {e}") from None
    return jobstore.update_job(job["id"], root, task_id=job["id"])


def publish(job_id: str, root, broker: str | None = None):
    """Send a job's message to the broker (the task id is the job id). Sending one twice is harmless: the
    worker that gets the second finds the job no longer queued and skips it (jobs.worker.run_job)."""
    celery_app(root, broker).send_task(
        TASK_NAME,
        args=[job_id, str(root)],
        task_id=job_id,
        queue=QUEUE,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.5},
    )


def may_cancel(job: dict, user: str | None, policy: Policy | None = None) -> bool:
    """Whether `user` may cancel `job`: its owner or an admin of the policy. None is a trusted caller (the CLI,
    or a dashboard without auth, where nobody has a name to check)."""
    if user is None or job.get("user") == user:
        return True
    try:
        return user in (policy or Policy.load()).admins
    except PlanError:
        return False


def cancel(job_id: str, root=None, broker: str | None = None, user: str | None = None) -> dict:
    """Cancel a job: set its flag (a running job stops at its next progress update and writes nothing)
    and, with a broker that supports it, revoke the message so no worker starts it. With a `user`, only the
    job's owner or an admin may (NotAllowed). A job that has already ended is left alone (JobFinished)."""
    job = jobstore.read_job(job_id, root)
    if not may_cancel(job, user):
        raise NotAllowed(f"job {job_id} belongs to {job.get('user') or '?'}; only its owner or an admin may cancel it")
    job = jobstore.request_cancel(job_id, root)
    if not is_embedded(broker_url(root, broker)):
        try:
            celery_app(root, broker).control.revoke(job_id)
        except Exception as e:  # the flag alone is enough; revoke only saves a worker the round trip
            log.warning("revoke %s failed: %s", job_id, e)
    return job
