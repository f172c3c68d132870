"""Words: the word map, search with autocomplete, one word's panel, and lasso/box selections.

The page is built once per run (components/routing.py); after that the URL's query drives it through
callbacks: `show_panel` redraws the side panel, `patch_map` replaces only the map layers that changed
(components/wordmap.py). A click on a point changes the URL in the browser (a clientside callback), so
the back button undoes it. A selection lives on the page (not in the URL): its panel lists the words,
the features they share and their concept groups, and opens them as a concept."""

import functools
import json

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, Input, Output, Patch, State, callback, clientside_callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard.components.alerts import notice
from dashboard.components.links import dim_link, feature_link
from dashboard.components.page import run_page
from dashboard.components.routing import built_once
from dashboard.components.widgets import card, graph, word_search
from dashboard.components.word_panel import (
    VECTOR_ID,
    feature_label,
    pick_a_word,
    selection_panel,
    unknown_word,
    vector_card,
    vector_parts,
    word_panel,
)
from dashboard.components.wordmap import Overlay, limit_for, map_controls, state_figure, state_patch
from dashboard.lib import store, wordsearch
from dashboard.lib.mapstate import OFF, ON, MapState
from dashboard.lib.selection import rows_in_region
from dashboard.lib.urls import href, parse, with_params

PATH = "/words"
dash.register_page(__name__, path=PATH, name="Words", title="Lexiscope · words", order=1)

MAP_ID = {"type": "words-map", "id": "map"}
MAP_CONFIG = {"modeBarButtonsToRemove": [], "scrollZoom": True}


def _state(v, search_or_query) -> MapState:
    query = parse(search_or_query) if isinstance(search_or_query, str) or search_or_query is None else search_or_query
    return MapState.of(query).resolve(v)


@built_once(PATH)
@run_page
def layout(v, **query):
    state = _state(v, query)
    fig = state_figure(v, state)
    if fig is not None:
        the_map = graph(MAP_ID, fig, config=MAP_CONFIG)
    else:  # the map's callbacks still find their graph
        the_map = html.Div(
            [notice("This run has no stored projections."), dcc.Graph(id=MAP_ID, figure={}, style={"display": "none"})]
        )
    toggles = [{"label": "labels", "value": "labels"}] + (
        [{"label": "density (2-D)", "value": "density"}] if v.projections() != ["umap3d"] else []
    )
    return html.Div(
        [
            dcc.Location(id="words-nav", refresh="callback-nav"),
            dcc.Location(id="words-nav-click", refresh="callback-nav"),
            dcc.Location(id="words-nav-dim", refresh="callback-nav"),
            dcc.Store(id="words-drawn", data=_drawn(state, None, False)),
            dcc.Store(id="words-selection", data=None),
            dcc.Store(id="words-selection-coloured", data=False),
            dbc.Row(
                [
                    dbc.Col(
                        card(
                            None,
                            dbc.Row(
                                [
                                    dbc.Col(
                                        word_search("words", state.q, "a word, a prefix or /regex/…"),
                                        md=5,
                                    ),
                                    dbc.Col(
                                        html.Span(_points_note(v, state), id="words-points", className="lx-muted"),
                                        md=7,
                                        className="pt-1",
                                    ),
                                ]
                            ),
                            html.Div(_matches_note(v, state), id="words-matches", className="lx-muted"),
                            map_controls("words", state.proj, state.color, v),
                            html.Div(
                                [
                                    html.Span("show ", className="lx-muted me-1"),
                                    dbc.Checklist(
                                        id="words-toggles",
                                        options=toggles,
                                        value=_toggles(state),
                                        inline=True,
                                        className="d-inline-block",
                                    ),
                                ],
                                className="mb-1",
                            ),
                            html.Div(_colouring_note(v, state), id="words-colouring"),
                            the_map,
                        ),
                        lg=8,
                    ),
                    dbc.Col(
                        [
                            html.Div(id="words-selection-panel"),
                            html.Div(_panel(v, state, query), id="words-panel"),
                            vector_card(v, state.row),
                        ],
                        lg=4,
                    ),
                ]
            ),
        ]
    )


def _drawn(state: MapState, selection_key, coloured: bool) -> dict:
    return {"state": state.to_dict(), "selection": selection_key, "coloured": bool(coloured)}


def _toggles(state: MapState) -> list[str]:
    return [name for name, on in (("labels", state.labels), ("density", state.density)) if on]


def _points_note(v, state: MapState) -> str:
    if state.proj is None:
        return v.label
    shown = min(v.n, limit_for(state.three_d))
    return f"{v.label} · {v.n:,} words · {shown:,} drawn ({'3-D' if state.three_d else '2-D'} map)"


