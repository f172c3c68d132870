"""Dimensions: the mean vector with its outlier dimensions, per-dimension contribution to cosine
(rogue dimensions), and one dimension's values, words, SAE loadings and frequency correlation."""

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, Input, Output, State, callback, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures
from dashboard.components.alerts import notice
from dashboard.components.links import dim_link, inline_list, labelled_feature_link, word_link
from dashboard.components.page import run_page
from dashboard.components.widgets import bar_list, card, chips, graph, stat_table
from dashboard.components.wordmap import clicked_row
from dashboard.lib.stats import decoder_loadings, sigma_band
from dashboard.lib.urls import as_int, parse, with_params
from store.schema import GEOMETRY, SAE

dash.register_page(__name__, path="/dimensions", name="Dimensions", title="Lexiscope · dimensions", order=4)


@run_page
def layout(v, dim=None, **_):
    d = v.d
    k = as_int(dim)
    mean = v.run.get(GEOMETRY.mean)
    g = v.run.attrs_of(GEOMETRY.path)
    sigma = float(g.get("outlier_sigma", 3.0) or 3.0)
    top = []
    if mean is not None:
        fig = figures.dimension_bars(
            mean,
            outliers=v.outlier_dims,
            selected=k,
            sigma_band=sigma_band(mean, sigma),
            y_label="mean value",
            title="Mean vector (outlier dimensions in orange; click a bar)",
        )
        top.append(dbc.Col(card(None, graph({"type": "dims-bars", "id": "mean"}, fig)), lg=6))
    cc = v.run.get(GEOMETRY.cos_contrib)
    if cc is not None:
        rogue = np.argsort(-cc)[:3]
        fig = figures.dimension_bars(
            cc,
            outliers=rogue,
            selected=k,
            y_label="contribution to cosine",
            title="Contribution to the average cosine (top 3 orange)",
        )
        share = g.get("top3_share")
        top.append(
            dbc.Col(
                card(
                    None,
                    graph({"type": "dims-bars", "id": "cc"}, fig),
                    html.Div(
                        [
                            "rogue dimensions: ",
                            *inline_list([dim_link(v.run_id, r) for r in rogue]),
                            f" — together {100 * share:.0f}% of the sampled average cosine"
                            if isinstance(share, float)
                            else "",
                        ],
                        className="lx-muted",
                    ),
                ),
                lg=6,
            )
        )
    if len(v.outlier_dims):
        top.append(
            dbc.Col(
                html.Div(
                    ["Outlier dimensions: ", *inline_list([dim_link(v.run_id, o) for o in v.outlier_dims])],
                    className="lx-muted mb-2",
                    id="dims-outliers",
                ),
                width=12,
            )
        )
    if k is None:
        detail = card(
            "Pick a dimension",
            html.P(f"Click a bar, or one of the links; this run has {d} dimensions.", className="lx-muted mb-0"),
        )
    elif not 0 <= k < d:
        detail = notice(
            f"Dimension {dim} does not exist: this run has dimensions 0–{d - 1}.", color="warning", id="dims-bad"
        )
    else:
        detail = dimension_detail(v, k)
    nav = html.Div(
        [
            "dimension ",
            dcc.Input(
                id="dims-input",
                type="number",
                min=0,
                max=d - 1,
                step=1,
                value=k,
                debounce=True,
                style={"width": "6rem"},
            ),
        ],
        className="mb-2",
    )
    return html.Div([dcc.Location(id="dims-nav", refresh="callback-nav"), dbc.Row(top), nav, detail])


def dimension_detail(v, k: int):
    rid = v.run_id
    ds = v.dimension_stats
    hi, lo = ds["top"][k], ds["bottom"][k]
    col = v.embeddings[:, k]
    with_zipf = int(np.isfinite(v.zipf).sum())
    sampled = f" ({ds['spearman_n']:,}-word sample)" if 0 < ds["spearman_n"] < with_zipf else ""
    stats = [
        ("mean", float(ds["mean"][k])),
        ("std", float(ds["std"][k])),
        ("min", float(ds["min"][k])),
        ("max", float(ds["max"][k])),
        ("Spearman with Zipf frequency" + sampled, float(ds["spearman"][k])),
        ("Pearson with Zipf", float(ds["pearson"][k])),
        ("outlier dimension", "yes" if k in set(v.outlier_dims.tolist()) else "no"),
    ]
    cc = v.run.get(GEOMETRY.cos_contrib)
    if cc is not None:
        stats.append(("contribution to cosine", float(cc[k])))
    mean = v.run.get(GEOMETRY.mean)
    parts = [html.H4(f"Dimension {k}", id="dims-selected", className="mb-2")]
    marks = {"mean vector": float(mean[k])} if mean is not None else None
    parts.append(
        dbc.Row(
            [
                dbc.Col(card("Summary", stat_table(stats)), md=4),
                dbc.Col(
                    card(
                        None,
                        graph(
                            "dims-hist",
                            figures.histogram_from_counts(
                                *ds["hist"][k],
                                title=f"Values of dimension {k} over {v.n:,} words",
                                x_label="value",
                                marks=marks,
                            ),
                        ),
                    ),
                    md=8,
                ),
            ]
        )
    )
    words = [
        dbc.Col(
            card(
                "Top words (largest values)",
                chips([word_link(rid, v.words[r], f"{v.words[r]} {col[r]:.2f}") for r in hi], id="dims-top-words"),
            ),
            md=6,
        ),
        dbc.Col(
            card(
                "Bottom words (smallest values)",
                chips([word_link(rid, v.words[r], f"{v.words[r]} {col[r]:.2f}") for r in lo], id="dims-bottom-words"),
            ),
            md=6,
        ),
    ]
    parts.append(dbc.Row(words))
    if v.has_sae:
        feats, weights = decoder_loadings(v.run.array(SAE.W_dec), k, 12)
        parts.append(
            card(
                "SAE features that load most on it (decoder weight)",
                bar_list(
                    [(labelled_feature_link(v, f), float(w)) for f, w in zip(feats, weights)],
                    id="dims-features",
                    fmt="{:+.2f}",
                    wide=True,
                ),
            )
        )
    return html.Div(parts)


@callback(
    Output("dims-nav", "href"),
    Input({"type": "dims-bars", "id": ALL}, "clickData"),
    Input("dims-input", "value"),
    State("_pages_location", "pathname"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def navigate(_bars, typed, pathname, search):
    if ctx.triggered_id == "dims-input":
        dim = as_int(typed)
    else:
        dim = clicked_row(ctx.triggered[0]["value"] if ctx.triggered else None)
    if dim is None or str(dim) == parse(search).get("dim"):
        raise PreventUpdate
    return with_params(pathname, search, dim=dim)
