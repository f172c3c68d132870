"""Geometry: isotropy of word types (and tokens) across layers, frequency bias, enhancement before/after,
per-language and zero-shot values, and STS results where a run stores them."""

import dash
import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import dash_table, html

from dashboard import figures
from dashboard.components.page import run_page
from dashboard.components.widgets import card, graph
from dashboard.lib import store
from dashboard.lib.layer_profile import (
    MEASURES,
    SIMILARITY_MEASURES,
    STS_COLUMNS,
    by_measure,
    layer_table,
    sts_by_layer,
)
from store.schema import ENHANCED, GEOMETRY, LANGUAGES, SIMILARITY, STS

dash.register_page(__name__, path="/geometry", name="Geometry", title="Lexiscope · geometry", order=5)


def table(df: pd.DataFrame, id, fmt=4):
    cols = [{"id": c, "name": c, "type": "numeric" if df[c].dtype.kind in "fi" else "text"} for c in df.columns]
    data = df.round(fmt).replace({np.nan: None}).to_dict("records")
    left = [{"if": {"column_id": c["id"]}, "textAlign": "left"} for c in cols if c["type"] == "text"]
    return dash_table.DataTable(
        id=id,
        data=data,
        columns=cols,
        sort_action="native",
        style_cell_conditional=left,
        style_cell={"fontSize": "0.82rem", "padding": "3px 6px", "fontFamily": "inherit"},
        style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
        style_table={"overflowX": "auto"},
    )


@run_page
def layout(v, **_):
    g, enh, sim = (v.run.attrs_of(x.path) for x in (GEOMETRY, ENHANCED, SIMILARITY))
    parts = [html.H5(f"Geometry of {v.label}", className="mt-1")]
    layers = layer_table(v)
    shown = [c for c in layers.columns if c == "layer" or layers[c].notna().any()]
    lines = []
    if len(layers) > 1:
        for key, label in MEASURES:
            series = {"word types": layers[key]}
            if (key + "_tokens") in layers and layers[key + "_tokens"].notna().any():
                series["tokens"] = layers[key + "_tokens"]
            if (key + "_enhanced") in layers and layers[key + "_enhanced"].notna().any():
                series["word types, enhanced"] = layers[key + "_enhanced"]
            lines.append(
                dbc.Col(
                    graph(
                        f"geometry-layers-{key}",
                        figures.lines_by_category(layers["layer"], series, "layer", label, f"{label} across layers"),
                    ),
                    md=4,
                )
            )
    parts.append(
        card(
            "Isotropy and word similarity" + (" across layers (this model and plan)" if len(layers) > 1 else ""),
            table(by_measure(layers[[c for c in shown if c != "run_id"]], v.layer), "geometry-table"),
            dbc.Row(lines),
        )
    )

    # I_PC on its linear scale here: after enhancement it is near 1, and a bar of 0 before says "underflows"
    bars = [("i_cos", "I_Cos"), ("i_pc", "I_PC"), ("isoscore", "IsoScore")] + SIMILARITY_MEASURES
    before = {**g, **{k: sim.get(k) for k, _ in SIMILARITY_MEASURES}}
    after = {**enh, **{k: sim.get(k + "_enhanced") for k, _ in SIMILARITY_MEASURES}}
    labels = dict(bars)
    row = [
        dbc.Col(
            card(
                None,
                graph(
                    "geometry-enhancement",
                    figures.before_after(
                        before,
                        after,
                        [k for k, _ in bars],
                        labels,
                        title=f"Enhancement: {enh.get('clusters', '?')} clusters, {enh.get('pcs_removed', '?')} PCs removed",
                    ),
                ),
            ),
            lg=6,
        )
    ]
    pca2 = v.run.get(GEOMETRY.pca2)
    if pca2 is not None:
        fig = figures.frequency_scatter(
            pca2, v.zipf, v.words, v.run.get(GEOMETRY.pca2_explained), max_points=store.max_points()
        )
        rho = g.get("freq_pc1_spearman")
        note = f"Spearman(PC1, Zipf) = {rho:.3f}; " if isinstance(rho, float) else ""
        rho2 = g.get("freq_pc2_spearman")
        note += f"Spearman(PC2, Zipf) = {rho2:.3f}" if isinstance(rho2, float) else ""
        row.append(dbc.Col(card(None, graph("geometry-frequency", fig), html.Div(note, className="lx-muted")), lg=6))
    parts.append(dbc.Row(row))

    langs = v.run.attrs_of(LANGUAGES.path)
    if langs.get("table"):
        df = pd.DataFrame(langs["table"])
        src = langs.get("source")
        parts.append(
            card(
                f"Per language (zero-shot: enhancement fitted on {src or 'another language'})",
                table(df, "geometry-languages"),
            )
        )
    sts = sts_section(v)
    if sts is not None:
        parts.append(sts)
    return html.Div(parts)


STS_LABELS = {"raw": "raw", "individual": "enhanced (own language)", "zero_shot": "enhanced (zero-shot from en)"}


def sts_section(v):
    """STS-B Spearman x100 (docs/store.md, "STS"): this run's table, and across the layers of its family
    one chart per column with a line per language. Runs without /sts show nothing."""
    a = v.run.attrs_of(STS.path)
    if not a:
        return None
    rows = a.get("table") or []
    out = []
    if rows:
        df = pd.DataFrame(rows)
        out.append(table(df, "geometry-sts", fmt=2))
    series = sts_by_layer(v)
    layers = sorted({l for per in series.values() for s in per.values() for l in s})
    if len(layers) > 1:
        charts = []
        for col in STS_COLUMNS:
            if col in series:
                lines = {lang: [s.get(l, np.nan) for l in layers] for lang, s in series[col].items()}
                charts.append(
                    dbc.Col(
                        graph(
                            f"geometry-sts-{col}",
                            figures.lines_by_category(
                                layers, lines, "layer", "Spearman × 100", f"STS, {STS_LABELS[col]}"
                            ),
                        ),
                        md=4,
                    )
                )
        out.append(dbc.Row(charts))
    split = a.get("split")
    return card(f"Semantic textual similarity (STS-B{', ' + split if split else ''}; Spearman × 100 of cosine)", *out)
