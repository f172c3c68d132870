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
from dashboard.components.links import inline_list, labelled_feature_link, word_link
from dashboard.components.page import run_page
from dashboard.components.widgets import bar_list, card, chips, fmt_value, graph, stat_table
from dashboard.components.wordmap import clicked_row, map_figure
from dashboard.lib import store
from dashboard.lib.features import feature_row, features_on_word, top_words
from dashboard.lib.labels import (
    best_label_names,
    display_name,
    feature_concepts,
    feature_label,
    feature_labels,
    has_concept_scores,
)
from dashboard.lib.runs import neighbour_run
from dashboard.lib.table_query import table_page
from dashboard.lib.urls import as_int, href, parse, with_params
from store.schema import LINEAGE, SAE

dash.register_page(__name__, path="/features", name="Features", title="Lexiscope · features", order=2)

TABLE_COLUMNS = [
    ("feature", "feature", "numeric"),
    ("label", "label", "text"),
    ("on_word", "on word", "numeric"),  # with a word search: the feature's activation on that word
    ("mono_score", "concept F1", "numeric"),
    ("best_label", "best label", "text"),
    ("density", "density", "numeric"),
    ("max_act", "max act", "numeric"),
    ("feature_intrusion", "intrusion", "numeric"),
]
# One line per score the page shows (also in docs/concepts.md and docs/store.md).
DEFINITIONS = {
    "concept F1": "concept F1: for the feature and a label (a WordNet supersense or a concept group), the harmonic "
    "mean of precision (share of the feature's activation on the label's words) and recall (share of the "
    "label's words it fires on); the table shows the best label's.",
    "QVEC": "QVEC (Tsvetkov et al. 2015): each dimension's best correlation with a WordNet noun or verb supersense "
    "over the words, averaged; higher = the basis lines up with word senses. Compare like with like: the SAE with "
    "its random decoder, raw dimensions with the rotation; sparse features correlate less with dense supersense "
    "columns, so an SAE scores below dense dimensions on QVEC even when its features are cleaner.",
    "DistRatio": "DistRatio word intrusion (Sun et al. 2016): how far an intruder word lies from a dimension's top 5 "
    "words, over how far they lie from each other; higher = more coherent top words.",
    "random decoder": "Frozen random decoder: the same SAE config trained with its decoder fixed at random "
    "directions, only the encoder learning (Korznikov et al. 2026): what an SAE scores without learned features.",
}


@run_page
def layout(v, feature=None, fires_on=None, **_):
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
                    dbc.Col([feature_table(v, f, fires_on), feature_map_card(v, f), sae_quality(v)], lg=5),
                    dbc.Col(detail, lg=7, id="features-detail"),
                ]
            ),
        ]
    )


PAGE_SIZE = 12


def table_frame(v, fires_on: str | None):
    """(the features table's rows, the searched word's row or None): every feature, or with a word search
    the features that fire on that word, strongest first."""
    row = v.find(fires_on) if fires_on else None
    if row is None:
        return v.feature_frame, None
    return features_on_word(v, v.feature_frame, row), row


def feature_table(v, f, fires_on=None):
    """The features table, paged, sorted and filtered at the server (4096 rows would cost more to
    serialise on every click than the whole page), with a word search above it."""
    frame, row = table_frame(v, fires_on)
    columns = [{"id": k, "name": name, "type": t} for k, name, t in TABLE_COLUMNS if k in frame]
    if row is not None:
        columns[[c["id"] for c in columns].index("on_word")]["name"] = f"on '{v.words[row]}'"
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
    sort_by = default_sort(frame)
    data, pages = table_page(frame, 0, PAGE_SIZE, sort_by, "")
    search = dbc.InputGroup(
        [
            dbc.InputGroupText("features that fire on"),
            dcc.Input(
                id="features-word",
                type="text",
                value=fires_on or "",
                placeholder="a word, e.g. dog (Enter)",
                debounce=True,
                autoComplete="off",
                className="form-control",
            ),
        ],
        size="sm",
        className="mb-1",
    )
    found = []
    if fires_on and row is None:
        found = [
            notice(
                f"'{fires_on}' is not in the vocabulary of {v.run_id}.",
                color="warning",
                id="features-word-unknown",
                className="py-1 mb-1",
            )
        ]
    elif row is not None:
        found = [
            html.Div(
                f"{len(frame)} feature(s) fire on '{v.words[row]}', strongest first.",
                id="features-word-found",
                className="lx-muted",
            )
        ]
    return card(
        f"Features ({head}) — sort, filter, click a row",
        search,
        *found,
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
            style_cell_conditional=[
                {"if": {"column_id": "label"}, "minWidth": "15rem", "whiteSpace": "normal", "textAlign": "left"},
                {"if": {"column_id": "best_label"}, "textAlign": "left"},
            ],
            style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
            style_data_conditional=style,
            style_table={"overflowX": "auto"},
            persistence=True,
            persisted_props=["filter_query", "page_current"],
        ),
        html.Div(DEFINITIONS["concept F1"], className="lx-muted mt-1") if "mono_score" in frame else None,
    )


