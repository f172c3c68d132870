"""Job records: one JSON file per job under <store>/jobs/, shared by every dashboard user, the CLI and
the workers. Records are written atomically (temporary file + os.replace) under a per-job file lock, so a
reader never sees half a record and a progress update never loses a concurrent cancel.

Fields of a record (a plain dict):
  id, config (the validated run config, JSON), status (queued|running|done|failed|cancelled), stage,
  progress (0..1), worker, device, host, pid, user, source, submitted, started, ended, heartbeat (ISO UTC),
  error (one line or None), run_ids (list), task_id, cancel_requested (bool), force (bool: recompute runs
  already in the store; only for trusted submissions), kind (`run`, or `compare`: config {run_a, run_b}).

Whether a job's worker is still alive is not decided here: jobs/liveness.py does that, and marks a dead
worker's job failed through `update_if`. Imports neither torch nor celery.
"""

import datetime as _dt
import json
import os
import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from store.schema import TMP_PREFIX, StoreError, default_root, runs_dir

try:
    import fcntl
except ImportError:  # not POSIX: records are still replaced atomically, just not locked
    fcntl = None

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
TERMINAL = ("done", "failed", "cancelled")
FIELDS = (
    "id",
    "config",
    "status",
    "stage",
    "progress",
    "worker",
    "device",
    "host",
    "pid",
    "user",
    "source",
    "submitted",
    "started",
    "ended",
    "heartbeat",
    "error",
    "run_ids",
    "task_id",
    "cancel_requested",
    "force",
    "kind",
)
# What a job does: a run config computed into runs (`run`), or two stored runs compared (`compare`: its config is
# {"run_a": id, "run_b": id}; compute/comparison.py). Records written before `kind` existed are runs.
KINDS = ("run", "compare")
# What new_job_id makes: 20261121-061502-ab12cd. Anything else is refused before it reaches a file name.
JOB_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


class JobFinished(StoreError):
    """A cancel that came after the job ended: nothing was changed."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def age_seconds(iso: str | None) -> float:
    """Seconds since an ISO time stamp of a record (infinite when there is none)."""
    if not iso:
        return float("inf")
    return time.time() - _dt.datetime.fromisoformat(iso).timestamp()


def jobs_dir(root=None) -> Path:
    return default_root(root) / "jobs"


def _path(root, job_id) -> Path:
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        shown = repr(job_id) if len(repr(job_id)) <= 40 else repr(job_id)[:37] + "..."
        raise StoreError(f"job id {shown} is not valid (job ids look like 20261121-061502-ab12cd)")
    return jobs_dir(root) / f"{job_id}.json"


def _cancel_flag(root, job_id: str) -> Path:
    return jobs_dir(root) / f"{job_id}.cancel"


@contextmanager
def _locked(root, name: str):
    d = jobs_dir(root) / ".locks"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{name}.lock", "a") as fh:
        if fcntl:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _write(root, job: dict):
    final = _path(root, job["id"])
    tmp = final.with_name(f"{TMP_PREFIX}{job['id']}-{os.getpid()}-{secrets.token_hex(3)}.json")
    tmp.write_text(json.dumps(job, indent=1), encoding="utf-8")
    os.replace(tmp, final)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"job {path.stem} does not exist in {path.parent}") from None
    except ValueError:
        raise StoreError(f"job file {path.name} is not valid JSON") from None


def new_job_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@contextmanager
def submit_lock(root=None):
    """One store-wide lock (a file lock: it holds across threads, processes and gunicorn workers) under which a
    submitter counts a user's jobs and creates the new one, so that a per-user cap cannot be raced past."""
    with _locked(root, "submit"):
        yield