def _matches_note(v, state: MapState):
    if not state.q:
        return None
    try:
        n = len(wordsearch.matches(v, state.q))
    except wordsearch.SearchError as e:
        return html.Span(f"Search {state.q}: {e}", className="text-danger")
    return html.Span(
        [
            f"{n:,} word(s) match the {wordsearch.describe(state.q)} (yellow on the map). ",
            dcc.Link("clear", href=href(PATH, run=v.run_id, **_query_without(state, "q")), id="words-matches-clear"),
        ]
    )


def _query_without(state: MapState, *keys) -> dict:
    q = {
        "word": state.word,
        "q": state.q,
        "proj": state.proj,
        "color": state.color if state.color != "group" else None,
        "feature": state.feature if state.color == "feature" else None,
        "dim": state.dim if state.color == "dim" else None,
        "labels": None if state.labels else OFF,
        "density": ON if state.density else None,
    }
    return {k: v for k, v in q.items() if k not in keys}


def _colouring_note(v, state: MapState):
    rid = v.run_id
    if state.color == "feature" and state.feature is not None:
        label = feature_label(v, state.feature)
        return html.Div(
            [
                "coloured by ",
                feature_link(rid, state.feature, f"feature #{state.feature}"),
                f" ({label})" if label else "",
                " · words where it does not fire are grey",
            ],
            className="lx-muted",
        )
    if state.color == "dim" and state.dim is not None:
        return html.Div(
            ["coloured by ", dim_link(rid, state.dim), " · words at exactly 0 are grey"], className="lx-muted"
        )
    if state.color in ("feature", "dim"):
        what = "feature" if state.color == "feature" else "dimension"
        return html.Div(f"pick a word (or a {what}) to colour by", className="lx-muted")
    return None


def _panel(v, state: MapState, query: dict):
    keep = {k: x for k, x in query.items() if k not in ("run", "word")}  # links keep the map as it is
    if state.row is not None:
        return word_panel(v, state.row, keep)
    if state.word:
        return unknown_word(v, state.word, keep)
    return pick_a_word()


def _page_view(pathname, drawn):
    """The run view of the page on screen, or PreventUpdate when the URL left it (the router rebuilds)."""
    if (pathname or "").rstrip("/") != PATH or not drawn:
        raise PreventUpdate
    return store.view(drawn["state"]["run"])


@callback(
    Output("words-panel", "children"),
    Output("words-search", "value"),
    Output("words-proj", "value"),
    Output("words-color", "value"),
    Output("words-toggles", "value"),
    Output("words-colouring", "children"),
    Output("words-matches", "children"),
    Output("words-points", "children"),
    Output("words-vector-card", "hidden"),
    Output("words-vector-title", "children"),
    Output(VECTOR_ID, "figure"),
    Output("words-vector-links", "children"),
    Input("_pages_location", "search"),
    State("_pages_location", "pathname"),
    State("words-drawn", "data"),
    State("words-search", "value"),
    State("words-proj", "value"),
    State("words-color", "value"),
    State("words-toggles", "value"),
    prevent_initial_call=True,
)
def show_panel(search, pathname, drawn, *controls):
    """The side panel and the controls follow the URL (a click, a search, back and forward)."""
    v = _page_view(pathname, drawn)
    if store.resolve_run_id(parse(search).get("run")) != v.run_id:
        raise PreventUpdate  # another run: the router builds the page again
    state = _state(v, search)
    wanted = (state.q or "", state.proj, state.color, _toggles(state))
    # the controls follow the URL (back, forward); left alone when they already show it
    echo = [no_update if _shows(old, new) else new for new, old in zip(wanted, controls)]
    return (
        _panel(v, state, parse(search)),
        *echo,
        _colouring_note(v, state),
        _matches_note(v, state),
        _points_note(v, state),
        state.row is None,
        *vector_parts(v, state.row),
    )


def _shows(control, value) -> bool:
    if isinstance(value, list):
        return sorted(control or []) == sorted(value)
    return (control or "") == value


@functools.lru_cache(maxsize=16)
def _selection_rows(run_id: str, region_json: str) -> np.ndarray:
    region = json.loads(region_json)
    v = store.view(run_id)
    if region.get("proj") not in v.projections() or region["proj"] == "umap3d":
        return np.empty(0, np.int64)
    return rows_in_region(v.coords(region["proj"]), region)


def _selection(v, region, proj) -> tuple[np.ndarray, str | None]:
    if not region or region.get("proj") != proj:
        return np.empty(0, np.int64), None
    key = json.dumps(region, sort_keys=True)
    return _selection_rows(v.run_id, key), key


