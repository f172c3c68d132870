"""Concept explorer: type a group of words (or pick a stored group); features are ranked live by how
selectively they fire on the group against all other words. No retraining: stored activations only."""

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, Input, Output, State, callback, ctx, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures
from dashboard.components.alerts import notice
from dashboard.components.links import feature_href, word_link
from dashboard.components.page import run_page
from dashboard.components.widgets import card, chips, graph
from dashboard.components.wordmap import clicked_row, map_figure
from dashboard.lib import store
from dashboard.lib.concepts import rank_features_for, resolve_group
from dashboard.lib.text import split_words
from dashboard.lib.urls import href, parse, with_params
from store.schema import SAE

dash.register_page(__name__, path="/concepts", name="Concepts", title="Lexiscope · concepts", order=3)


@run_page
def layout(v, group=None, words=None, **_):
    if not v.has_sae:
        return notice(
            "This run has no SAE; the concept explorer ranks SAE features, so it needs one.", id="concepts-no-sae"
        )
    known, rows, unknown = resolve_group(v, group, split_words(words) if words else None)
    groups = [{"label": g, "value": g} for g in v.group_names]
    controls = card(
        "Concept",
        dbc.Row(
            [
                dbc.Col(
                    [
                        dbc.Textarea(
                            id="concepts-words",
                            value=words or "",
                            rows=2,
                            placeholder="type words: cat, dog, horse, cow …",
                        ),
                        dbc.Button("Rank features", id="concepts-go", size="sm", className="mt-1", n_clicks=0),
                    ],
                    md=7,
                ),
                dbc.Col(
                    [
                        html.Div("… or a stored concept group", className="lx-muted"),
                        dcc.Dropdown(
                            id="concepts-group",
                            options=groups,
                            value=group if not words else None,
                            placeholder="concept group",
                            clearable=True,
                        ),
                    ],
                    md=5,
                ),
            ]
        ),
    )
    body = []
    if unknown:
        body.append(
            notice(
                [f"Not in the vocabulary of {v.run_id} (left out): ", ", ".join(unknown)],
                color="warning",
                id="concepts-unknown",
                className="py-2",
            )
        )
    if len(rows):
        ranked = rank_features_for(v, rows, limit=25)
        body.append(
            dbc.Row(
                [
                    dbc.Col(
                        [
                            card(
                                f"Group: {len(known)} word(s)",
                                chips([word_link(v.run_id, w) for w in known], id="concepts-known"),
                            ),
                            card("Features ranked by selectivity for the group", ranking_table(v, ranked)),
                        ],
                        lg=6,
                    ),
                    dbc.Col(_map(v, rows, [r["feature"] for r in ranked]), lg=6),
                ]
            )
        )
    elif not unknown:
        body.append(
            card(
                None,
                html.P(
                    "Type a few words or pick a concept group; the features that fire on "
                    "them and not on other words are ranked here.",
                    className="lx-muted mb-0",
                ),
            )
        )
    return html.Div([dcc.Location(id="concepts-nav", refresh="callback-nav"), controls, *body])


def ranking_table(v, ranked):
    data = [
        {
            "feature": f"[#{r['feature']}]({feature_href(v.run_id, r['feature'])})",
            "id": r["feature"],
            "score": round(r["score"], 3),
            "recall": round(r["recall"], 3),
            "precision": round(r["precision"], 3),
            "mean in group": round(r["in_mean"], 3),
            "mean outside": round(r["out_mean"], 4),
        }
        for r in ranked
    ]
    cols = [{"id": "feature", "name": "feature", "presentation": "markdown"}] + [
        {"id": k, "name": k, "type": "numeric"}
        for k in ("score", "recall", "precision", "mean in group", "mean outside")
    ]
    return html.Div(
        [
            dash_table.DataTable(
                id="concepts-table",
                data=data,
                columns=cols,
                sort_action="native",
                page_size=15,
                markdown_options={"link_target": "_self"},
                style_cell={"fontSize": "0.82rem", "padding": "3px 6px", "fontFamily": "inherit"},
                style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
            ),
            html.Div(
                "score = harmonic mean of recall (share of the group's words it fires on) and precision "
                "(share of its total activation that falls on the group).",
                className="lx-muted mt-1",
            ),
        ]
    )


def _map(v, rows, ranked):
    """The group on the word map, and the ranked features on the feature map (both clickable)."""
    out = []
    fig = map_figure(
        v,
        "umap2d" if "umap2d" in v.projections() else None,
        "plain",
        highlight=rows,
        height=460,
        title="The group on the word map",
        limit=max(1, store.max_points() // 2),
    )
    if fig is not None:
        out.append(card(None, graph({"type": "concepts-map", "id": "map"}, fig)))
    coords = v.run.get(SAE.feature_map)
    if coords is not None:
        density = v.run.get(SAE.density)
        values = np.log10(np.maximum(density, 1e-6)) if density is not None else np.zeros(len(coords), np.float32)
        out.append(
            card(
                None,
                graph(
                    {"type": "concepts-fmap", "id": "map"},
                    figures.feature_map(
                        coords,
                        values,
                        highlight=ranked[:10],
                        height=360,
                        title="The 10 best-ranked features on the feature map (orange)",
                    ),
                ),
            )
        )
    return html.Div(out)


@callback(
    Output("concepts-nav", "href"),
    Input("concepts-go", "n_clicks"),
    Input("concepts-group", "value"),
    Input({"type": "concepts-map", "id": ALL}, "clickData"),
    Input({"type": "concepts-fmap", "id": ALL}, "clickData"),
    State("concepts-words", "value"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def navigate(_go, group, _map, _fmap, text, pathname, search):
    trigger = ctx.triggered_id
    query = parse(search)
    if trigger == "concepts-go":
        words = ", ".join(split_words(text))
        if not words or words == query.get("words"):
            raise PreventUpdate
        return with_params(pathname, search, words=words, group=None)
    if trigger == "concepts-group":
        if not group or group == query.get("group"):
            raise PreventUpdate
        return with_params(pathname, search, group=group, words=None)
    row = clicked_row(ctx.triggered[0]["value"] if ctx.triggered else None)
    if row is None:
        raise PreventUpdate
    run = query.get("run")
    if isinstance(trigger, dict) and trigger["type"] == "concepts-fmap":
        return href("/features", run=run, feature=row)
    return href("/words", run=run, word=str(store.view(store.resolve_run_id(run)).words[row]))
