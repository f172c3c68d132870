"""Layers: a contextual run's SAE features through every layer (3-D view of the aligned decoder maps, matches
as lines, a feature's lineage, born and ending features, carry-over), and a word through the layers (its path
over the aligned word maps, neighbours, features, norm, cosine to the layer mean, where its neighbourhood changes
most). Everything shown is stored by compute/layer_stack.py; definitions in docs/layers.md.

URL: /layers?run=<run of a layer>&tab=features|word&feature=<f of that run's layer>&word=<w>&click=open|trace."""

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, callback, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import layer_figures
from dashboard.components.alerts import notice
from dashboard.components.links import feature_href, feature_link, inline_list, word_link
from dashboard.components.page import run_page
from dashboard.components.widgets import card, graph
from dashboard.lib import layers as lib
from dashboard.lib import store
from dashboard.lib.labels import feature_label
from dashboard.lib.runs import family
from dashboard.lib.urls import as_int, href, parse, with_params

dash.register_page(__name__, path="/layers", name="Layers", title="Lexiscope · layers", order=6)

FEATURE_DEFINITIONS = [
    (
        "decoder cosine",
        "cosine of two features' decoder directions (rows of W_dec at unit length). Baseline: the best cosine any "
        "feature reaches with the layer above's decoder turned by a random rotation (column 'rotated null').",
    ),
    (
        "threshold",
        "a match counts when its cosine reaches the cosine that the best of all pairs of unrelated (random) "
        "directions reaches with probability 0.1%.",
    ),
    (
        "activation correlation",
        "Pearson r of two features' activations over the words both layers share (0 where a feature does not fire).",
    ),
    (
        "lineage",
        "the chain of best decoder-cosine matches up and down through the layers, while every step reaches the threshold.",
    ),
    ("born / ending", "no match in the layer below / above reaches the threshold."),
    ("carried up / from below", "features of the layer whose best match above / below reaches the threshold."),
]
WORD_DEFINITIONS = [
    ("norm", "the length of the word's vector in that layer."),
    ("cos to mean", "cosine of the word's vector with the layer's mean word vector (0 for an isotropic layer)."),
    (
        "neighbour Jaccard",
        "overlap |A∩B| / |A∪B| of the word's 20 nearest neighbours in the layer and in the one below; the lowest "
        "marks the layer where its neighbourhood changes most. Baseline: two random 20-sets overlap ≈ 0.",
    ),
    (
        "shift",
        "how far the word moves from the layer below, after the two maps are scaled to unit RMS radius and "
        "rotated onto each other (Procrustes), on the aligned maps; baseline: the same on the independent "
        "per-layer maps. Steadiness of a pair of maps = the mean shift over words.",
    ),
]


def definitions(rows, id):
    return html.Div(
        [html.Div([html.B(name), " — ", text], className="mb-1") for name, text in rows],
        className="lx-muted small mb-0",
        id=id,
    )


@run_page
def layout(v, tab=None, feature=None, word=None, click=None, **_):
    tab = "word" if tab == "word" else "features"
    st = lib.stack(v)
    tabs = dbc.Nav(
        [
            dbc.NavItem(
                dbc.NavLink(
                    "Features through the layers",
                    href=href("/layers", run=v.run_id, tab="features", feature=feature),
                    active=tab == "features",
                    id="lay-tab-features",
                )
            ),
            dbc.NavItem(
                dbc.NavLink(
                    "A word through the layers",
                    href=href("/layers", run=v.run_id, tab="word", word=word),
                    active=tab == "word",
                    id="lay-tab-word",
                )
            ),
        ],
        pills=True,
        className="mb-2",
    )
    head = [dcc.Location(id="lay-nav", refresh="callback-nav"), html.H5(f"Layers of {v.label}", className="mt-1")]
    if st is None:
        return html.Div(
            head
            + [
                notice(
                    "This run has no other layers in the store: the Layers page needs a contextual run with two or "
                    "more layers computed together.",
                    color="info",
                    id="lay-none",
                )
            ]
        )
    body = features_tab(v, st, as_int(feature), click) if tab == "features" else word_tab(v, st, word)
    return html.Div(head + [tabs, body])


# ---------------------------------------------------------------- features


