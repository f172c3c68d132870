"""The navbar: page links that carry the current run, and a run picker that persists across pages."""

import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.lib import store
from dashboard.lib.runs import run_options
from dashboard.lib.urls import href, parse, with_params

PAGES = [
    ("Runs", "/"),
    ("Words", "/words"),
    ("Features", "/features"),
    ("Concepts", "/concepts"),
    ("Dimensions", "/dimensions"),
    ("Geometry", "/geometry"),
    ("Layers", "/layers"),
    ("Compare", "/compare"),
    ("Jobs", "/jobs"),
]


def _nav_id(path: str) -> str:
    return "nav-" + (path.strip("/") or "runs")


def navbar():
    links = [dbc.NavItem(dbc.NavLink(name, href=path, id=_nav_id(path), active="exact")) for name, path in PAGES]
    picker = dcc.Dropdown(
        id="run-picker",
        placeholder="choose a run…",
        clearable=False,
        searchable=True,
        className="lx-run-picker",
        optionHeight=32,
    )
    return dbc.Navbar(
        dbc.Container(
            [
                dcc.Link(html.Span([html.B("Lexiscope")]), href="/", className="navbar-brand lx-brand", id="nav-brand"),
                dbc.Nav(links, className="me-auto", navbar=True),
                html.Div([html.Span("run", className="lx-picker-label"), picker], className="lx-picker-wrap"),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="lx-navbar py-1",
    )


@callback(
    Output("run-picker", "options"),
    Output("run-picker", "value"),
    *[Output(_nav_id(p), "href") for _, p in PAGES],
    Input("_pages_location", "search"),
    Input("_pages_location", "pathname"),
)
def sync_navbar(search, pathname):
    """The URL is the source of truth: the picker shows its run, every nav link carries it."""
    run = parse(search).get("run")
    try:
        options = run_options()
        run = run or store.default_run_id()
    except Exception:  # a broken store must not break the navbar
        options = []
    links = [href(p, run=run) for _, p in PAGES]
    return options, run, *links


@callback(
    Output("lx-nav", "href"),
    Input("run-picker", "value"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def pick_run(run, pathname, search):
    """Choosing a run keeps the page; word/feature/dim selections are kept where they still make sense."""
    current = parse(search).get("run")
    if not run or run == current or (current is None and run == store.default_run_id()):
        raise PreventUpdate
    keep = {} if (pathname or "/") == "/" else {"feature": None}  # feature ids are per SAE
    return with_params(pathname or "/", search, run=run, **keep)
