"""The Dash app. `server` is the WSGI app for gunicorn:

    LEXISCOPE_STORE=/data/store gunicorn -w 4 -b 0.0.0.0:8050 'dashboard.app:server'

Nothing reads the store at import time; each worker opens run files lazily on first use."""

import logging
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash import Dash, dcc, html

from dashboard import guards
from dashboard.components.jobs_auth import enable_auth
from dashboard.components.navbar import navbar
from dashboard.components.routing import ROUTING_STATE
from dashboard.lib import store
from jobs.client import ensure_embedded_worker

HERE = Path(__file__).parent


def shell():
    return html.Div(
        [
            dcc.Location(id="lx-nav", refresh="callback-nav"),
            navbar(),
            dbc.Container(dash.page_container, fluid=True, className="lx-page pb-4"),
        ]
    )


def create_app() -> Dash:
    """The one app of this process (Dash pages keep a global registry, so build it once)."""
    app = Dash(
        "dashboard",
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        suppress_callback_exceptions=True,  # Bootstrap (Flatly) is served from assets/, offline
        title="Lexiscope",
        update_title=None,
        on_error=guards.callback_failed,  # a callback that fails on forged input: no update, logged
        routing_callback_inputs=ROUTING_STATE,  # pages built once per path and run (components/routing.py)
    )
    app.layout = shell
    guards.install(app)  # request size cap; malformed callback requests get 400, not 500
    enable_auth(app)  # basic auth when LEXISCOPE_AUTH=user:pass,... is set (dashboard/components/jobs_auth.py)
    return app


app = create_app()
server = app.server


def serve(store_root=None, host="127.0.0.1", port=8050, debug=False, max_points=None):
    """Run the development server over a store (for production use gunicorn, see above)."""
    logging.getLogger("lexiscope").setLevel(logging.INFO)
    store.configure(store_root, max_points=max_points)
    ensure_embedded_worker(store_root)  # no broker configured: one local job worker for this store
    app.run(host=host, port=port, debug=debug)
