"""Features: the SAE feature table and map, and one feature's page (sae_vis / Neuronpedia style)."""

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, Input, Output, State, callback, ctx, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures
from dashboard.components.alerts import notice
from dashboard.components.contexts import top_contexts_card
from dashboard.components.jobs_links import train_another_sae
from dashboard.components.links import feature_link, inline_list, word_link
from dashboard.components.page import run_page
from dashboard.components.widgets import card, chips, graph, stat_table
from dashboard.components.wordmap import clicked_row, map_figure
from dashboard.lib import store
from dashboard.lib.features import feature_row, top_words
from dashboard.lib.runs import neighbour_run
from dashboard.lib.table_query import table_page
from dashboard.lib.urls import as_int, href, parse, with_params
from store.schema import SAE

dash.register_page(__name__, path="/features", name="Features", title="Lexiscope · features", order=2)

TABLE_COLUMNS = [
    ("feature", "feature", "numeric"),
    ("density", "density", "numeric"),
    ("max_act", "max act", "numeric"),
    ("mono_score", "mono", "numeric"),
    ("best_group", "best group", "text"),
    ("feature_intrusion", "intrusion", "numeric"),
    ("top_words", "top words", "text"),
]


@run_page
def layout(v, feature=None, **_):
    if not v.has_sae:
        return html.Div(
            [
                notice(
                    [
                        "This run has no SAE, so it has no features. Add an ",
                        html.Code("sae:"),
                        " section to its plan and precompute it again, or ",
                        train_another_sae(v.run_id, "alert-link"),
                    ],
                    id="features-no-sae",
                )
            ]
        )
    f = as_int(feature)
    if f is not None and not 0 <= f < v.n_features:
        detail = notice(
            f"Feature {feature} does not exist: this SAE has features 0–{v.n_features - 1}.",
            color="warning",
            id="features-bad",
        )
    elif f is None:
        detail = card(
            "Pick a feature",
            html.P("Click a row of the table or a point of the feature map.", className="lx-muted mb-0"),
        )
    else:
        detail = feature_detail(v, f)
    return html.Div(
        [
            dcc.Location(id="features-nav", refresh="callback-nav"),
            html.Div(train_another_sae(v.run_id), className="text-end"),
            dbc.Row(
                [
                    dbc.Col([feature_table(v, f), feature_map_card(v, f), sae_quality(v)], lg=5),
                    dbc.Col(detail, lg=7, id="features-detail"),
                ]
            ),
        ]
    )


PAGE_SIZE = 12


def feature_table(v, f):
    """The features table, paged, sorted and filtered at the server (4096 rows would cost more to
    serialise on every click than the whole page)."""
    frame = v.feature_frame
    columns = [{"id": k, "name": name, "type": t} for k, name, t in TABLE_COLUMNS if k in frame]
    a = v.sae_attrs
    head = " · ".join(
        x
        for x in [
            f"{v.n_features:,} features",
            str(a.get("arch") or ""),
            f"FVU {a['fvu']:.3f}" if isinstance(a.get("fvu"), float) else "",
            f"L0 {a['l0']:.1f}" if isinstance(a.get("l0"), (int, float)) else "",
        ]
        if x
    )
    style = [{"if": {"filter_query": f"{{feature}} = {f}"}, "backgroundColor": "#ffe3e3"}] if f is not None else []
    sort_by = [{"column_id": "mono_score", "direction": "desc"}] if "mono_score" in frame else []
    data, pages = table_page(frame, 0, PAGE_SIZE, sort_by, "")
    return card(
        f"Features ({head}) — sort, filter, click a row",
        dash_table.DataTable(
            id="features-table",
            data=data,
            columns=columns,
            page_action="custom",
            sort_action="custom",
            filter_action="custom",
            page_current=0,
            page_size=PAGE_SIZE,
            page_count=pages,
            sort_by=sort_by,
            sort_mode="single",
            filter_query="",
            style_cell={
                "fontSize": "0.82rem",
                "padding": "3px 6px",
                "fontFamily": "inherit",
                "cursor": "pointer",
                "maxWidth": "14rem",
                "overflow": "hidden",
                "textOverflow": "ellipsis",
            },
            style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
            style_data_conditional=style,
            style_table={"overflowX": "auto"},
            persistence=True,
            persisted_props=["sort_by", "filter_query", "page_current"],
        ),
    )