def default_sort(frame) -> list[dict]:
    """By the activation on the searched word, else by the concept score, highest first."""
    for column in ("on_word", "mono_score"):
        if column in frame:
            return [{"column_id": column, "direction": "desc"}]
    return []


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
    query = parse(search)
    v = store.view(store.resolve_run_id(query.get("run")))
    frame, _ = table_frame(v, query.get("fires_on"))
    return table_page(frame, page or 0, size or PAGE_SIZE, sort_by or default_sort(frame), filter_query)


BASES = [
    ("", "SAE features"),
    ("_random_decoder", "SAE, frozen random decoder"),
    ("_raw", "raw dimensions"),
    ("_rotated", "random rotation of them"),
]


def baseline_table(a: dict):
    """QVEC and DistRatio of the SAE beside its baselines (docs/concepts.md), and a plain warning when the
    SAE does not beat its frozen-random-decoder twin."""
    rows = [
        (name, a.get(f"qvec{suffix}"), a.get(f"intrusion{suffix}"))
        for suffix, name in BASES
        if a.get(f"qvec{suffix}") is not None or a.get(f"intrusion{suffix}") is not None
    ]
    if not rows:
        return []
    table = dbc.Table(
        [
            html.Thead(html.Tr([html.Th("basis"), html.Th("QVEC"), html.Th("DistRatio")])),
            html.Tbody([html.Tr([html.Td(n), html.Td(fmt_value(q, 3)), html.Td(fmt_value(d, 3))]) for n, q, d in rows]),
        ],
        size="sm",
        className="lx-table mb-1",
        id="features-baselines",
    )
    parts = [html.Div("Interpretability against baselines", className="fw-semibold mt-2"), table]
    worse = [
        f"{label} ({a[key]:.3f} vs {a[key + '_random_decoder']:.3f})"
        for key, label in (("qvec", "QVEC"), ("intrusion", "DistRatio"))
        if _finite(a.get(key)) and _finite(a.get(key + "_random_decoder")) and a[key] <= a[key + "_random_decoder"]
    ]
    if worse:
        parts.append(
            notice(
                "This SAE does not beat its frozen-random-decoder baseline on " + " and ".join(worse) + ": on "
                "that score its features are no more interpretable than random directions with a trained encoder.",
                color="warning",
                id="features-baseline-warning",
                className="py-2 mb-1",
            )
        )
    elif _finite(a.get("qvec_random_decoder")) or _finite(a.get("intrusion_random_decoder")):
        parts.append(
            html.Div("The SAE beats its frozen-random-decoder baseline on every score here.", className="lx-muted")
        )
    elif not any(k.endswith("_random_decoder") and a.get(k) is not None for k in a):
        parts.append(
            html.Div("No random-decoder baseline stored for this run (sae.random_baseline).", className="lx-muted")
        )
    parts += [html.Div(DEFINITIONS[k], className="lx-muted small") for k in ("QVEC", "DistRatio", "random decoder")]
    return parts


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and np.isfinite(x)


