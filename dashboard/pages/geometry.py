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

dash.register_page(__name__, path="/geometry", name="Geometry", title="Lexiscope · geometry", order=5)

MEASURES = [("i_cos", "I_Cos (mean cosine)"), ("i_pc", "I_PC"), ("isoscore", "IsoScore")]
SIMILARITY = [("wordsim353_spearman", "WordSim353 ρ"), ("simlex999_spearman", "SimLex-999 ρ")]


def layer_table(v) -> pd.DataFrame:
    """One row per layer of this run's family: isotropy of word types, tokens and enhanced vectors."""
    rows = []
    for layer, run_id in sorted(store.family(v).items()):
        try:
            r = store.view(run_id)
        except store.StoreError:
            continue
        row = {"layer": layer, "run_id": run_id}
        for group, suffix in (("geometry", ""), ("geometry_tokens", "_tokens"), ("enhanced", "_enhanced")):
            a = r.group_attrs(group)
            for k, _ in MEASURES:
                row[k + suffix] = _num(a.get(k))
        for k, _ in SIMILARITY:
            s = r.group_attrs("similarity")
            row[k] = _num(s.get(k))
            row[k + "_enhanced"] = _num(s.get(k + "_enhanced"))
        rows.append(row)
    return pd.DataFrame(rows)


ROW_LABELS = {**{k: f"{label}, word types" for k, label in MEASURES},
              **{k + "_tokens": f"{label}, tokens" for k, label in MEASURES},
              **{k + "_enhanced": f"{label}, after enhancement" for k, label in MEASURES},
              **{k: label for k, label in SIMILARITY},
              **{k + "_enhanced": f"{label}, after enhancement" for k, label in SIMILARITY}}


def by_measure(layers: pd.DataFrame, current: int) -> pd.DataFrame:
    """Measures as rows and layers as columns (the current run's layer marked), readable at any width."""
    out = {"measure": [ROW_LABELS.get(c, c) for c in layers.columns if c != "layer"]}
    for _, r in layers.iterrows():
        name = f"layer {int(r['layer'])}" + (" (this run)" if int(r["layer"]) == current and len(layers) > 1 else "")
        out[name] = [r[c] for c in layers.columns if c != "layer"]
    return pd.DataFrame(out)


def _num(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return np.nan
    return x


def table(df: pd.DataFrame, id, fmt=4):
    cols = [{"id": c, "name": c, "type": "numeric" if df[c].dtype.kind in "fi" else "text"} for c in df.columns]
    data = df.round(fmt).replace({np.nan: None}).to_dict("records")
    left = [{"if": {"column_id": c["id"]}, "textAlign": "left"} for c in cols if c["type"] == "text"]
    return dash_table.DataTable(id=id, data=data, columns=cols, sort_action="native", style_cell_conditional=left,
                                style_cell={"fontSize": "0.82rem", "padding": "3px 6px", "fontFamily": "inherit"},
                                style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
                                style_table={"overflowX": "auto"})


@run_page
def layout(v, **_):
    g, enh, sim = v.group_attrs("geometry"), v.group_attrs("enhanced"), v.group_attrs("similarity")
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
            lines.append(dbc.Col(graph(f"geometry-layers-{key}", figures.lines_by_category(
                layers["layer"], series, "layer", label, f"{label} across layers")), md=4))
    parts.append(card("Isotropy and word similarity" + (" across layers (this model and plan)" if len(layers) > 1
                                                         else ""),
                      table(by_measure(layers[[c for c in shown if c != "run_id"]], v.layer), "geometry-table"),
                      dbc.Row(lines)))

    before = {**g, **{k: sim.get(k) for k, _ in SIMILARITY}}
    after = {**enh, **{k: sim.get(k + "_enhanced") for k, _ in SIMILARITY}}
    labels = dict(MEASURES + SIMILARITY)
    row = [dbc.Col(card(None, graph("geometry-enhancement", figures.before_after(
        before, after, [k for k, _ in MEASURES + SIMILARITY], labels,
        title=f"Enhancement: {enh.get('clusters', '?')} clusters, {enh.get('pcs_removed', '?')} PCs removed"))),
        lg=6)]
    pca2 = v.get("geometry/pca2")
    if pca2 is not None:
        fig = figures.frequency_scatter(pca2, v.zipf, v.words, v.get("geometry/pca2_explained"),
                                        max_points=store.max_points())
        rho = g.get("freq_pc1_spearman")
        note = f"Spearman(PC1, Zipf) = {rho:.3f}; " if isinstance(rho, float) else ""
        rho2 = g.get("freq_pc2_spearman")
        note += f"Spearman(PC2, Zipf) = {rho2:.3f}" if isinstance(rho2, float) else ""
        row.append(dbc.Col(card(None, graph("geometry-frequency", fig), html.Div(note, className="lx-muted")),
                           lg=6))
    parts.append(dbc.Row(row))

    langs = v.group_attrs("languages")
    if langs.get("table"):
        df = pd.DataFrame(langs["table"])
        src = langs.get("source")
        parts.append(card(f"Per language (zero-shot: enhancement fitted on {src or 'another language'})",
                          table(df, "geometry-languages")))
    sts = sts_section(v)
    if sts is not None:
        parts.append(sts)
    return html.Div(parts)


STS_COLUMNS = ("raw", "individual", "zero_shot")
STS_LABELS = {"raw": "raw", "individual": "enhanced (own language)", "zero_shot": "enhanced (zero-shot from en)"}


def sts_section(v):
    """STS-B Spearman x100 (docs/store.md, "STS"): this run's table, and across the layers of its family
    one chart per column with a line per language. Runs without /sts show nothing."""
    a = v.group_attrs("sts")
    if not a:
        return None
    rows = a.get("table") or []
    out = []
    if rows:
        df = pd.DataFrame(rows)
        out.append(table(df, "geometry-sts", fmt=2))
    series = {}
    for layer, run_id in sorted(store.family(v).items()):
        try:
            r = store.view(run_id)
            langs = r.group_attrs("sts").get("languages") or []
            scores = r.get("sts/scores")
        except store.StoreError:
            continue
        if scores is None:
            continue
        for i, lang in enumerate(langs):
            for j, col in enumerate(STS_COLUMNS[:scores.shape[1]]):
                series.setdefault(col, {}).setdefault(lang, {})[layer] = float(scores[i, j])
    layers = sorted({l for per in series.values() for s in per.values() for l in s})
    if len(layers) > 1:
        charts = []
        for col in STS_COLUMNS:
            if col in series:
                lines = {lang: [s.get(l, np.nan) for l in layers] for lang, s in series[col].items()}
                charts.append(dbc.Col(graph(f"geometry-sts-{col}", figures.lines_by_category(
                    layers, lines, "layer", "Spearman × 100", f"STS, {STS_LABELS[col]}")), md=4))
        out.append(dbc.Row(charts))
    split = a.get("split")
    return card(f"Semantic textual similarity (STS-B{', ' + split if split else ''}; Spearman × 100 of cosine)",
                *out)