@callback(
    Output(MAP_ID, "figure"),
    Output("words-drawn", "data"),
    Input("_pages_location", "search"),
    # show_panel writes this note on every URL change: the map waits for the panel, so that redrawing a
    # large map (seconds with software WebGL) never holds the panel back
    Input("words-points", "children"),
    Input("words-selection", "data"),
    Input("words-selection-coloured", "data"),
    State("_pages_location", "pathname"),
    State("words-drawn", "data"),
    prevent_initial_call=True,
)
def patch_map(search, _panel_shown, region, coloured, pathname, drawn):
    """Take the drawn map to the URL's state: a Patch of the changed layers, or the whole map when the
    projection changed."""
    v = _page_view(pathname, drawn)
    if store.resolve_run_id(parse(search).get("run")) != v.run_id:
        raise PreventUpdate
    new = _state(v, search)
    old = MapState.from_dict(drawn["state"])
    rows, key = _selection(v, region, new.proj)
    overlay = Overlay(selection=rows, selection_key=key, colour=bool(coloured and key))
    if new.proj != old.proj:
        fig = state_figure(v, new, overlay)
        return (fig if fig is not None else no_update), _drawn(new, key, overlay.colour)
    old_overlay = Overlay(selection_key=drawn.get("selection"), colour=bool(drawn.get("coloured")))
    patch = state_patch(v, old, new, old_overlay, overlay)
    if key is None and drawn.get("selection") is not None:  # cleared: drop plotly's own selection outline
        patch = patch or Patch()
        patch["layout"]["selections"] = []
    return (patch if patch is not None else no_update), _drawn(new, key, overlay.colour)