def features_tab(v, st, feature, click):
    if not any(lib.has_lineage(x) for x in st.views) or not v.has_sae:
        return notice(
            "These runs store no feature lineage (written before it existed, or without an SAE): recompute the "
            "family to trace its features.",
            color="warning",
            id="lay-no-lineage",
        )
    selected = None
    if feature is not None:
        if not 0 <= feature < v.n_features:
            return notice(f"Feature {feature} does not exist in layer {v.layer} (0–{v.n_features - 1}).", id="lay-bad")
        selected = lib.lineage_steps(st, v.layer, feature)
    nodes = lib.nodes(st)
    lines = lib.match_lines(st)
    path = lib.lineage_places(st, selected) if selected else None
    fig = layer_figures.layers_3d(nodes, lines, lib.places(st), path)
    n_lines = sum(len(p[1]) for p in lines)
    click = "trace" if click == "trace" else "open"
    controls = html.Div(
        [
            html.Span("A click on a feature: ", className="lx-muted me-2"),
            dbc.RadioItems(
                id="lay-click",
                options=[
                    {"label": "opens its page", "value": "open"},
                    {"label": "shows its lineage here", "value": "trace"},
                ],
                value=click,
                inline=True,
                className="d-inline-block",
            ),
        ],
        className="mb-1",
    )
    aligned = all(x.run.has(lib.LINEAGE.feature_map) for x in st.views)
    where = (
        "placed by the aligned map of their decoder directions"
        if aligned
        else "placed by each layer's own decoder map (no aligned map stored)"
    )
    caption = html.Div(
        f"{len(nodes.layer):,} features of {len(st.layers)} layers, {where}; {n_lines:,} strongest matches above "
        f"the threshold drawn (of at most {lib.MAX_LINES:,}), darker and wider = higher cosine.",
        className="lx-muted small",
    )
    side = card("Lineage", lineage_list(v, feature, selected), id="lay-lineage")
    return html.Div(
        [
            controls,
            dbc.Row(
                [
                    dbc.Col(card(None, graph("lay-3d", fig), caption), lg=8),
                    dbc.Col(side, lg=4),
                ]
            ),
            card("Carry-over per layer", carry_table(st), id="lay-carry"),
            card("Definitions", definitions(FEATURE_DEFINITIONS, "lay-feature-defs")),
        ]
    )


def lineage_list(v, feature, steps):
    if feature is None:
        return html.P(
            "Choose 'shows its lineage here' and click a feature, or open one from a feature's page.",
            className="lx-muted mb-0",
        )
    rows = []
    for s in steps:
        badges = []
        if s["born"]:
            badges.append(dbc.Badge("born", color="success", className="ms-1"))
        if s["ending"]:
            badges.append(dbc.Badge("ends", color="danger", className="ms-1"))
        score = ""
        if s["cos"] is not None:
            score = f"cos {s['cos']:.2f}" + (f", r {s['corr']:.2f}" if s["corr"] is not None else "")
        rows.append(
            html.Tr(
                [
                    html.Td(f"L{s['layer']}", className="fw-bold" if s["selected"] else ""),
                    html.Td(
                        [
                            feature_link(s["run_id"], s["feature"], f"#{s['feature']} {s['label']}"),
                            *badges,
                            html.Div(", ".join(s["top_words"]), className="lx-muted small"),
                        ]
                    ),
                    html.Td(score, className="lx-num small"),
                ],
                className="lx-marked-row" if s["selected"] else None,
            )
        )
    head = html.Div(
        [f"Feature #{feature} of layer {v.layer}, {feature_label(v, feature)}: lineage through {len(steps)} layers."],
        className="small mb-1",
        id="lay-lineage-head",
    )
    table = dbc.Table(
        [html.Thead(html.Tr([html.Th("layer"), html.Th("feature · top words"), html.Th("to the step below")]))]
        + [html.Tbody(rows)],
        size="sm",
        className="lx-table mb-0",
        id="lay-lineage-table",
    )
    return html.Div([head, table])


def _fmt(x, digits=3):
    return "—" if x is None else (f"{x:,}" if isinstance(x, int) else f"{x:.{digits}f}")


def carry_table(st):
    rows = lib.carry_over(st)
    cols = [
        ("layer", "layer"),
        ("features", "features"),
        ("firing", "firing on the words"),
        ("from_below", "carried from below"),
        ("carried_up", "carried up"),
        ("null_up", "carried up, rotated null"),
        ("null_max_cos", "best cos, rotated null"),
        ("threshold_up", "threshold to the layer above"),
        ("born", "born here"),
        ("ending", "ending here"),
    ]
    return dbc.Table(
        [html.Thead(html.Tr([html.Th(name) for _, name in cols]))]
        + [html.Tbody([html.Tr([html.Td(_fmt(r[k])) for k, _ in cols]) for r in rows])],
        size="sm",
        className="lx-table mb-0",
        id="lay-carry-table",
    )


