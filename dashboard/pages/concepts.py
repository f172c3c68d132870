"""Concept explorer: pick a label (a concept group or a WordNet supersense) and the features are ranked by their
stored concept score for it, the number the Features page shows; or type a group of words and they are
ranked live by the same formula. No retraining: stored activations only."""

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
from dashboard.lib.labels import (
    GROUP_PREFIX,
    display_name,
    feature_label,
    feature_labels,
    label_index,
    label_names,
    label_rows,
    stored_ranking,
)
from dashboard.lib.text import split_words
from dashboard.lib.urls import href, parse, with_params
from store.schema import LABELS, SAE

dash.register_page(__name__, path="/concepts", name="Concepts", title="Lexiscope · concepts", order=3)


MAX_CHIPS = 150  # words listed for a picked label (a supersense can hold thousands)


def label_options(v) -> list[dict]:
    """The dropdown: the concept groups, then the supersenses, each with its word count."""
    names = label_names(v)
    if not names:
        return [{"label": g, "value": g} for g in v.group_names]
    counts = np.diff(v.run.csc(LABELS.member).indptr)
    order = sorted(range(len(names)), key=lambda c: (not names[c].startswith(GROUP_PREFIX), names[c]))
    return [
        {
            "label": f"{display_name(names[c])} ({'concept group, ' if names[c].startswith(GROUP_PREFIX) else ''}"
            f"{counts[c]} words)",
            "value": display_name(names[c]),
        }
        for c in order
        if counts[c]
    ]


def stored_label(v, group: str | None) -> int | None:
    """The stored label a picked name stands for: a concept group (`animals` = `group.animals`), else a
    supersense (`noun.animal`)."""
    if not group:
        return None
    c = label_index(v, GROUP_PREFIX + group)
    return c if c is not None else label_index(v, group)


@run_page
def layout(v, group=None, words=None, **_):
    if not v.has_sae:
        return notice(
            "This run has no SAE; the concept explorer ranks SAE features, so it needs one.", id="concepts-no-sae"
        )
    c = None if words else stored_label(v, group)
    if c is not None:
        rows = label_rows(v, c)
        known, unknown = [str(v.words[r]) for r in rows], []
    else:
        known, rows, unknown = resolve_group(v, group, split_words(words) if words else None)
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
                        html.Div("… or a concept group or WordNet supersense", className="lx-muted"),
                        dcc.Dropdown(
                            id="concepts-group",
                            options=label_options(v),
                            value=group
                            if not words and (group in v.group_names or stored_label(v, group) is not None)
                            else None,
                            placeholder="concept group or supersense",
                            clearable=True,
                        ),
                    ],
                    md=5,
                ),
            ]
        ),
    )
    body = []
    if group and not words and group not in v.group_names and stored_label(v, group) is None:
        body.append(
            notice(
                f"Run {v.run_id} has no concept group '{str(group)[:60]}'; "
                f"its groups: {', '.join(v.group_names) or 'none'}.",
                color="warning",
                id="concepts-unknown-group",
                className="py-2",
            )
        )
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
        ranked = stored_ranking(v, c, limit=25) if c is not None else []
        stored = bool(ranked)
        if not stored:
            ranked = rank_features_for(v, rows, limit=25)
        name = display_name(label_names(v)[c]) if c is not None else None
        title = f"{name}: {len(known)} word(s)" if name else f"Group: {len(known)} word(s)"
        shown = known[:MAX_CHIPS]
        more = (
            [html.Span(f" … and {len(known) - len(shown)} more", className="lx-muted")]
            if len(known) > MAX_CHIPS
            else []
        )
        body.append(
            dbc.Row(
                [
                    dbc.Col(
                        [
                            card(title, chips([word_link(v.run_id, w) for w in shown] + more, id="concepts-known")),
                            card(
                                "Features ranked by their concept score for it",
                                ranking_table(v, ranked, stored, small=c is not None and not stored),
                            ),
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
                    "Type a few words or pick a concept group or supersense; the features that fire on "
                    "them and not on other words are ranked here.",
                    className="lx-muted mb-0",
                ),
            )
        )
    return html.Div([dcc.Location(id="concepts-nav", refresh="callback-nav"), controls, *body])


def ranking_table(v, ranked, stored: bool, small: bool = False):
    """The ranked features with their labels; `stored`: the scores are the run's stored concept scores (the
    numbers of the Features page), else computed here for the typed words by the same formula."""
    three = {"specifier": ".3f"}
    data = [
        {
            "feature": f"[#{r['feature']} {feature_label(v, r['feature'])}]({feature_href(v.run_id, r['feature'])})",
            "id": r["feature"],
            "score": r["score"],
            "precision": r["precision"],
            "recall": r["recall"],
            **({} if stored else {"mean in group": r["in_mean"], "mean outside": r["out_mean"]}),
        }
        for r in ranked
    ]
    numeric = ["score", "precision", "recall"] + ([] if stored else ["mean in group", "mean outside"])
    names = {"score": "concept F1"}
    cols = [{"id": "feature", "name": "feature", "presentation": "markdown"}] + [
        {"id": k, "name": names.get(k, k), "type": "numeric", "format": three} for k in numeric
    ]
    if stored:
        source = "The stored concept scores of this label: the numbers of the Features table and feature page."
    elif small:
        source = (
            "This label has too few words for a stored score (docs/concepts.md), so the features are ranked here "
            "by the same formula."
        )
    else:
        source = "Computed here for the typed words by the formula of the stored concept score."
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
                style_cell_conditional=[{"if": {"column_id": "feature"}, "textAlign": "left", "minWidth": "16rem"}],
                style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
            ),
            html.Div(
                "concept F1 = harmonic mean of recall (share of the label's words it fires on) and precision "
                "(share of its total activation, over all words, that falls on them). " + source,
                className="lx-muted mt-1",
                id="concepts-source",
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
                        labels=feature_labels(v),
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