@callback(
    Output("words-selection-panel", "children"),
    Input("words-selection", "data"),
    Input("words-selection-coloured", "data"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    State("words-drawn", "data"),
    prevent_initial_call=True,
)
def show_selection(region, coloured, pathname, search, drawn):
    v = _page_view(pathname, drawn)
    proj = (region or {}).get("proj")
    rows, key = _selection(v, region, proj)
    if key is None:
        return None
    drawn_rows = np.intersect1d(rows, v.base_sample(limit_for(proj == "umap3d")), assume_unique=True)
    keep = {k: x for k, x in parse(search).items() if k not in ("run", "word")}
    return selection_panel(v, rows, len(drawn_rows), bool(coloured), keep)


# A click on a point: the new URL is computed in the browser (no round trip before the history entry).
clientside_callback(
    """function(click) {
        const p = click && click.points && click.points[0];
        if (!p) { return window.dash_clientside.no_update; }
        let word = p.text;
        if (typeof word !== 'string') {  // an event without the point's text: read it from the figure
            const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.closest('[id*="words-map"]'));
            const t = gd && gd.data[p.curveNumber] && gd.data[p.curveNumber].text;
            word = t ? t[p.pointNumber] : null;
        }
        if (typeof word !== 'string' || !word) { return window.dash_clientside.no_update; }
        const params = new URLSearchParams(window.location.search);
        if (params.get('word') === word) { return window.dash_clientside.no_update; }
        params.set('word', word);
        return window.location.pathname + '?' + params.toString();
    }""",
    Output("words-nav-click", "href"),
    Input(MAP_ID, "clickData"),
    prevent_initial_call=True,
)

# A click on the vector chart opens that dimension (a bar's customdata, or a heatmap cell's x).
clientside_callback(
    """function(clicks) {
        const t = window.dash_clientside.callback_context.triggered[0];
        const p = t && t.value && t.value.points && t.value.points[0];
        if (!p) { return window.dash_clientside.no_update; }
        const dim = Array.isArray(p.customdata) ? p.customdata[0] : (p.customdata !== undefined ? p.customdata : p.x);
        if (dim === undefined || dim === null) { return window.dash_clientside.no_update; }
        const run = new URLSearchParams(window.location.search).get('run');
        const q = new URLSearchParams();
        if (run) { q.set('run', run); }
        q.set('dim', String(Math.round(dim)));
        return '/dimensions?' + q.toString();
    }""",
    Output("words-nav-dim", "href"),
    Input({"type": "words-vector", "id": ALL}, "clickData"),
    prevent_initial_call=True,
)

# A lasso or box selection becomes a small region (the polygon, never the selected points) of the map's
# projection; Clear drops it; the colour button flips colouring by it. A region of another projection is
# ignored (and its panel hidden). Nothing here depends on what show_panel writes, so patch_map never
# waits for the panel.
clientside_callback(
    """function(selected, _clear, _colour, coloured, region, proj) {
        const nu = window.dash_clientside.no_update;
        const t = window.dash_clientside.callback_context.triggered[0] || {};
        const id = t.prop_id || '';
        if (id.includes('words-selection-colour')) { return t.value ? [nu, !coloured] : [nu, nu]; }
        if (id.includes('words-selection-clear')) { return t.value ? [null, false] : [nu, nu]; }
        let next = null;
        const lasso = selected && selected.lassoPoints;
        if (lasso && lasso.x && lasso.x.length >= 3) {
            next = {kind: 'lasso', x: lasso.x.slice(0, 2000), y: lasso.y.slice(0, 2000), proj: proj};
        } else if (selected && selected.range && selected.range.x && selected.range.y) {
            const x = selected.range.x.slice().sort((a, b) => a - b);
            const y = selected.range.y.slice().sort((a, b) => a - b);
            next = {kind: 'box', x: x, y: y, proj: proj};
        }
        if (!next && !region) { return [nu, nu]; }
        return [next, next ? coloured : false];
    }""",
    Output("words-selection", "data"),
    Output("words-selection-coloured", "data"),
    Input(MAP_ID, "selectedData"),
    Input({"type": "words-selection-clear", "id": ALL}, "n_clicks"),
    Input({"type": "words-selection-colour", "id": ALL}, "n_clicks"),
    State("words-selection-coloured", "data"),
    State("words-selection", "data"),
    State("words-proj", "value"),
    prevent_initial_call=True,
)

# The selection panel shows only over the projection it was drawn on.
clientside_callback(
    """function(proj, region) { return !!region && region.proj !== proj; }""",
    Output("words-selection-panel", "hidden"),
    Input("words-proj", "value"),
    Input("words-selection", "data"),
)

# New panel content that starts above or below the window is scrolled into view.
clientside_callback(
    """function(_panel, _selection) {
        const id = (window.dash_clientside.callback_context.triggered[0] || {}).prop_id || '';
        const el = document.getElementById(id.startsWith('words-selection') ? 'words-selection-panel' : 'words-panel');
        if (el) {
            const r = el.getBoundingClientRect();
            if (r.top < 0 || r.top > window.innerHeight - 80) { el.scrollIntoView({block: 'start'}); }
        }
        return window.dash_clientside.no_update;
    }""",
    Output("words-points", "className"),
    Input("words-panel", "children"),
    Input("words-selection-panel", "children"),
    prevent_initial_call=True,
)


@callback(
    Output("words-suggestions", "children"),
    Input("words-search", "value"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def suggest(text, search):
    run = store.resolve_run_id(parse(search).get("run"))
    if not text or run is None or wordsearch.is_regex(text.strip()):
        return []
    return [html.Option(value=w) for w in store.view(run).complete(text, limit=10)]


@callback(
    Output("words-nav", "href"),
    Input("words-go", "n_clicks"),
    Input("words-search", "n_submit"),
    Input("words-proj", "value"),
    Input("words-color", "value"),
    Input("words-toggles", "value"),
    State("words-search", "value"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def navigate(_go, _submit, proj, color, toggles, text, pathname, search):
    """Every control of this page is a URL change, so the back button undoes it."""
    trigger = ctx.triggered_id
    if isinstance(trigger, dict):
        trigger = trigger["type"]
    query = parse(search)
    if trigger in ("words-go", "words-search"):
        text = (text or "").strip()
        if not text:
            raise PreventUpdate
        if wordsearch.is_regex(text):
            return _changed(pathname, search, q=text)
        return _changed(pathname, search, word=text, q=text)
    if trigger in ("words-proj", "words-color"):
        shown = _state(store.view(store.resolve_run_id(query.get("run"))), query)
        if (proj, color) == (shown.proj, shown.color):
            raise PreventUpdate  # the controls echo the URL (back, forward, a default)
        return _changed(pathname, search, proj=proj, color=None if color == "group" else color)
    if trigger == "words-toggles":
        toggles = toggles or []
        return _changed(
            pathname,
            search,
            labels=None if "labels" in toggles else OFF,
            density=ON if "density" in toggles else None,
        )
    raise PreventUpdate


def _changed(pathname, search, **changes):
    """The URL with `changes`, or PreventUpdate when it would not change (controls echo the URL back)."""
    query = parse(search)
    effective = {k: v for k, v in changes.items() if (query.get(k) or None) != (None if v is None else str(v))}
    if not effective:
        raise PreventUpdate
    return with_params(pathname, search, **effective)
