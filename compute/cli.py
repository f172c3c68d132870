"""The `lexiscope` command."""
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Lexiscope: precompute embedding analyses into a store and explore them.")

StoreOpt = typer.Option(None, "--store", help="store root (default $LEXISCOPE_STORE or ./lexiscope-store)")


def fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _user_errors():
    from compute.config import PlanError
    from compute.embeddings import ModelError
    from store import StoreError
    return (PlanError, ModelError, StoreError, ValueError, KeyError, FileNotFoundError)


@app.command()
def precompute(plan: Optional[Path] = typer.Argument(None, help="YAML plan (default: the bundled plan)"),
               store: Optional[Path] = StoreOpt,
               device: str = typer.Option("auto", help="auto, cpu or cuda"),
               force: bool = typer.Option(False, "--force", help="recompute runs already in the store"),
               queue: bool = typer.Option(False, "--queue", help="send each run to the job queue instead")):
    """Compute every run of a plan into the store (runs already there are skipped)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("lexiscope").setLevel(logging.INFO)
    if queue:
        return queue_plan(plan, store)
    try:
        from compute.config import load_plan
        from compute.pipeline import precompute as run_plan
        p = load_plan(plan)
        start = time.perf_counter()
        ids = run_plan(p, store=store, device=device, force=force)
    except _user_errors() as e:
        fail(str(e).strip("'\""))
    typer.echo(f"{len(ids)} run(s) ready in {time.perf_counter() - start:.0f} s: {', '.join(ids)}")


def queue_plan(plan, store=None):
    """Each run of the plan becomes one job (trusted: the admin's plan skips the dashboard's caps)."""
    from compute import queue as jobqueue
    from compute.config import load_plan
    try:
        p = load_plan(plan)
        for cfg in p.runs:
            if cfg.sts is not None and cfg.sts.path is None and p.sts_dir:
                cfg = cfg.model_copy(update={"sts": cfg.sts.model_copy(update={"path": p.sts_dir})})
            job = jobqueue.submit(cfg.model_dump(mode="json"), store, user=os.environ.get("USER") or "cli",
                                  trusted=True, source="cli")
            typer.echo(f"queued {job['id']}  {cfg.name or cfg.model}")
    except (*_user_errors(), jobqueue.QueueError) as e:
        fail(str(e).strip("'\""))
    if jobqueue.is_embedded(jobqueue.broker_url(store)) and not jobqueue.embedded_worker_pid(store):
        typer.echo("no broker configured: the jobs wait for `lexiscope serve` or `lexiscope worker` on this store")


@app.command()
def jobs(store: Optional[Path] = StoreOpt,
         cancel: Optional[str] = typer.Option(None, "--cancel", metavar="JOB_ID", help="cancel this job"),
         limit: int = typer.Option(30, help="show the newest N jobs")):
    """List the jobs of the queue (newest first), or cancel one."""
    from store import StoreError
    from store import jobs as jobstore
    if cancel:
        from compute import queue as jobqueue
        try:
            job = jobqueue.cancel(cancel, store)
        except StoreError as e:
            fail(str(e))
        typer.echo(f"{job['id']}: {job['status']}{' (stopping)' if job['status'] == 'running' else ''}")
        return
    rows = jobstore.list_jobs(store)[:limit]
    if not rows:
        typer.echo(f"no jobs in {jobstore.jobs_dir(store)}")
        return
    typer.echo(f"{'job':<23} {'status':<9} {'prog':>4}  {'user':<10} {'model':<14} {'worker':<24} result")
    for j in rows:
        result = ", ".join(j.get("run_ids") or []) or j.get("error") or j.get("stage") or ""
        typer.echo(f"{j['id']:<23} {j['status']:<9} {100 * (j.get('progress') or 0):>3.0f}%  "
                   f"{(j.get('user') or '')[:10]:<10} {j['config'].get('model', '')[:14]:<14} "
                   f"{(j.get('worker') or '-')[:24]:<24} {result}")


@app.command()
def worker(store: Optional[Path] = StoreOpt,
           device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N; one GPU per worker"),
           broker: Optional[str] = typer.Option(None, help="broker URL (default $LEXISCOPE_BROKER_URL, "
                                                          "else a SQLite queue in the store)"),
           name: Optional[str] = typer.Option(None, help="Celery node name (default lexiscope-<pid>@<host>)"),
           loglevel: str = typer.Option("INFO"),
           parent_pid: Optional[int] = typer.Option(None, hidden=True)):
    """Run queued jobs, one at a time, until stopped (Ctrl-C finishes the job in hand first)."""
    from compute import queue as jobqueue
    jobqueue.start_worker(store, device=device, broker=broker, hostname=name, loglevel=loglevel,
                          parent_pid=parent_pid)


@app.command()
def runs(store: Optional[Path] = StoreOpt):
    """Print the catalog of complete runs."""
    print_catalog(store)


def print_catalog(store=None):
    from store import Catalog
    cat = Catalog(store)
    table = cat.table()
    for msg in cat.errors.values():
        typer.secho(f"warning: {msg}", err=True, fg=typer.colors.YELLOW)
    if table.empty:
        typer.echo(f"no runs in {cat.root}; run `lexiscope precompute` first")
        return
    cols = [c for c in ("run_id", "model", "layer", "n_words", "dim", "i_cos", "i_pc", "isoscore",
                        "sae_arch", "sae_d_sae", "sae_fvu", "sae_l0", "created") if c in table]
    with_pd_opts(lambda: typer.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")))


def with_pd_opts(fn):
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
        fn()


@app.command()
def demo(store: Optional[Path] = StoreOpt,
         host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8050),
         device: str = typer.Option("auto")):
    """Precompute the default plan when needed, then serve the dashboard."""
    precompute(None, store=store, device=device, force=False, queue=False)
    serve(store=store, host=host, port=port)


@app.command()
def serve(store: Annotated[Optional[Path], typer.Option(
              "--store", help="store root (default $LEXISCOPE_STORE or ./lexiscope-store)")] = None,
          host: Annotated[str, typer.Option(help="interface to listen on (0.0.0.0 for all)")] = "127.0.0.1",
          port: Annotated[int, typer.Option()] = 8050,
          debug: Annotated[bool, typer.Option("--debug", help="Dash dev tools and reloading")] = False,
          max_points: Annotated[Optional[int], typer.Option(
              "--max-points", help="most points drawn on a word map (default 20000)")] = None,
          auth: Annotated[Optional[str], typer.Option(
              "--auth", help="basic auth for the whole app: user:pass,... (default $LEXISCOPE_AUTH)")] = None):
    """Serve the dashboard over a store (several workers: gunicorn -w 4 'dashboard.app:server')."""
    if auth:
        os.environ["LEXISCOPE_AUTH"] = auth  # read when dashboard.app creates the app, just below
    from store import default_root
    root = default_root(store)
    typer.echo(f"Lexiscope dashboard on http://{host}:{port}/ over {root.resolve()}")
    from dashboard.app import serve as run_app  # imported here: compute never imports dash at module level
    run_app(root, host=host, port=port, debug=debug, max_points=max_points)


def main():
    app()


if __name__ == "__main__":
    main()