def create_job(
    config: dict, root=None, user: str = "anonymous", source: str = "dashboard", force: bool = False, kind: str = "run"
) -> dict:
    """Write a new queued job for a validated config (a JSON-able dict) of one of KINDS and return its record."""
    if kind not in KINDS:
        raise ValueError(f"job kind '{kind}' is not one of {', '.join(KINDS)}")
    jobs_dir(root).mkdir(parents=True, exist_ok=True)
    job = {f: None for f in FIELDS}
    job.update(
        id=new_job_id(),
        config=config,
        status="queued",
        stage="queued",
        progress=0.0,
        user=user or "anonymous",
        source=source,
        submitted=now_iso(),
        run_ids=[],
        cancel_requested=False,
        force=bool(force),
        kind=kind,
    )
    with _locked(root, job["id"]):
        _write(root, job)
    return job


def read_job(job_id: str, root=None) -> dict:
    job = _read(_path(root, job_id))
    job["cancel_requested"] = bool(job.get("cancel_requested")) or _cancel_flag(root, job_id).exists()
    return job


def update_job(job_id: str, root=None, **fields) -> dict:
    """Read-modify-write one record under its lock; returns the new record."""
    return update_if(job_id, root, lambda job: fields)


def update_if(job_id: str, root, change) -> dict | None:
    """Read-modify-write under the record's lock, where `change(record)` decides: it returns the fields to
    set, or None to leave the record alone (then None is returned)."""
    with _locked(root, job_id):
        job = _read(_path(root, job_id))
        fields = change(job)
        if fields is None:
            return None
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"job fields {sorted(unknown)} are not known; known fields: {', '.join(FIELDS)}")
        job.update(fields)
        _write(root, job)
    return job


def transition(job_id: str, root, allowed_from, **fields) -> dict | None:
    """Like update_job, but only if the job's current status is in `allowed_from`; else None."""
    return update_if(job_id, root, lambda job: fields if job["status"] in allowed_from else None)


def claim_job(job_id: str, root=None, **fields) -> dict | None:
    """queued -> running, atomically; None when the job is no longer queued (cancelled, redelivered)."""
    return transition(
        job_id, root, ("queued",), status="running", started=now_iso(), heartbeat=now_iso(), stage="starting", **fields
    )


def request_cancel(job_id: str, root=None) -> dict:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next progress
    update (the worker checks the flag file, which no record write can lose). A job that has already
    ended is left as it is: JobFinished."""
    if not _path(root, job_id).exists():
        raise StoreError(f"job {job_id} does not exist in {jobs_dir(root)}")

    def change(job):
        if job["status"] in TERMINAL:
            return None
        _cancel_flag(root, job_id).touch()  # under the record's lock: the job cannot end in between
        if job["status"] == "queued":
            return dict(status="cancelled", stage="cancelled", ended=now_iso(), cancel_requested=True)
        return dict(cancel_requested=True)

    job = update_if(job_id, root, change)
    if job is None:
        job = read_job(job_id, root)
        raise JobFinished(f"job {job_id} has already finished ({job['status']}); nothing was changed")
    return job


def cancel_requested(job_id: str, root=None) -> bool:
    return _cancel_flag(root, job_id).exists()


def list_jobs(root=None) -> list[dict]:
    """Every job record as stored, newest first (jobs.client.list_jobs also marks dead workers' jobs failed)."""
    d = jobs_dir(root)
    if not d.is_dir():
        return []
    jobs = []
    for entry in os.scandir(d):
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue
        try:
            job = _read(Path(entry.path))
        except StoreError:
            continue
        job["cancel_requested"] = bool(job.get("cancel_requested")) or _cancel_flag(root, job["id"]).exists()
        jobs.append(job)
    return sorted(jobs, key=lambda j: j.get("submitted") or "", reverse=True)


def remove_writer_tmp(root, pid: int, older_than: float | None = None):
    """Delete the temporary run files of a killed RunWriter (runs/.tmp-<run_id>-<pid>.h5); with `older_than`,
    only those last written more than that many seconds ago. The catalog ignores them anyway."""
    d = runs_dir(root)
    if not d.is_dir():
        return
    for p in d.glob(f"{TMP_PREFIX}*-{int(pid)}.h5"):
        try:
            if older_than is None or time.time() - p.stat().st_mtime > older_than:
                p.unlink()
        except OSError:
            pass
