"""Words: the word map, search with autocomplete, and one word's panel (features, neighbours, vector)."""

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, Input, Output, State, callback, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures
from dashboard.components.alerts import notice
from dashboard.components.contexts import vector_source, word_contexts_card
from dashboard.components.links import dim_link, feature_link, inline_list, word_link
from dashboard.components.page import run_page
from dashboard.components.widgets import bar_list, card, chips, graph, word_search
from dashboard.components.wordmap import clicked_row, map_controls, map_figure
from dashboard.lib import store
from dashboard.lib.features import gist
from dashboard.lib.labels import word_supersenses
from dashboard.lib.layer_profile import enhancement_note
from dashboard.lib.urls import as_int, href, parse, with_params

dash.register_page(__name__, path="/words", name="Words", title="Lexiscope · words", order=1)


@run_page
def layout(v, word=None, proj="umap3d", color="group", feature=None, dim=None, **_):
    row = v.find(word) if word else None
    panel = word_panel(v, row) if row is not None else None
    feature, dim = as_int(feature), as_int(dim)
    if row is not None and color == "feature" and feature is None and v.has_sae:
        top, _ = v.word_features(row, limit=1)
        feature = int(top[0]) if len(top) else None  # colour by the selected word's strongest feature
    if row is not None and color == "dim" and dim is None:
        dim = int(np.argmax(np.abs(v.embeddings[row])))
    if word and row is None:
        close = v.complete(word[:3], limit=8)
        panel = notice(
            [
                f"'{word}' is not in the vocabulary of run {v.run_id}. ",
                *(["Words starting like it: ", *inline_list([word_link(v.run_id, w) for w in close])] if close else []),
            ],
            color="warning",
            id="words-unknown",
        )
    fig = map_figure(v, proj, color, feature, dim, selected=row)
    if fig is not None:
        the_map = graph({"type": "words-map", "id": "map"}, fig)
    else:
        the_map = notice("This run has no stored projections.")
    colouring = None
    if color == "feature" and feature is not None:
        colouring = html.Div(
            ["coloured by ", feature_link(v.run_id, feature, f"feature #{feature}")], className="lx-muted"
        )
    elif color == "dim" and dim is not None:
        colouring = html.Div(["coloured by ", dim_link(v.run_id, dim)], className="lx-muted")
    elif color in ("feature", "dim"):
        colouring = html.Div(
            f"pick a word (or a {'feature' if color == 'feature' else 'dimension'}) to colour by", className="lx-muted"
        )
    return html.Div(
        [
            dcc.Location(id="words-nav", refresh="callback-nav"),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            card(
                                None,
                                dbc.Row(
                                    [
                                        dbc.Col(word_search("words", word), md=5),
                                        dbc.Col(
                                            html.Span(
                                                f"{v.label} · {v.n:,} words · showing at most "
                                                f"{store.max_points():,} points",
                                                className="lx-muted",
                                            ),
                                            md=7,
                                            className="pt-1",
                                        ),
                                    ]
                                ),
                                map_controls("words", proj, color, v),
                                colouring,
                                the_map,
                            ),
                        ],
                        lg=8,
                    ),
                    dbc.Col(
                        panel
                        or card(
                            "Pick a word",
                            html.P(
                                "Search above or click a point on the map. The word's SAE features, nearest neighbours and "
                                "vector appear here; every item links on.",
                                className="lx-muted mb-0",
                            ),
                        ),
                        lg=4,
                        id="words-panel",
                    ),
                ]
            ),
        ]
    )


