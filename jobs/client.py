"""Submitting, cancelling and listing jobs: what the dashboard and the CLI call. Torch-free: it validates with
compute.config (pydantic) and sends the task by name, so importing it never loads the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

from compute.config import PlanError
from jobs import liveness
from jobs.celery_app import QUEUE, TASK_NAME, broker_url, celery_app, is_embedded, safe_url
from jobs.embedded import embedded_worker_pid, ensure_embedded_worker
from jobs.policy import Policy, check_run
from store import jobs as jobstore
from store.schema import default_root

# The dashboard and the CLI reach the queue's state through this module alone.
__all__ = [
    "QueueError",
    "submit",
    "cancel",
    "list_jobs",
    "count_active",
    "broker_url",
    "is_embedded",
    "safe_url",
    "embedded_worker_pid",
    "ensure_embedded_worker",
]

log = logging.getLogger("lexiscope.queue")


class QueueError(RuntimeError):
    """The queue cannot take the job (broker unreachable); one line."""


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
) -> dict:
    """Validate a run config and queue it; returns the job record. Untrusted submissions (the dashboard)
    go through the admin policy and the per-user cap. Raises PlanError (nothing queued) or QueueError."""
    root = Path(default_root(root)).resolve()
    user = user or "anonymous"
    if trusted:
        cfg = check_run(data)
    else:
        policy = policy or Policy.load()
        cfg = check_run(data, policy)
        active = count_active(root, user)
        if active >= policy.max_jobs_per_user:
            raise PlanError(
                f"user '{user}' already has {active} queued or running jobs "
                f"(limit {policy.max_jobs_per_user}); wait or cancel one"
            )
    job = jobstore.create_job(cfg.model_dump(mode="json"), root, user=user, source=source)
    url = broker_url(root, broker)
    try:
        celery_app(root, broker).send_task(
            TASK_NAME,
            args=[job["id"], str(root)],
            task_id=job["id"],
            queue=QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.5},
        )
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


def cancel(job_id: str, root=None, broker: str | None = None) -> dict:
    """Cancel a job: set its flag (a running job stops at its next progress update and writes nothing)
    and, with a broker that supports it, revoke the message so no worker starts it."""
    job = jobstore.request_cancel(job_id, root)
    if not is_embedded(broker_url(root, broker)):
        try:
            celery_app(root, broker).control.revoke(job_id)
        except Exception as e:  # the flag alone is enough; revoke only saves a worker the round trip
            log.warning("revoke %s failed: %s", job_id, e)
    return job
