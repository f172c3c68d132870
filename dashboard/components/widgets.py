"""Small layout helpers shared by pages: cards, link bars, chips, stat tables, the word search."""

import math

import dash_bootstrap_components as dbc
from dash import dcc, html


def card(title, *children, id=None, className=""):
    kw = {"id": id} if id else {}
    return html.Div([html.H6(title) if title else None, *children], className=f"lx-card {className}", **kw)


def bar_list(rows, id=None, fmt="{:.3f}", wide=False):
    """Rows of (label component, value); bars are scaled to the largest |value|. Each label is
    usually a link, so the whole list is clickable. `wide`: room for long labels (feature names)."""
    top = max([abs(v) for _, v in rows] or [1.0]) or 1.0
    kw = {"id": id} if id else {}
    return html.Div(
        [
            html.Div(
                [
                    html.Div(label, className="text-truncate"),
                    html.Div(
                        html.Div(className="lx-bar-fill", style={"width": f"{100 * abs(v) / top:.1f}%"}),
                        className="lx-bar-track",
                    ),
                    html.Div(fmt.format(v), className="lx-num"),
                ],
                className="lx-bar-row",
            )
            for label, v in rows
        ],
        className="lx-bars lx-bars-wide" if wide else "lx-bars",
        **kw,
    )


def chips(items, id=None):
    kw = {"id": id} if id else {}
    return html.Div(items, className="lx-chips", **kw)


def fmt_value(v, digits=4):
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x, digits) for x in v)
    return str(v)


def stat_table(rows, id=None):
    """[(name, value)] as a compact two-column table."""
    kw = {"id": id} if id else {}
    return dbc.Table(
        [html.Tbody([html.Tr([html.Th(k, className="fw-normal text-muted"), html.Td(fmt_value(v))]) for k, v in rows])],
        size="sm",
        borderless=True,
        className="lx-table mb-0",
        **kw,
    )


def word_search(prefix: str, value=None, placeholder="search a word…"):
    """A text box with server-side autocomplete (a datalist) and a Go button; Enter also submits."""
    return dbc.InputGroup(
        [
            dcc.Input(
                id=f"{prefix}-search",
                type="text",
                value=value or "",
                placeholder=placeholder,
                list=f"{prefix}-suggestions",
                debounce=False,
                autoComplete="off",
                className="form-control",
            ),
            html.Datalist(id=f"{prefix}-suggestions", children=[]),
            dbc.Button("Go", id=f"{prefix}-go", color="primary", n_clicks=0),
        ],
        size="sm",
    )


def graph(id, figure, height=None, **kw):
    config = {
        "displaylogo": False,
        "displayModeBar": "hover",
        "modeBarButtonsToRemove": ["select2d", "lasso2d"],
        **kw.pop("config", {}),
    }
    style = {"height": f"{height}px"} if height else None
    return dcc.Graph(id=id, figure=figure, config=config, style=style, **kw)
