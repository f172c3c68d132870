"""The `lexiscope` command, assembled from the commands each package owns: compute (precompute, runs, compare),
jobs (jobs, worker, queueing a plan) and dashboard (serve). This module is the only one above them all."""

from typing import Annotated

import typer

from compute import cli as compute_cli
from dashboard import cli as dashboard_cli
from jobs import cli as jobs_cli

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Lexiscope: precompute embedding analyses into a store and explore them.",
)


@app.command(help=compute_cli.precompute.__doc__)
def precompute(
    plan: compute_cli.PlanArg = None,
    store: compute_cli.StoreOpt = None,
    device: compute_cli.DeviceOpt = "auto",
    force: compute_cli.ForceOpt = False,
    queue: Annotated[bool, typer.Option("--queue", help="send each run to the job queue instead")] = False,
):
    if queue:
        jobs_cli.queue_plan(plan, store, force=force)
    else:
        compute_cli.precompute(plan, store=store, device=device, force=force)


app.command()(jobs_cli.jobs)
app.command()(jobs_cli.worker)
app.command()(compute_cli.runs)
app.command()(compute_cli.compare)


@app.command()
def demo(
    plan: compute_cli.PlanArg = None,
    store: compute_cli.StoreOpt = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8050,
    device: Annotated[str, typer.Option()] = "auto",
):
    """Compute the plan's first run here (default plan: GloVe), queue the others as jobs, then serve the
    dashboard: the queued runs are computed in the background and join the Runs page as they land, their
    progress on the Jobs page. Runs already in the store, or already queued, are not queued again."""
    first_light(plan, store=store, device=device)
    dashboard_cli.serve(store=store, host=host, port=port)


def first_light(plan=None, store=None, device: str = "auto") -> tuple[list[str], list[dict]]:
    """What `demo` does before serving: the first run computed in the foreground, the rest queued for the
    store's worker (started here, so the queue moves while the dashboard loads). Returns (run ids, new jobs)."""
    from compute.config import Plan
    from jobs import client

    p = compute_cli.load(plan)
    ids = compute_cli.compute_plan(Plan(runs=p.runs[:1], sts_dir=p.sts_dir), store=store, device=device)
    client.ensure_embedded_worker(store, device=device)  # started after the first run: it had both cores
    jobs = jobs_cli.queue_runs(Plan(runs=p.runs[1:], sts_dir=p.sts_dir), store, skip_done=True) if p.runs[1:] else []
    return ids, jobs


app.command()(dashboard_cli.serve)

if __name__ == "__main__":
    app(prog_name="lexiscope")