def sae_quality(v):
    """How good the SAE is: reconstruction, sparsity, interpretability against its baselines, and its
    training curves (the prototype's wish to 'scrutinize the training loop')."""
    a = v.sae_attrs
    rows = [
        (label, a.get(key))
        for key, label in (
            ("fvu", "FVU (unexplained variance)"),
            ("fvu_random_decoder", "FVU, frozen random decoder"),
            ("l0", "L0 (active features per word)"),
            ("dead_frac", "dead features"),
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
    parts += baseline_table(a)
    if history.get("step") is not None and len(history) > 1:
        parts.append(graph("features-training", figures.training_curves(history)))
    return card("SAE quality and training", *parts) if parts else html.Div()


def feature_map_card(v, f):
    coords = v.run.get(SAE.feature_map)
    if coords is None:
        return card("Feature map", html.P("No feature map stored for this run.", className="lx-muted"))
    density = v.run.get(SAE.density)
    values = np.log10(np.maximum(density, 1e-6)) if density is not None else np.zeros(len(coords), np.float32)
    fig = figures.feature_map(coords, values, selected=f, height=380, labels=feature_labels(v))
    return card("Feature map (click a point)", graph({"type": "features-map", "id": "map"}, fig))


def feature_detail(v, f: int):
    rid = v.run_id
    a = v.sae_attrs
    stats = []
    for name, label in (
        ("mono_score", "concept F1 (best label)"),
        ("density", "density"),
        ("max_act", "max activation"),
        ("feature_intrusion", "intrusion (DistRatio)"),
    ):
        arr = v.run.get(getattr(SAE, name))
        if arr is not None and (name != "mono_score" or has_concept_scores(v)):
            stats.append((label, float(arr[f])))
    best = best_label_names(v)
    if best is not None:
        stats.insert(1, ("best label", best[f] or "none (every F1 is 0)"))
    hit_rows, hit_acts = v.feature_column(f)
    stats.append(("fires on", f"{len(hit_rows):,} of {v.n:,} words"))
    parts = [
        html.H4([f"Feature #{f}"], id="features-selected", className="mb-0"),
        html.Div(feature_label(v, f), id="features-label", className="fw-semibold"),
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

    qw = feature_row(v.run, SAE.quantile_words, f)
    if qw is not None and len(hit_acts):
        bins, top = qw.shape[0], float(hit_acts.max())
        rows = []
        for q in range(bins):  # stored highest first: interval q is (top (B-q-1)/B, top (B-q)/B]
            lo, hi = top * (bins - q - 1) / bins, top * (bins - q) / bins
            inside = int(np.count_nonzero((hit_acts > lo) & (hit_acts <= hi)))
            ws = [r for r in qw[q] if r >= 0]
            rows.append(
                html.Div(
                    [
                        html.B(f"{lo:.2f}–{hi:.2f} ({inside:,} word{'' if inside == 1 else 's'})"),
                        *inline_list([word_link(rid, v.words[r]) for r in ws]),
                    ],
                    className="lx-quantile",
                )
            )
        parts.append(
            card(
                f"Activation intervals: 0 to its maximum cut into {bins} equal-width intervals, highest first, "
                f"with up to {qw.shape[1]} random words from each",
                html.Div(rows, id="features-quantiles"),
            )
        )

    concepts = feature_concepts(v, f)
    if concepts:
        parts.append(
            card(
                "What it is about: its labels by concept F1",
                dbc.Table(
                    [
                        html.Thead(html.Tr([html.Th(h) for h in ("label", "F1", "precision", "recall")])),
                        html.Tbody(
                            [
                                html.Tr(
                                    [
                                        html.Td(
                                            dcc.Link(
                                                c["label"],
                                                href=href("/concepts", run=rid, group=display_name(c["label"])),
                                                className="lx-link",
                                            )
                                        ),
                                        *[html.Td(f"{c[k]:.3f}") for k in ("f1", "precision", "recall")],
                                    ]
                                )
                                for c in concepts
                            ]
                        ),
                    ],
                    size="sm",
                    className="lx-table mb-1",
                    id="features-concepts",
                ),
                html.Div(DEFINITIONS["concept F1"], className="lx-muted small"),
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
        cos = corc if corc is not None else np.zeros(len(cor))
        cols.append(
            dbc.Col(
                card(
                    "Correlated features (cosine of activations over the words)",
                    bar_list(
                        [(labelled_feature_link(v, g), float(c)) for g, c in zip(cor, cos) if g >= 0],
                        id="features-correlated",
                        fmt="{:.2f}",
                        wide=True,
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
    its match into this layer; read its match column to invert it), each with its label."""
    out = []
    up = neighbour_run(v, +1)
    match = v.run.get(SAE.next_layer_match)
    if up is not None and match is not None and match[f] >= 0:
        cos = v.run.get(SAE.next_layer_cos)
        c = f" (cos {cos[f]:.2f})" if cos is not None else ""
        out.append(html.Div([f"layer {up.layer}: ", labelled_feature_link(up, match[f], c)]))
    down = neighbour_run(v, -1)
    prev = v.run.get(SAE.prev_layer_match)
    if down is not None and prev is not None:  # stored towards layer L-1
        if prev[f] >= 0:
            pc = v.run.get(SAE.prev_layer_cos)
            c = f" (cos {pc[f]:.2f})" if pc is not None else ""
            out.append(html.Div([f"layer {down.layer}: ", labelled_feature_link(down, prev[f], c)]))
    elif down is not None:  # else invert the layer below's match into this layer
        dm = down.run.get(SAE.next_layer_match)
        if dm is not None:
            hits = np.flatnonzero(dm == f)
            dc = down.run.get(SAE.next_layer_cos)
            links = [
                html.Div(labelled_feature_link(down, g, f" ({dc[g]:.2f})" if dc is not None else "")) for g in hits[:10]
            ]
            if links:
                out.append(html.Div([f"layer {down.layer} (features matched to this one):", *links]))
    if v.run.has(LINEAGE.chain):  # the whole chain on the Layers page (issue 14)
        trace = href("/layers", run=v.run_id, feature=int(f), click="trace")
        out.append(
            html.Div(
                dcc.Link("its lineage through every layer →", href=trace, className="lx-link", id="features-lineage")
            )
        )
    return out


@callback(
    Output("features-nav", "href"),
    Input("features-table", "active_cell"),
    Input({"type": "features-map", "id": ALL}, "clickData"),
    Input({"type": "features-wordmap", "id": ALL}, "clickData"),
    Input("features-word", "value"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def navigate(cell, _map, _wordmap, word, pathname, search):
    trigger = ctx.triggered_id
    if trigger == "features-word":
        word = (word or "").strip() or None
        if word == parse(search).get("fires_on"):
            raise PreventUpdate
        return with_params(pathname, search, fires_on=word)
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
