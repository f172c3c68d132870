"""The dashboard's command: `lexiscope serve` (lexiscope.py assembles the command). dashboard.app is imported
inside it: importing it builds the Dash app, which `lexiscope --help` should not pay for."""

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _auth_configured() -> bool:
    from store.settings import SettingsError, settings

    try:
        return bool(settings().auth.strip())
    except SettingsError:
        return False


def serve(
    store: Annotated[
        Optional[Path], typer.Option("--store", help="store root (default $LEXISCOPE_STORE or ./lexiscope-store)")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to listen on (0.0.0.0 for all)")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8050,
    debug: Annotated[bool, typer.Option("--debug", help="Dash dev tools and reloading")] = False,
    max_points: Annotated[
        Optional[int], typer.Option("--max-points", help="most points drawn on a word map (default 20000)")
    ] = None,
    auth: Annotated[
        Optional[str],
        typer.Option("--auth", help="basic auth for the whole app: user:pass,... (default $LEXISCOPE_AUTH)"),
    ] = None,
):
    """Serve the dashboard over a store (several workers: gunicorn -w 4 'dashboard.app:server')."""
    if auth:
        os.environ["LEXISCOPE_AUTH"] = auth  # read when dashboard.app creates the app, just below
    from store import default_root

    root = default_root(store)
    typer.echo(f"Lexiscope dashboard on http://{host}:{port}/ over {root.resolve()}")
    if host not in LOCAL_HOSTS and not _auth_configured():
        typer.secho(
            f"warning: --host {host} without --auth: anyone who can reach this port can read every run and queue "
            f"or cancel jobs (docs/jobs.md, Security)",
            err=True,
            fg=typer.colors.YELLOW,
        )
    from dashboard.app import serve as run_app

    run_app(root, host=host, port=port, debug=debug, max_points=max_points)
