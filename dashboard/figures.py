"""Pure figure builders: arrays in, go.Figure out. No store, no Dash; tested without a browser.

Point coordinates and colours go in as float32 numpy arrays, which plotly serialises as typed
(base64) arrays, never as lists of Python floats. Every clickable point carries its id (word row,
feature, dimension) in `customdata` as a plain list of ints: dcc.Graph reads clickData's customdata
from the undecoded figure data, where a typed array would come back undefined."""
import numpy as np
import plotly.graph_objects as go

TEMPLATE = "plotly_white"
GREY = "#c4c8d0"
HIGHLIGHT = "#e8590c"
SELECTED = "#c92a2a"
OUTLIER = "#e8590c"
BASE = "#2c7be5"
PALETTE = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#ff7f0e", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354"]


def _layout(fig: go.Figure, title=None, height=None, **kw) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0.01, font=dict(size=14)) if title else None,
                      margin=dict(l=55, r=20, t=40 if title else 15, b=45), height=height,
                      font=dict(size=12), **kw)
    return fig


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _ids(a) -> list[int]:
    return np.asarray(a, dtype=np.int64).tolist()


# -- word maps --------------------------------------------------------------------------------

def word_map(coords: np.ndarray, rows: np.ndarray, words, *, color: str = "group", groups=None,
             group_names=(), values=None, value_label: str = "", highlight=(), selected=None,
             title=None, height=620, uirevision="map") -> go.Figure:
    """A 2-D or 3-D scatter of the words `rows` (coords: (len(rows), 2|3) float32).

    color: 'group' (categorical `groups`, -1 = none, drawn grey and small) or 'value' (continuous
    `values`, NaN grey). `highlight` rows are drawn larger in orange, `selected` (a row) in red with
    its label. `words` are the labels of `rows`, in the same order."""
    coords = _f32(coords)
    rows = np.asarray(rows, dtype=np.int32)
    words = np.asarray(words, dtype=object)
    three_d = coords.shape[1] == 3
    Trace = go.Scatter3d if three_d else go.Scattergl
    fig = go.Figure()

    def add(mask, name, marker, text_mode=None, showlegend=True):
        if not np.any(mask):
            return
        xyz = dict(x=coords[mask, 0], y=coords[mask, 1])
        if three_d:
            xyz["z"] = coords[mask, 2]
        fig.add_trace(Trace(**xyz, mode=text_mode or "markers", name=name, marker=marker,
                            text=words[mask], customdata=_ids(rows[mask]), showlegend=showlegend,
                            hovertemplate="%{text}<extra>" + name + "</extra>",
                            textposition="top center" if text_mode else None))

    size = 2.5 if three_d else 4
    if color == "group" and groups is not None:
        groups = np.asarray(groups)
        add(groups < 0, "no group", dict(size=size * 0.8, color=GREY, opacity=0.5))
        for g in np.unique(groups[groups >= 0]):
            name = group_names[g] if g < len(group_names) else f"group {g}"
            add(groups == g, name, dict(size=size * 1.8, color=PALETTE[int(g) % len(PALETTE)], opacity=0.9))
    elif values is not None:
        values = _f32(values)
        ok = np.isfinite(values)
        add(~ok, "no value", dict(size=size, color=GREY, opacity=0.4))
        order = np.flatnonzero(ok)[np.argsort(values[ok], kind="stable")]  # strongest drawn last, on top
        mask = np.zeros(len(rows), bool)
        mask[order] = True
        if np.any(mask):
            xyz = dict(x=coords[order, 0], y=coords[order, 1])
            if three_d:
                xyz["z"] = coords[order, 2]
            fig.add_trace(Trace(**xyz, mode="markers", name=value_label or "value",
                                marker=dict(size=size * 1.2, color=values[order], colorscale="Viridis",
                                            colorbar=dict(title=dict(text=value_label, side="right"),
                                                          thickness=12, len=0.6), opacity=0.85),
                                text=words[order], customdata=_ids(rows[order]), showlegend=False,
                                hovertemplate="%{text}: %{marker.color:.3f}<extra></extra>"))
    else:
        add(np.ones(len(rows), bool), "words", dict(size=size, color=BASE, opacity=0.6))

    hl = np.isin(rows, np.asarray(list(highlight), dtype=np.int64))
    if selected is not None:
        hl &= rows != selected
    add(hl, "highlighted", dict(size=size * 2.6, color=HIGHLIGHT, line=dict(width=0.5, color="#fff")),
        text_mode="markers+text" if hl.sum() <= 40 else None)
    if selected is not None:
        add(rows == selected, "selected", dict(size=size * 4, color=SELECTED, symbol="diamond"),
            text_mode="markers+text")

    axes = dict(showspikes=False, zeroline=False)
    if three_d:
        fig.update_layout(scene=dict(xaxis=dict(title="UMAP 1", **axes), yaxis=dict(title="UMAP 2", **axes),
                                     zaxis=dict(title="UMAP 3", **axes), aspectmode="cube"))
    _layout(fig, title, height, uirevision=uirevision, clickmode="event",
            legend=dict(itemsizing="constant", orientation="v", x=1.0, y=1.0, font=dict(size=11)))
    return fig


