"""The `lexiscope` command, assembled from the commands each package owns: compute (precompute, runs),
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
        jobs_cli.queue_plan(plan, store)
    else:
        compute_cli.precompute(plan, store=store, device=device, force=force)


app.command()(jobs_cli.jobs)
app.command()(jobs_cli.worker)
app.command()(compute_cli.runs)


@app.command()
def demo(
    store: compute_cli.StoreOpt = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8050,
    device: Annotated[str, typer.Option()] = "auto",
):
    """Precompute the default plan when needed, then serve the dashboard."""
    compute_cli.precompute(None, store=store, device=device, force=False)
    dashboard_cli.serve(store=store, host=host, port=port)


app.command()(dashboard_cli.serve)

if __name__ == "__main__":
    app(prog_name="lexiscope")
