"""The `lexiscope` command."""
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

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
               force: bool = typer.Option(False, "--force", help="recompute runs already in the store")):
    """Compute every run of a plan into the store (runs already there are skipped)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("lexiscope").setLevel(logging.INFO)
    try:
        from compute.config import load_plan
        from compute.pipeline import precompute as run_plan
        p = load_plan(plan)
        start = time.perf_counter()
        ids = run_plan(p, store=store, device=device, force=force)
    except _user_errors() as e:
        fail(str(e).strip("'\""))
    typer.echo(f"{len(ids)} run(s) ready in {time.perf_counter() - start:.0f} s: {', '.join(ids)}")


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
    precompute(None, store=store, device=device, force=False)
    try:
        import dashboard.app  # noqa: F401
    except ImportError:
        print_catalog(store)
        return
    serve(store=store, host=host, port=port)


def serve(store=None, host="127.0.0.1", port=8050):
    print_catalog(store)


def main():
    app()


if __name__ == "__main__":
    main()