def label_axes_2d(fig: go.Figure, x: str, y: str) -> go.Figure:
    fig.update_xaxes(title=x)
    fig.update_yaxes(title=y)
    return fig


# -- runs and geometry ------------------------------------------------------------------------

def measure_across_layers(table, measure: str, label: str | None = None) -> go.Figure:
    """One line per model of `measure` against layer; each point's customdata is its run_id."""
    fig = go.Figure()
    if measure in table:
        for model, sub in table.sort_values("layer").groupby("model", sort=True):
            sub = sub[np.isfinite(sub[measure].astype(float))]
            if sub.empty:
                continue
            fig.add_trace(go.Scatter(x=sub["layer"].to_numpy(np.int32), y=_f32(sub[measure].astype(float)),
                                     mode="lines+markers", name=str(model), customdata=sub["run_id"].tolist(),
                                     hovertemplate="%{customdata}<br>layer %{x}: %{y:.4f}<extra></extra>"))
    _layout(fig, label or measure, 280, legend=dict(orientation="h", y=-0.3))
    fig.update_xaxes(title="layer", dtick=1)
    fig.update_yaxes(title=label or measure)
    return fig


def frequency_scatter(pca2: np.ndarray, zipf: np.ndarray, words, explained=None, max_points: int = 20000,
                      seed: int = 0) -> go.Figure:
    """PCA of the word vectors coloured by Zipf frequency (frequency bias, Gao et al. 2019)."""
    pca2, zipf = _f32(pca2), _f32(zipf)
    n = len(pca2)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    z = zipf[rows]
    fig = go.Figure(go.Scattergl(x=pca2[rows, 0], y=pca2[rows, 1], mode="markers",
                                 text=np.asarray(words, dtype=object)[rows],
                                 marker=dict(size=4, color=z, colorscale="Viridis", opacity=0.7,
                                             colorbar=dict(title=dict(text="Zipf", side="right"), thickness=12)),
                                 hovertemplate="%{text} (Zipf %{marker.color:.2f})<extra></extra>"))
    ex = [f" ({100 * e:.1f}% var.)" for e in explained] if explained is not None else ["", ""]
    _layout(fig, "Frequency bias: PCA coloured by Zipf frequency", 420)
    return label_axes_2d(fig, "PC 1" + ex[0], "PC 2" + ex[1])


def before_after(before: dict, after: dict, keys, labels=None, title="") -> go.Figure:
    """Grouped bars of the same measures before and after isotropy enhancement (missing ones skipped)."""
    keys = [k for k in keys if _num(before.get(k)) is not None or _num(after.get(k)) is not None]
    names = [(labels or {}).get(k, k) for k in keys]
    fig = go.Figure([
        go.Bar(name="before", x=names, y=_f32([_num(before.get(k), np.nan) for k in keys]), marker_color="#868e96",
               texttemplate="%{y:.3f}", textposition="outside"),
        go.Bar(name="after enhancement", x=names, y=_f32([_num(after.get(k), np.nan) for k in keys]),
               marker_color=BASE, texttemplate="%{y:.3f}", textposition="outside")])
    _layout(fig, title, 300, barmode="group", legend=dict(orientation="h", y=1.12, x=0.4))
    fig.update_yaxes(title="value", rangemode="tozero")
    fig.update_xaxes(title="measure")
    return fig


def _num(v, default=None):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def lines_by_category(x, series: dict, x_label: str, y_label: str, title: str) -> go.Figure:
    """Several named y-series over the same x (e.g. STS Spearman per language across layers)."""
    fig = go.Figure()
    for name, y in series.items():
        fig.add_trace(go.Scatter(x=np.asarray(x), y=_f32(y), mode="lines+markers", name=str(name)))
    _layout(fig, title, 300)
    return label_axes_2d(fig, x_label, y_label)


# -- dimensions -------------------------------------------------------------------------------

def dimension_bars(values: np.ndarray, *, outliers=(), selected=None, sigma_band=None, title="",
                   y_label="value", height=300) -> go.Figure:
    """One bar per dimension (customdata = dimension), outliers in another colour, optional
    mean ± k·sigma band (a (low, high) pair) and the selected dimension outlined."""
    values = _f32(values)
    d = len(values)
    dims = np.arange(d, dtype=np.int32)
    out = np.isin(dims, np.asarray(list(outliers), dtype=np.int64))
    colors = np.where(out, OUTLIER, BASE).astype(object)
    line = np.zeros(d, np.float32)
    if selected is not None and 0 <= selected < d:
        colors[selected] = SELECTED
        line[selected] = 2
    fig = go.Figure(go.Bar(x=dims, y=values, marker=dict(color=colors, line=dict(width=line, color="#000")),
                           customdata=_ids(dims), name=y_label,
                           hovertemplate="dim %{x}: %{y:.4f}<extra></extra>"))
    if sigma_band is not None:
        lo, hi = sigma_band
        fig.add_hrect(y0=lo, y1=hi, fillcolor="#adb5bd", opacity=0.25, line_width=0,
                      annotation_text="mean ± 3σ", annotation_position="top left")
    _layout(fig, title, height, bargap=0.15, showlegend=False)
    return label_axes_2d(fig, "dimension", y_label)


