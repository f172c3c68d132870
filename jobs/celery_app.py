"""The broker and the Celery app, shared by the client (which sends a task by name) and the worker (which
registers the task, jobs/worker.py). No result backend: a job's state lives in its record in the store.

Two modes, one code path:
- embedded (no broker configured): kombu's SQLAlchemy transport on a SQLite file in the store
  (`sqla+sqlite:///<store>/queue.sqlite`), with one local worker (jobs/embedded.py);
- distributed: `LEXISCOPE_BROKER_URL=redis://host:6379/0` and any number of `lexiscope worker` processes.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from store.schema import default_root
from store.settings import settings

TASK_NAME = "lexiscope.run_job"
QUEUE = "lexiscope"


def broker_url(root=None, broker: str | None = None) -> str:
    """The broker: the argument, else $LEXISCOPE_BROKER_URL, else a SQLite file in the store."""
    url = broker or settings().broker_url
    if url:
        return url
    return f"sqla+sqlite:///{Path(default_root(root)).resolve() / 'queue.sqlite'}"


def is_embedded(url: str) -> bool:
    return url.startswith("sqla+sqlite")


def safe_url(url: str) -> str:
    """The broker URL without its password."""
    return maybe_sanitize_url(url)


_apps: dict[str, Celery] = {}


def celery_app(root=None, broker: str | None = None) -> Celery:
    """The Celery app for this broker (one per URL in a process)."""
    url = broker_url(root, broker)
    if url in _apps:
        return _apps[url]
    embedded = is_embedded(url)
    if embedded:
        default_root(root).mkdir(parents=True, exist_ok=True)
    app = Celery("lexiscope", broker=url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        # One job at a time per worker, acknowledged when it ends: a worker never holds a second job
        # that it could take down with it. A redelivered job that already ran is skipped (claim_job).
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # A job's message is acknowledged only when the job ends, so a message the broker redelivers (a
        # worker was killed, or lost its connection and could not ack) is never a lost job; and it is never
        # a second run either, since claim_job lets only a queued job start. Hence Celery's cancelling of
        # running jobs on a broker connection loss stays off: a Redis restart must not kill the jobs in hand.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # SQLite: these options go to create_engine; wait for a busy database instead of failing.
        # Redis: an unacknowledged message comes back after visibility_timeout. Longer than any job (24 h), so
        # a long job's message is not handed to a second worker while it runs; a dead worker's job is failed
        # by the reapers long before (jobs/worker.py), and its late redelivery is skipped.
        broker_transport_options={"connect_args": {"timeout": 30}} if embedded else {"visibility_timeout": 24 * 3600},
        # The SQLite transport has no fanout exchange, so no remote control (revoke) in embedded mode;
        # cancelling goes through the job record either way.
        worker_enable_remote_control=not embedded,
        worker_hijack_root_logger=False,
    )
    _apps[url] = app
    return app