@callback(
    Output("lay-nav", "href"),
    Input("lay-3d", "clickData"),
    Input("lay-click", "value"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def on_click(click_data, mode, pathname, search):
    query = parse(search)
    if ctx.triggered_id == "lay-click":
        if (query.get("click") or "open") == mode:
            raise PreventUpdate
        return with_params(pathname, search, click=mode)
    points = (click_data or {}).get("points") or [{}]
    node = layer_figures.split_node_id(points[0].get("customdata"))
    if node is None:
        raise PreventUpdate
    layer, f = node
    try:
        run_id = family(store.view(store.resolve_run_id(query.get("run")))).get(layer)
    except store.StoreError:
        raise PreventUpdate from None
    if run_id is None:
        raise PreventUpdate
    if mode == "trace":
        return href("/layers", run=run_id, tab="features", feature=f, click="trace")
    return feature_href(run_id, f)


# ---------------------------------------------------------------- a word


def word_tab(v, st, word):
    search = html.Div(
        [
            dbc.InputGroup(
                [
                    dcc.Input(
                        id="lay-word",
                        type="text",
                        value=word or "",
                        placeholder="a word…",
                        debounce=True,
                        className="form-control",
                    ),
                    dbc.Button("Go", id="lay-word-go", color="primary", n_clicks=0),
                ],
                size="sm",
                style={"maxWidth": "22rem"},
            )
        ],
        className="mb-2",
    )
    defs = card("Definitions", definitions(WORD_DEFINITIONS, "lay-word-defs"), steadiness_table(st))
    if not word:
        return html.Div([search, html.P("Type a word to follow it through the layers.", className="lx-muted"), defs])
    rows = lib.word_layers(st, word)
    if rows is None:
        return html.Div(
            [search, notice(f"'{word}' is not in these runs' vocabulary.", color="warning", id="lay-word-bad"), defs]
        )
    fig = layer_figures.word_path_3d(word, rows)
    changed = lib.most_changed(rows)
    summary = (
        html.Div(
            [
                "Its neighbourhood changes most at ",
                html.B(f"layer {changed['layer']}", id="lay-word-changed"),
                f" (neighbour Jaccard {changed['jaccard']:.2f} with the layer below).",
            ],
            className="mb-1",
        )
        if changed
        else html.Div("No stored neighbour overlap between layers.", className="lx-muted")
    )
    maps = "the aligned word maps" if all(r["aligned"] for r in rows) else "each layer's own 2-D map (no aligned maps)"
    return html.Div(
        [
            search,
            summary,
            dbc.Row(
                [
                    dbc.Col(
                        card(
                            None,
                            graph("lay-word-3d", fig),
                            html.Div(
                                f"'{word}' on {maps}; its 8 nearest neighbours in grey.", className="lx-muted small"
                            ),
                        ),
                        lg=6,
                    ),
                    dbc.Col(card("Per layer", word_table(rows, changed)), lg=6),
                ]
            ),
            defs,
        ]
    )


def word_table(rows, changed):
    body = []
    for r in rows:
        v = r["view"]
        feats = [feature_link(v.run_id, f, f"#{f} {lib.short(feature_label(v, f), 28)}") for f, _ in r["features"]]
        body.append(
            html.Tr(
                [
                    html.Td(f"L{r['layer']}"),
                    html.Td(_fmt(r["norm"], 2), className="lx-num"),
                    html.Td(_fmt(r["cos_mean"], 2), className="lx-num"),
                    html.Td(_fmt(r["jaccard"], 2), className="lx-num"),
                    html.Td(f"{_fmt(r['shift_aligned'], 2)} / {_fmt(r['shift_independent'], 2)}", className="lx-num"),
                    html.Td(inline_list([word_link(v.run_id, w) for w in r["neighbours"]]), className="small"),
                    html.Td(inline_list(feats, sep=" · "), className="small"),
                ],
                className="lx-marked-row" if changed is not None and r is changed else None,
            )
        )
    head = [
        "layer",
        "norm",
        "cos to mean",
        "neighbour Jaccard",
        "shift aligned / independent",
        "nearest neighbours",
        "top features",
    ]
    return dbc.Table(
        [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
        size="sm",
        className="lx-table mb-0",
        id="lay-word-table",
    )


def steadiness_table(st):
    rows = lib.steadiness(st)
    if not rows:
        return None
    mean_a = np.nanmean([r["aligned"] if r["aligned"] is not None else np.nan for r in rows])
    mean_i = np.nanmean([r["independent"] if r["independent"] is not None else np.nan for r in rows])
    return html.Div(
        [
            html.Div(
                f"Steadiness of the maps (mean shift of a word between neighbouring layers): aligned {mean_a:.3f}, "
                f"independent {mean_i:.3f} (baseline), {mean_i / mean_a:.1f}× steadier.",
                className="small mt-2",
                id="lay-steadiness",
            ),
            html.Div(
                inline_list(
                    [f"L{r['below']}→L{r['layer']}: {_fmt(r['aligned'])} / {_fmt(r['independent'])}" for r in rows],
                    sep="; ",
                ),
                className="lx-muted small",
            ),
        ]
    )


@callback(
    Output("lay-nav", "href", allow_duplicate=True),
    Input("lay-word", "value"),
    Input("lay-word-go", "n_clicks"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def on_word(word, _go, pathname, search):
    word = (word or "").strip()
    if not word or parse(search).get("word") == word:
        raise PreventUpdate
    return with_params(pathname, search, tab="word", word=word)