def word_panel(v, row: int):
    word = str(v.words[row])
    rid = v.run_id
    group = v.group[row]
    facts = [f"row {row}", f"Zipf {v.zipf[row]:.2f}" if np.isfinite(v.zipf[row]) else "Zipf unknown"]
    if group >= 0 and group < len(v.group_names):
        facts.append(f"group: {v.group_names[group]}")
    senses = word_supersenses(v, row)
    if senses:
        facts.append("WordNet: " + ", ".join(f"{name} {share:.2f}" for name, share in senses))
    parts = [
        html.H4(word, id="words-selected", className="mb-0"),
        html.Div(" · ".join(facts), className="lx-muted mb-2"),
        vector_source(v, row),
    ]

    if v.has_sae:
        feats, acts = v.word_features(row, limit=10)
        if len(feats):
            parts.append(
                card(
                    "Top SAE features",
                    bar_list(
                        [
                            (
                                html.Span(
                                    [feature_link(rid, f, f"#{f}"), html.Span(" " + gist(v, f), className="lx-muted")]
                                ),
                                float(a),
                            )
                            for f, a in zip(feats, acts)
                        ],
                        id="words-features",
                    ),
                )
            )
        else:
            parts.append(card("Top SAE features", html.P("No feature fires on this word.", className="lx-muted")))
    else:
        parts.append(card("Top SAE features", html.P("This run has no SAE.", className="lx-muted mb-0")))

    parts.append(word_contexts_card(v, row))
    for enhanced, title in ((False, "Nearest neighbours"), (True, "… after isotropy enhancement")):
        nb = v.neighbors(row, enhanced=enhanced)
        if nb is None:
            continue
        idx, cos = nb
        note = enhancement_note(v) if enhanced else None
        parts.append(
            card(
                title,
                html.Div(note, className="lx-muted small", id="words-enhancement-note") if note else None,
                chips(
                    [word_link(rid, v.words[j], f"{v.words[j]} {c:.2f}") for j, c in zip(idx[:15], cos[:15])],
                    id="words-neighbors-enhanced" if enhanced else "words-neighbors",
                ),
            )
        )

    vec = v.embeddings[row]
    outliers = v.outlier_dims
    fig = figures.dimension_bars(vec, outliers=outliers, title=None, y_label="value", height=220)
    top = np.argsort(-np.abs(vec))[:5]
    parts.append(
        card(
            "Vector (click a bar to open that dimension)",
            graph({"type": "words-vector", "id": "vector"}, fig),
            html.Div(
                [
                    "largest: ",
                    *inline_list([dim_link(rid, d, f"dim {d}") for d in top]),
                    *(
                        [" · outlier dims: ", *inline_list([dim_link(rid, d, f"{d}") for d in outliers[:10]])]
                        if len(outliers)
                        else []
                    ),
                ],
                className="lx-muted",
            ),
        )
    )
    return html.Div(parts)


@callback(
    Output("words-suggestions", "children"),
    Input("words-search", "value"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def suggest(text, search):
    run = store.resolve_run_id(parse(search).get("run"))
    if not text or run is None:
        return []
    return [html.Option(value=w) for w in store.view(run).complete(text, limit=10)]


@callback(
    Output("words-nav", "href"),
    Input("words-go", "n_clicks"),
    Input("words-search", "n_submit"),
    Input({"type": "words-map", "id": ALL}, "clickData"),
    Input("words-proj", "value"),
    Input("words-color", "value"),
    Input({"type": "words-vector", "id": ALL}, "clickData"),
    State("words-search", "value"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def navigate(_go, _submit, _map, proj, color, _vector, text, pathname, search):
    """Every interaction on this page is a URL change, so the back button undoes it."""
    trigger = ctx.triggered_id
    if isinstance(trigger, dict):
        trigger = trigger["type"]
    click = ctx.triggered[0]["value"] if ctx.triggered else None
    if trigger in ("words-go", "words-search"):
        if not text or not text.strip():
            raise PreventUpdate
        return with_params(pathname, search, word=text.strip())
    if trigger == "words-map":
        row = clicked_row(click)
        if row is None:
            raise PreventUpdate
        v = store.view(store.resolve_run_id(parse(search).get("run")))
        return with_params(pathname, search, word=str(v.words[row]))
    if trigger == "words-vector":
        dim = clicked_row(click)
        if dim is None:
            raise PreventUpdate
        return href("/dimensions", run=parse(search).get("run"), dim=dim)
    if trigger == "words-proj":
        return _changed(pathname, search, "proj", proj, "umap3d")
    if trigger == "words-color":
        return _changed(pathname, search, "color", color, "group")
    raise PreventUpdate


def _changed(pathname, search, key, value, default):
    if (parse(search).get(key) or default) == value:
        raise PreventUpdate
    return with_params(pathname, search, **{key: value})
