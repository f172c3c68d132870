"""The job commands: `lexiscope worker`, `lexiscope jobs`, and `queue_plan` behind `lexiscope precompute --queue`
(lexiscope.py assembles the command). `python -m jobs.cli worker` is how the embedded worker starts.
Imports beyond typer are inside the commands: they keep `lexiscope --help` fast (the worker loads torch,
the store h5py and pandas)."""

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from compute.cli import StoreOpt, fail, message_of, user_errors
from compute.config import corpus_sources

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Lexiscope's job queue: run queued jobs, list or cancel them.",
)


def queue_plan(plan: Optional[Path], store: Optional[Path] = None, force: bool = False):
    """Each run of the plan becomes one job (trusted: the admin's plan skips the dashboard's caps)."""
    from compute.config import load_plan

    try:
        p = load_plan(plan)
    except user_errors() as e:
        fail(message_of(e))
    queue_runs(p, store, force=force)


def queue_runs(p, store: Optional[Path] = None, force: bool = False, skip_done: bool = False) -> list[dict]:
    """Each run of a loaded plan becomes one trusted job; returns the jobs queued. Paths in the plan are made
    absolute here, as `precompute` reads them from this directory, not the worker's; `force` is carried by each
    job to its worker. With `skip_done` (`lexiscope demo`), a run whose layers are all in the store, or for which
    a job with the same config is already queued or running, is not queued again."""
    from jobs import client
    from store import Catalog

    queued = []
    try:
        catalog = Catalog(store) if skip_done else None
        for cfg in p.runs:
            if cfg.sts is not None and cfg.sts.path is None and p.sts_dir:
                cfg = cfg.model_copy(update={"sts": cfg.sts.model_copy(update={"path": p.sts_dir})})
            cfg = absolute_paths(cfg)
            label = cfg.name or cfg.model
            if skip_done and (reason := already_done(cfg, catalog, client.list_jobs(store))):
                typer.echo(f"not queued  {label}: {reason}")
                continue
            job = client.submit(
                cfg.model_dump(mode="json"),
                store,
                user=os.environ.get("USER") or "cli",
                trusted=True,
                source="cli",
                force=force,
            )
            queued.append(job)
            typer.echo(f"queued {job['id']}  {label}{'  (--force)' if force else ''}")
    except (*user_errors(), client.QueueError) as e:
        fail(message_of(e))
    if queued and client.is_embedded(client.broker_url(store)) and not client.embedded_worker_pid(store):
        typer.echo("no broker configured: the jobs wait for `lexiscope serve` or `lexiscope worker` on this store")
    return queued


def all_layers_stored(cfg, catalog) -> bool:
    """Whether every layer of a run config is in the store (by config hash). A contextual run of `layers: all`
    learns its layer count from its stored layer 0, so the model need not be loaded to tell."""
    layers = cfg.layers
    if layers == "all":
        table = catalog.table()
        row = table[table["config_hash"] == cfg.config_hash(0)] if not table.empty else table
        if row.empty:
            return False
        layers = range(int(row["n_layers"].iloc[0]))
    return all(catalog.find_hash(cfg.config_hash(layer)) for layer in layers)


def already_done(cfg, catalog, jobs: list[dict]) -> str | None:
    """Why a run config needs no new job (every layer stored, or an active job for the same config), or None."""
    from compute.config import PlanError, parse_run
    from store.jobs import ACTIVE

    if all_layers_stored(cfg, catalog):
        return "already in the store"
    for job in jobs:
        if job["status"] not in ACTIVE:
            continue
        try:
            same = parse_run(job["config"]).config_hash(0) == cfg.config_hash(0)
        except PlanError:  # a record written by another version: not this config
            same = False
        if same:
            return f"job {job['id']} is {job['status']}"
    return None


def _absolute(value: str) -> str:
    """A path that exists from here, made absolute; anything else (a model name, a hub id, 'lee') unchanged."""
    p = Path(value).expanduser()
    return str(p.resolve()) if not p.is_absolute() and p.exists() else value


def absolute_paths(cfg):
    """The run config with each file path it names (model, corpus, word lists, concept groups, STS folder)
    absolute, so that a worker started elsewhere reads the same files as `precompute` would here."""
    v = cfg.vocabulary
    groups = v.concept_groups
    if isinstance(groups, str) and groups != "default":
        groups = _absolute(groups)
    update = {
        "model": _absolute(cfg.model),
        "vocabulary": v.model_copy(
            update={"word_lists": [_absolute(w) for w in v.word_lists], "concept_groups": groups}
        ),
    }
    if cfg.corpus is not None:
        sources = [s if s == "lee" or s.startswith("stsb:") else _absolute(s) for s in corpus_sources(cfg.corpus)]
        update["corpus"] = sources[0] if isinstance(cfg.corpus, str) else sources
    if cfg.sts is not None and cfg.sts.path is not None:
        update["sts"] = cfg.sts.model_copy(update={"path": _absolute(cfg.sts.path)})
    return cfg.model_copy(update=update)


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
        except client.JobFinished as e:
            fail(str(e), code=1)
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