@callback(
    Output("features-table", "data"),
    Output("features-table", "page_count"),
    Input("features-table", "page_current"),
    Input("features-table", "page_size"),
    Input("features-table", "sort_by"),
    Input("features-table", "filter_query"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def page_features(page, size, sort_by, filter_query, search):
    v = store.view(store.resolve_run_id(parse(search).get("run")))
    return table_page(v.feature_frame, page or 0, size or PAGE_SIZE, sort_by, filter_query)


def sae_quality(v):
    """How good the SAE is: reconstruction, sparsity, interpretability against the raw basis, and its
    training curves (the prototype's wish to 'scrutinize the training loop')."""
    a = v.sae_attrs
    rows = [
        (label, a.get(key))
        for key, label in (
            ("fvu", "FVU (unexplained variance)"),
            ("l0", "L0 (active features per word)"),
            ("dead_frac", "dead features"),
            ("intrusion", "word intrusion, SAE features"),
            ("intrusion_raw", "word intrusion, raw dimensions"),
            ("intrusion_rotated", "word intrusion, random rotation"),
            ("wordsim353_spearman_sae", "WordSim353 ρ, SAE codes"),
            ("wordsim353_spearman_raw", "WordSim353 ρ, raw"),
            ("simlex999_spearman_sae", "SimLex-999 ρ, SAE codes"),
            ("simlex999_spearman_raw", "SimLex-999 ρ, raw"),
        )
        if a.get(key) is not None
    ]
    # Alphabetical, as HDF5 lists them (the order fixes the curves' colours).
    history = {k: v.run.get(path) for k, path in sorted(SAE.history.datasets().items()) if v.run.has(path)}
    parts = [stat_table(rows, id="features-quality")] if rows else []
    if history.get("step") is not None and len(history) > 1:
        parts.append(graph("features-training", figures.training_curves(history)))
    return card("SAE quality and training", *parts) if parts else html.Div()


def feature_map_card(v, f):
    coords = v.run.get(SAE.feature_map)
    if coords is None:
        return card("Feature map", html.P("No feature map stored for this run.", className="lx-muted"))
    density = v.run.get(SAE.density)
    values = np.log10(np.maximum(density, 1e-6)) if density is not None else np.zeros(len(coords), np.float32)
    fig = figures.feature_map(coords, values, selected=f, height=380)
    return card("Feature map (click a point)", graph({"type": "features-map", "id": "map"}, fig))


def feature_detail(v, f: int):
    rid = v.run_id
    a = v.sae_attrs
    stats = []
    for name, label in (
        ("density", "density"),
        ("max_act", "max activation"),
        ("mono_score", "mono score"),
        ("feature_intrusion", "intrusion"),
    ):
        arr = v.run.get(getattr(SAE, name))
        if arr is not None:
            stats.append((label, float(arr[f])))
    best = v.run.get(SAE.best_group)
    if best is not None and 0 <= best[f] < len(v.group_names):
        stats.append(("best group", v.group_names[best[f]]))
    hit_rows, hit_acts = v.feature_column(f)
    stats.append(("fires on", f"{len(hit_rows):,} of {v.n:,} words"))
    parts = [
        html.H4([f"Feature #{f}"], id="features-selected", className="mb-1"),
        html.Div(f"{v.label} · {a.get('arch', '')} SAE with {v.n_features:,} features", className="lx-muted mb-2"),
    ]

    top_rows, top_acts = top_words(v, f)
    parts.append(
        dbc.Row(
            [
                dbc.Col(card("Summary", stat_table(stats)), md=5),
                dbc.Col(
                    card(
                        "Top words",
                        chips(
                            [
                                word_link(rid, v.words[r], f"{v.words[r]} {x:.2f}")
                                for r, x in zip(top_rows[:30], top_acts[:30])
                            ],
                            id="features-top-words",
                        ),
                    ),
                    md=7,
                ),
            ]
        )
    )
    parts.append(card(None, graph("features-hist", figures.activation_histogram(hit_acts, v.n))))
    parts.append(top_contexts_card(v, f))

    qw, qa = feature_row(v.run, SAE.quantile_words, f), feature_row(v.run, SAE.quantile_acts, f)
    if qw is not None:
        rows = []
        for q in range(qw.shape[0]):
            ws = [(r, x) for r, x in zip(qw[q], qa[q] if qa is not None else np.zeros(qw.shape[1])) if r >= 0]
            if not ws:
                continue
            lo, hi = min(x for _, x in ws), max(x for _, x in ws)
            rows.append(
                html.Div(
                    [
                        html.B(f"interval {q + 1} ({lo:.2f}–{hi:.2f})"),
                        *inline_list([word_link(rid, v.words[r]) for r, _ in ws]),
                    ],
                    className="lx-quantile",
                )
            )
        parts.append(
            card(
                "Quantile groups (5 equal-width activation intervals, a sample of words from each)",
                html.Div(rows, id="features-quantiles"),
            )
        )

    scores = feature_row(v.run, SAE.group_scores, f)
    if scores is not None and len(v.group_names):
        order = np.argsort(-scores)
        parts.append(
            card(
                "Concept-group scores",
                graph(
                    "features-groups",
                    figures.hbar(
                        [v.group_names[g] for g in order],
                        scores[order],
                        x_label="score",
                        highlight=v.group_names[best[f]] if best is not None and best[f] >= 0 else None,
                    ),
                ),
            )
        )

    nb, nbc = feature_row(v.run, SAE.decoder_neighbors, f), feature_row(v.run, SAE.decoder_neighbor_cos, f)
    cols = []
    if nb is not None:
        cols.append(
            dbc.Col(
                card(
                    "Words nearest its decoder direction",
                    chips(
                        [
                            word_link(rid, v.words[r], f"{v.words[r]} {c:.2f}")
                            for r, c in zip(nb, nbc if nbc is not None else np.zeros(len(nb)))
                            if r >= 0
                        ],
                        id="features-decoder",
                    ),
                ),
                md=6,
            )
        )
    cor, corc = feature_row(v.run, SAE.correlated, f), feature_row(v.run, SAE.correlated_cos, f)
    if cor is not None:
        cols.append(
            dbc.Col(
                card(
                    "Correlated features",
                    chips(
                        [
                            feature_link(rid, g, f"#{g} {c:.2f}")
                            for g, c in zip(cor, corc if corc is not None else np.zeros(len(cor)))
                            if g >= 0
                        ],
                        id="features-correlated",
                    ),
                ),
                md=6,
            )
        )
    if cols:
        parts.append(dbc.Row(cols))
    layers = neighbour_layers(v, f)
    if layers:
        parts.append(card("Matched features in neighbouring layers", html.Div(layers, id="features-layers")))

    fig = map_figure(
        v,
        "umap2d" if "umap2d" in v.projections() else None,
        "feature",
        feature=f,
        highlight=top_rows[:30],
        height=420,
        title="Its words on the word map",
        limit=max(1, store.max_points() // 4),
    )
    if fig is not None:
        parts.append(card(None, graph({"type": "features-wordmap", "id": "map"}, fig)))
    return html.Div(parts)


def neighbour_layers(v, f):
    """Links to the matched feature one layer up (stored) and one layer down (the run below stores
    its match into this layer; read its match column to invert it)."""
    out = []
    up = neighbour_run(v, +1)
    match = v.run.get(SAE.next_layer_match)
    if up is not None and match is not None and match[f] >= 0:
        cos = v.run.get(SAE.next_layer_cos)
        c = f" (cos {cos[f]:.2f})" if cos is not None else ""
        out.append(html.Div([f"layer {up.layer}: ", feature_link(up.run_id, match[f], f"feature #{match[f]}"), c]))
    down = neighbour_run(v, -1)
    prev = v.run.get(SAE.prev_layer_match)
    if down is not None and prev is not None:  # stored towards layer L-1
        if prev[f] >= 0:
            pc = v.run.get(SAE.prev_layer_cos)
            c = f" (cos {pc[f]:.2f})" if pc is not None else ""
            link = feature_link(down.run_id, prev[f], f"feature #{prev[f]}")
            out.append(html.Div([f"layer {down.layer}: ", link, c]))
    elif down is not None:  # else invert the layer below's match into this layer
        dm = down.run.get(SAE.next_layer_match)
        if dm is not None:
            hits = np.flatnonzero(dm == f)
            dc = down.run.get(SAE.next_layer_cos)
            links = [
                feature_link(down.run_id, g, f"#{g}" + (f" ({dc[g]:.2f})" if dc is not None else "")) for g in hits[:10]
            ]
            if links:
                out.append(html.Div([f"layer {down.layer} (features matched to this one): ", *inline_list(links)]))
    return out


@callback(
    Output("features-nav", "href"),
    Input("features-table", "active_cell"),
    Input({"type": "features-map", "id": ALL}, "clickData"),
    Input({"type": "features-wordmap", "id": ALL}, "clickData"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def navigate(cell, _map, _wordmap, pathname, search):
    trigger = ctx.triggered_id
    if trigger == "features-table":
        if not cell or cell.get("row_id") is None:
            raise PreventUpdate
        return with_params(pathname, search, feature=int(cell["row_id"]))
    click = ctx.triggered[0]["value"] if ctx.triggered else None
    picked = clicked_row(click)
    if picked is None:
        raise PreventUpdate
    if isinstance(trigger, dict) and trigger["type"] == "features-wordmap":
        run = parse(search).get("run")
        return href("/words", run=run, word=str(store.view(store.resolve_run_id(run)).words[picked]))
    return with_params(pathname, search, feature=picked)
