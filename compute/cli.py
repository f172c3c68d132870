"""compute's commands: `lexiscope precompute` and `lexiscope runs` (lexiscope.py assembles the command).
Imports beyond typer are inside the commands: they keep `lexiscope --help` fast (the pipeline loads torch,
the store h5py and pandas)."""

import logging
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

PlanArg = Annotated[Optional[Path], typer.Argument(help="YAML plan (default: the bundled plan)")]
StoreOpt = Annotated[
    Optional[Path], typer.Option("--store", help="store root (default $LEXISCOPE_STORE or ./lexiscope-store)")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda")]
ForceOpt = Annotated[bool, typer.Option("--force", help="recompute runs already in the store")]


def fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def message_of(e: BaseException) -> str:
    """An error's message as one line. A KeyError's str() is the repr of its message (quoted), so its message
    is taken as given; other messages keep every quote they have ('glove-6b-50d' stays whole)."""
    message = e.args[0] if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) else str(e)
    return (message.strip().splitlines() or [type(e).__name__])[0]


def user_errors() -> tuple[type[Exception], ...]:
    """The errors of bad input, which the commands print as one line (anything else is a bug: traceback)."""
    from compute.config import PlanError
    from compute.embeddings import ModelError
    from store import StoreError

    return (PlanError, ModelError, StoreError, ValueError, KeyError, FileNotFoundError)


def precompute(plan: PlanArg = None, store: StoreOpt = None, device: DeviceOpt = "auto", force: ForceOpt = False):
    """Compute every run of a plan into the store (runs already there are skipped)."""
    compute_plan(load(plan), store=store, device=device, force=force)


def load(plan: Optional[Path]):
    """The plan at `plan` (None: the bundled default plan); a bad plan is a one-line error."""
    try:
        from compute.config import load_plan

        return load_plan(plan)
    except user_errors() as e:
        fail(message_of(e))


def compute_plan(p, store=None, device: str = "auto", force: bool = False) -> list[str]:
    """Compute a loaded plan here, in the foreground, with progress bars; returns the run ids."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("lexiscope").setLevel(logging.INFO)
    try:
        from compute.pipeline import precompute as run_plan

        start = time.perf_counter()
        ids = run_plan(p, store=store, device=device, force=force)
    except user_errors() as e:
        fail(message_of(e))
    typer.echo(f"{len(ids)} run(s) ready in {time.perf_counter() - start:.0f} s: {', '.join(ids)}")
    return ids


def compare(
    run_a: Annotated[str, typer.Argument(help="run id (see `lexiscope runs`)")],
    run_b: Annotated[str, typer.Argument(help="the other run id")],
    store: StoreOpt = None,
):
    """Compare two stored runs on their shared words (linear CKA, neighbour overlap, matched features) into
    <store>/comparisons/, where the dashboard's Compare page reads it."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        from compute.comparison import compare_stored
        from compute.progress import Progress
        from store import comparisons

        start = time.perf_counter()
        path = compare_stored(store, run_a, run_b, progress=Progress())
        c = comparisons.load(store, run_a, run_b)
    except user_errors() as e:
        fail(message_of(e))
    a = c.attrs
    typer.echo(
        f"{run_a} vs {run_b}: {a['n_shared']:,} shared words; linear CKA {a['cka']:.4f} "
        f"(shuffled rows {sum(a['cka_shuffled']) / len(a['cka_shuffled']):.4f}); top-{a['k']} neighbour overlap "
        f"{a['jaccard_mean']:.4f} (random {a['jaccard_random']:.4f}); {time.perf_counter() - start:.0f} s -> {path}"
    )


def runs(store: StoreOpt = None):
    """Print the catalog of complete runs."""
    import pandas as pd

    from store import Catalog

    logging.getLogger("lexiscope.store").setLevel(logging.ERROR)  # the catalog's warnings are printed below, once
    cat = Catalog(store)
    table = cat.table()
    for msg in cat.errors.values():
        typer.secho(f"warning: {msg}", err=True, fg=typer.colors.YELLOW)
    if table.empty:
        typer.echo(f"no runs in {cat.root}; run `lexiscope precompute` first")
        return
    cols = [
        c
        for c in (
            "run_id",
            "model",
            "layer",
            "n_words",
            "dim",
            "i_cos",
            "i_pc",
            "isoscore",
            "sae_arch",
            "sae_d_sae",
            "sae_fvu",
            "sae_l0",
            "created",
        )
        if c in table
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
        typer.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
