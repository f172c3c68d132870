"""Pages that are built once per path and run, and follow their URL's query with callbacks.

Dash pages rebuilds a page's whole layout on every URL change, query included: on the Words page a click
(a new `?word=`) resent and redrew the full word map. A page wrapped in `built_once` puts a marker (its
path and run) into its layout; the pages router hands every layout the marker of the page on screen
(`ROUTING_STATE`, passed to Dash as `routing_callback_inputs`), and when the new URL only changes the query
of the page on screen, the wrapper stops the router (PreventUpdate), so nothing is rebuilt. The page's own
callbacks listen to `_pages_location.search` and update just what changed. The URL stays the only state:
links, back and forward work as before.

Also here: after a page is built, the window scrolls to its top (Dash swaps the content in place and
would otherwise keep the old scroll position)."""

import functools

from dash import ALL, Input, Output, State, clientside_callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.lib import store

PAGE_MARKER = {"type": "lx-page-marker", "id": "page"}
ROUTING_STATE = {"shown_page": State({"type": "lx-page-marker", "id": ALL}, "data")}


def page_key(path: str, run_id) -> str:
    return f"{path}?run={run_id}"


def built_once(path: str):
    """Wrap a page layout(run=None, **query): when the page on screen is this path with the same run,
    the router leaves it alone (its callbacks follow the query); otherwise build it, with the marker."""

    def wrap(layout):
        @functools.wraps(layout)
        def wrapper(run=None, shown_page=(), **query):
            try:
                key = page_key(path, store.resolve_run_id(run))
            except Exception:  # an unreadable store: let the page show its own error
                key = None
            if key is not None and list(shown_page or ()) == [key]:
                raise PreventUpdate
            return html.Div([dcc.Store(id=PAGE_MARKER, data=key), layout(run=run, **query)])

        return wrapper

    return wrap


# A page that was rebuilt starts at its top; `_pages_store` is written by the router only when it builds one.
clientside_callback(
    """function(_data) {
        if (window.scrollY > 0) { window.scrollTo({top: 0, behavior: 'instant'}); }
        return window.dash_clientside.no_update;
    }""",
    Output("_pages_dummy", "className"),
    Input("_pages_store", "data"),
    prevent_initial_call=True,
)
