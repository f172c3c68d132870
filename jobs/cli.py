"""The job commands: `lexiscope worker`, `lexiscope jobs`, and `queue_plan` behind `lexiscope precompute --queue`
(lexiscope.py assembles the command). `python -m jobs.cli worker` is how the embedded worker starts.
Imports beyond typer are inside the commands: they keep `lexiscope --help` fast (the worker loads torch,
the store h5py and pandas)."""

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from compute.cli import StoreOpt, fail, user_errors

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Lexiscope's job queue: run queued jobs, list or cancel them.",
)


def queue_plan(plan: Optional[Path], store: Optional[Path] = None):
    """Each run of the plan becomes one job (trusted: the admin's plan skips the dashboard's caps)."""
    from compute.config import load_plan
    from jobs import client

    try:
        p = load_plan(plan)
        for cfg in p.runs:
            if cfg.sts is not None and cfg.sts.path is None and p.sts_dir:
                cfg = cfg.model_copy(update={"sts": cfg.sts.model_copy(update={"path": p.sts_dir})})
            job = client.submit(
                cfg.model_dump(mode="json"), store, user=os.environ.get("USER") or "cli", trusted=True, source="cli"
            )
            typer.echo(f"queued {job['id']}  {cfg.name or cfg.model}")
    except (*user_errors(), client.QueueError) as e:
        fail(str(e).strip("'\""))
    if client.is_embedded(client.broker_url(store)) and not client.embedded_worker_pid(store):
        typer.echo("no broker configured: the jobs wait for `lexiscope serve` or `lexiscope worker` on this store")


@app.command()
def jobs(
    store: StoreOpt = None,
    cancel: Annotated[Optional[str], typer.Option("--cancel", metavar="JOB_ID", help="cancel this job")] = None,
    limit: Annotated[int, typer.Option(help="show the newest N jobs")] = 30,
):
    """List the jobs of the queue (newest first), or cancel one."""
    from jobs import client
    from store import StoreError
    from store import jobs as jobstore

    if cancel:
        try:
            job = client.cancel(cancel, store)
        except StoreError as e:
            fail(str(e))
        typer.echo(f"{job['id']}: {job['status']}{' (stopping)' if job['status'] == 'running' else ''}")
        return
    rows = client.list_jobs(store)[:limit]
    if not rows:
        typer.echo(f"no jobs in {jobstore.jobs_dir(store)}")
        return
    typer.echo(f"{'job':<23} {'status':<9} {'prog':>4}  {'user':<10} {'model':<14} {'worker':<24} result")
    for j in rows:
        result = ", ".join(j.get("run_ids") or []) or j.get("error") or j.get("stage") or ""
        typer.echo(
            f"{j['id']:<23} {j['status']:<9} {100 * (j.get('progress') or 0):>3.0f}%  "
            f"{(j.get('user') or '')[:10]:<10} {j['config'].get('model', '')[:14]:<14} "
            f"{(j.get('worker') or '-')[:24]:<24} {result}"
        )


@app.command()
def worker(
    store: StoreOpt = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N; one GPU per worker")] = "auto",
    broker: Annotated[
        Optional[str], typer.Option(help="broker URL (default $LEXISCOPE_BROKER_URL, else a SQLite queue in the store)")
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Celery node name (default lexiscope-<pid>@<host>)")] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
    parent_pid: Annotated[Optional[int], typer.Option(hidden=True)] = None,
):
    """Run queued jobs, one at a time, until stopped (Ctrl-C finishes the job in hand first)."""
    from jobs.worker import start_worker

    start_worker(store, device=device, broker=broker, hostname=name, loglevel=loglevel, parent_pid=parent_pid)


if __name__ == "__main__":
    app()