def histogram(values: np.ndarray, *, title="", x_label="value", y_label="words", bins=60, marks=None,
              log_y=False, height=280) -> go.Figure:
    """A histogram computed here (numpy), so only bin edges and counts are sent to the browser."""
    values = _f32(values)
    values = values[np.isfinite(values)]
    counts, edges = np.histogram(values, bins=bins) if len(values) else (np.zeros(0), np.zeros(1))
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=_f32(centers), y=counts.astype(np.int32), width=_f32(np.diff(edges)),
                           marker_color=BASE, hovertemplate=f"{x_label} %{{x:.3f}}: %{{y}} {y_label}<extra></extra>"))
    for label, x in (marks or {}).items():
        fig.add_vline(x=float(x), line_color=SELECTED, line_dash="dash", annotation_text=label)
    _layout(fig, title, height, bargap=0)
    if log_y:
        fig.update_yaxes(type="log")
    return label_axes_2d(fig, x_label, y_label)


def hbar(labels, values, *, title="", x_label="", customdata=None, highlight=None, height=None,
         color=BASE) -> go.Figure:
    """Horizontal bars, first item on top (e.g. concept-group scores, decoder loadings)."""
    labels = [str(x) for x in labels]
    values = _f32(values)
    colors = [SELECTED if highlight is not None and lab == highlight else color for lab in labels]
    fig = go.Figure(go.Bar(y=labels, x=values, orientation="h", marker_color=colors,
                           customdata=customdata, hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    _layout(fig, title, height or max(180, 26 * len(labels) + 70))
    fig.update_yaxes(autorange="reversed", title=None, automargin=True)
    fig.update_xaxes(title=x_label)
    return fig


# -- features ---------------------------------------------------------------------------------

def feature_map(coords: np.ndarray, values: np.ndarray, *, selected=None, value_label="log10 density",
                title="Feature map (decoder directions, UMAP)", height=420, highlight=()) -> go.Figure:
    """One point per SAE feature (customdata = feature id), the selected one marked."""
    coords, values = _f32(coords), _f32(values)
    F = len(coords)
    ids = np.arange(F, dtype=np.int32)
    fig = go.Figure(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", customdata=_ids(ids),
                                 marker=dict(size=5, color=values, colorscale="Viridis", opacity=0.75,
                                             colorbar=dict(title=dict(text=value_label, side="right"), thickness=12)),
                                 name="features", hovertemplate="feature %{customdata}<extra></extra>"))
    hl = np.asarray(list(highlight), dtype=np.int64)
    hl = hl[(hl >= 0) & (hl < F)]
    if len(hl):
        fig.add_trace(go.Scattergl(x=coords[hl, 0], y=coords[hl, 1], mode="markers", customdata=_ids(hl),
                                   marker=dict(size=9, color=HIGHLIGHT), name="ranked",
                                   hovertemplate="feature %{customdata}<extra></extra>"))
    if selected is not None and 0 <= selected < F:
        fig.add_trace(go.Scattergl(x=coords[[selected], 0], y=coords[[selected], 1], mode="markers+text",
                                   text=[f"#{selected}"], textposition="top center",
                                   customdata=[int(selected)], name="selected",
                                   marker=dict(size=13, color=SELECTED, symbol="diamond")))
    _layout(fig, title, height, showlegend=False, clickmode="event")
    return label_axes_2d(fig, "map 1", "map 2")


def activation_histogram(acts: np.ndarray, n_words: int, *, title="Activation histogram (words where it fires)",
                         bins=50) -> go.Figure:
    """Histogram of a feature's non-zero activations; the title reports how many words it fires on."""
    acts = _f32(acts)
    share = len(acts) / max(1, n_words)
    return histogram(acts, title=f"{title}: {len(acts):,} of {n_words:,} words ({100 * share:.2f}%)",
                     x_label="activation", y_label="words", bins=bins)


def training_curves(history: dict) -> go.Figure:
    """SAE training history: every stored series against step, each on its own normalised axis."""
    step = history.get("step")
    fig = go.Figure()
    for name, y in history.items():
        if name == "step" or y is None:
            continue
        x = step if step is not None and len(step) == len(y) else np.arange(len(y))
        fig.add_trace(go.Scatter(x=np.asarray(x), y=_f32(y), mode="lines", name=name))
    _layout(fig, "SAE training", 280)
    fig.update_yaxes(type="log")
    return label_axes_2d(fig, "step", "value (log)")
