"""Pure figure builders: arrays in, a plotly figure out. No store, no Dash; tested without a browser.

A figure is the plotly figure dict ({"data": [...], "layout": {...}}) that `go.Figure` serialises to;
`go.Figure(fig)` validates and wraps one. Plain dicts because building go.Figure objects (validation and
deep copies of the template) costs more than the whole callback budget (100 ms) on a 20k-point map.

Numeric point data (coordinates, colours, bar heights) is sent as plotly.js typed-array specs
{"dtype": "f4", "bdata": <base64>} (`typed`; `decode` reads one back), never as lists of Python
floats. Every clickable point carries its id (word row, feature, dimension) in `customdata` as an int
array that serialises as a JSON list: dcc.Graph reads clickData's customdata from the undecoded
figure data, where a typed array would come back undefined. Labels are numpy str arrays (fast to
serialise)."""

import base64

import numpy as np
import plotly.io as pio

GREY = "#c4c8d0"
HIGHLIGHT = "#e8590c"
SELECTED = "#c92a2a"
OUTLIER = "#e8590c"
BASE = "#2c7be5"
PALETTE = [
    "#1f77b4",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#ff7f0e",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#31a354",
]
_TEMPLATE = None


def template() -> dict:
    """plotly_white's layout part (a few kB), built once."""
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = {"layout": pio.templates["plotly_white"].layout.to_plotly_json()}
    return _TEMPLATE


def figure(data: list, title=None, height=None, x_title=None, y_title=None, **layout) -> dict:
    """A figure dict with the house layout: white template, compact margins, titled axes."""
    lay = dict(template=template(), margin=dict(l=60, r=20, t=40 if title else 15, b=50), font=dict(size=12), **layout)
    if title:
        lay["title"] = dict(text=title, x=0.01, font=dict(size=14))
    if height:
        lay["height"] = height
    if x_title is not None:
        lay.setdefault("xaxis", {})["title"] = dict(text=x_title)
    if y_title is not None:
        lay.setdefault("yaxis", {})["title"] = dict(text=y_title)
    return {"data": data, "layout": lay}


_DTYPES = {
    np.dtype(np.float32): "f4",
    np.dtype(np.float64): "f8",
    np.dtype(np.int32): "i4",
    np.dtype(np.int16): "i2",
    np.dtype(np.int8): "i1",
    np.dtype(np.uint8): "u1",
}


def typed(a, dtype=np.float32) -> dict:
    """A numeric array as a plotly.js typed-array spec (base64 of the raw little-endian bytes)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return {
        "dtype": _DTYPES[a.dtype],
        "bdata": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii"),
    }


def decode(value) -> np.ndarray:
    """The numpy array behind a typed-array spec (or any array-like), for tests and tools."""
    if isinstance(value, dict) and "bdata" in value:
        kind = {v: k for k, v in _DTYPES.items()}[value["dtype"]]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=kind.newbyteorder("<"))
    return np.asarray(value)


def _f32(a) -> dict:
    return typed(a, np.float32)


def _ids(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


def _strs(a) -> np.ndarray:
    return np.asarray(a, dtype=str)


def label_axes_2d(fig: dict, x: str, y: str) -> dict:
    fig["layout"].setdefault("xaxis", {})["title"] = dict(text=x)
    fig["layout"].setdefault("yaxis", {})["title"] = dict(text=y)
    return fig


# -- word maps --------------------------------------------------------------------------------


def word_map(
    coords: np.ndarray,
    rows: np.ndarray,
    words,
    *,
    color: str = "group",
    groups=None,
    group_names=(),
    values=None,
    value_label: str = "",
    highlight=(),
    selected=None,
    title=None,
    height=620,
    uirevision="map",
    axis_names=None,
) -> dict:
    """A 2-D or 3-D scatter of the words `rows` (coords: (len(rows), 2|3) float32).

    color: 'group' (categorical `groups`, -1 = none, drawn grey and small) or 'value' (continuous
    `values`, NaN grey). `highlight` rows are drawn larger in orange, `selected` (a row) in red with
    its label. `words` are the labels of `rows`, in the same order."""
    coords = np.asarray(coords, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    words = np.asarray(words, dtype=object)
    three_d = coords.shape[1] == 3
    kind = "scatter3d" if three_d else "scattergl"
    size = 2.5 if three_d else 4
    data = []

    def add(idx, name, marker, labels=False, showlegend=True, hover=None):
        if len(idx) == 0:
            return
        t = dict(
            type=kind,
            x=_f32(coords[idx, 0]),
            y=_f32(coords[idx, 1]),
            mode="markers+text" if labels else "markers",
            name=name,
            marker=marker,
            text=_strs(words[idx]),
            customdata=_ids(rows[idx]),
            showlegend=showlegend,
            hovertemplate=hover or ("%{text}<extra>" + name + "</extra>"),
        )
        if three_d:
            t["z"] = _f32(coords[idx, 2])
        if labels:
            t["textposition"] = "top center"
        data.append(t)

    if color == "group" and groups is not None:
        groups = np.asarray(groups)
        add(np.flatnonzero(groups < 0), "no group", dict(size=size * 0.8, color=GREY, opacity=0.5))
        for g in np.unique(groups[groups >= 0]):
            name = group_names[g] if g < len(group_names) else f"group {g}"
            add(
                np.flatnonzero(groups == g),
                name,
                dict(size=size * 1.8, color=PALETTE[int(g) % len(PALETTE)], opacity=0.9),
            )
    elif values is not None:
        values = np.asarray(values, dtype=np.float32)
        ok = np.isfinite(values)
        add(np.flatnonzero(~ok), "no value", dict(size=size, color=GREY, opacity=0.4))
        order = np.flatnonzero(ok)[np.argsort(values[ok], kind="stable")]  # strongest drawn last, on top
        add(
            order,
            value_label or "value",
            dict(
                size=size * 1.2,
                color=_f32(values[order]),
                colorscale="Viridis",
                opacity=0.85,
                colorbar=dict(title=dict(text=value_label, side="right"), thickness=12, len=0.6),
            ),
            showlegend=False,
            hover="%{text}: %{marker.color:.3f}<extra></extra>",
        )
    else:  # 'plain': one colour, so highlighted words stand out
        add(np.arange(len(rows)), "words", dict(size=size, color=GREY, opacity=0.6))

    hl = np.isin(rows, np.asarray(list(highlight), dtype=np.int64))
    if selected is not None:
        hl &= rows != selected
    hl_idx = np.flatnonzero(hl)
    add(
        hl_idx,
        "highlighted",
        dict(size=size * 2.6, color=HIGHLIGHT, line=dict(width=0.5, color="#fff")),
        labels=len(hl_idx) <= 12,
    )
    if selected is not None:
        add(
            np.flatnonzero(rows == selected),
            "selected",
            dict(size=size * 4, color=SELECTED, symbol="diamond"),
            labels=True,
        )

    names = axis_names or (("UMAP 1", "UMAP 2", "UMAP 3") if three_d else ("UMAP 1", "UMAP 2"))
    fig = figure(
        data,
        title,
        height,
        uirevision=uirevision,
        clickmode="event",
        legend=dict(itemsizing="constant", x=1.0, y=0.92, yanchor="top", font=dict(size=11)),
    )
    if three_d:
        fig["layout"]["scene"] = dict(
            aspectmode="cube", **{f"{a}axis": dict(title=dict(text=n), showspikes=False) for a, n in zip("xyz", names)}
        )
        fig["layout"]["margin"] = dict(l=0, r=0, t=30 if title else 0, b=0)
    else:
        label_axes_2d(fig, names[0], names[1])
    return fig


# -- runs and geometry ------------------------------------------------------------------------


def measure_across_layers(
    table, measure: str, label: str | None = None, by: str = "model", names: dict | None = None
) -> dict:
    """One line of `measure` against layer per value of column `by` (a model, a run family), named by
    `names` (default: the value itself); each point's customdata is its run_id."""
    data = []
    names = names or {}
    if measure in table:
        for key, sub in table.sort_values("layer").groupby(by, sort=True):
            y = sub[measure].astype(float).to_numpy()
            ok = np.isfinite(y)
            if not ok.any():
                continue
            data.append(
                dict(
                    type="scatter",
                    x=typed(sub["layer"].to_numpy()[ok], np.int32),
                    y=_f32(y[ok]),
                    mode="lines+markers",
                    name=str(names.get(key, key)),
                    customdata=_strs(sub["run_id"][ok]),
                    hovertemplate="%{customdata}<br>layer %{x}: %{y:.4f}<extra></extra>",
                )
            )
    fig = figure(
        data,
        label or measure,
        280,
        x_title="layer",
        y_title=label or measure,
        legend=dict(orientation="h", y=-0.35),
        showlegend=True,
    )
    fig["layout"]["xaxis"]["dtick"] = 1
    fig["layout"]["margin"]["b"] = 70
    return fig


def frequency_scatter(
    pca2: np.ndarray, zipf: np.ndarray, words, explained=None, max_points: int = 20000, seed: int = 0
) -> dict:
    """PCA of the word vectors coloured by Zipf frequency (frequency bias, Gao et al. 2019); at most
    `max_points` words, a seeded random sample."""
    pca2, zipf = np.asarray(pca2, np.float32), np.asarray(zipf, np.float32)
    n = len(pca2)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    z = zipf[rows]
    ex = [f" ({100 * e:.1f}% var.)" for e in explained] if explained is not None else ["", ""]
    trace = dict(
        type="scattergl",
        x=_f32(pca2[rows, 0]),
        y=_f32(pca2[rows, 1]),
        mode="markers",
        text=_strs(np.asarray(words, dtype=object)[rows]),
        marker=dict(
            size=4,
            color=_f32(z),
            colorscale="Viridis",
            opacity=0.7,
            colorbar=dict(title=dict(text="Zipf", side="right"), thickness=12),
        ),
        hovertemplate="%{text} (Zipf %{marker.color:.2f})<extra></extra>",
    )
    return figure(
        [trace], "Frequency bias: PCA coloured by Zipf frequency", 420, x_title="PC 1" + ex[0], y_title="PC 2" + ex[1]
    )


def _num(v, default=None):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def before_after(before: dict, after: dict, keys, labels=None, title="") -> dict:
    """Grouped bars of the same measures before and after isotropy enhancement (missing ones skipped)."""
    keys = [k for k in keys if _num(before.get(k)) is not None or _num(after.get(k)) is not None]
    names = [(labels or {}).get(k, k) for k in keys]
    data = [
        dict(
            type="bar",
            name=name,
            x=names,
            y=_f32([_num(src.get(k), np.nan) for k in keys]),
            marker=dict(color=color),
            texttemplate="%{y:.3f}",
            textposition="outside",
        )
        for name, src, color in (("before", before, "#868e96"), ("after enhancement", after, BASE))
    ]
    fig = figure(
        data,
        title,
        320,
        x_title="measure",
        y_title="value",
        barmode="group",
        legend=dict(orientation="h", y=-0.3, x=0.0),
    )
    fig["layout"]["yaxis"]["rangemode"] = "tozero"
    fig["layout"]["margin"]["b"] = 80
    return fig


def lines_by_category(x, series: dict, x_label: str, y_label: str, title: str) -> dict:
    """Several named y-series over the same x (e.g. STS Spearman per language across layers)."""
    x = np.asarray(x)
    data = [
        dict(type="scatter", x=x.tolist(), y=_f32(y), mode="lines+markers", name=str(name))
        for name, y in series.items()
    ]
    fig = figure(data, title, 300, x_title=x_label, y_title=y_label, legend=dict(orientation="h", y=-0.3))
    fig["layout"]["margin"]["b"] = 80
    if x.dtype.kind in "iu":
        fig["layout"]["xaxis"]["dtick"] = 1  # layers are whole numbers
    return fig


# -- dimensions -------------------------------------------------------------------------------


def dimension_bars(
    values: np.ndarray, *, outliers=(), selected=None, sigma_band=None, title="", y_label="value", height=300
) -> dict:
    """One bar per dimension (customdata = dimension), `outliers` in orange, the selected one in red
    and outlined, and an optional mean ± k·sigma band (a (low, high) pair)."""
    values = np.asarray(values, np.float32)
    d = len(values)
    dims = np.arange(d, dtype=np.int32)
    out = np.isin(dims, np.asarray(list(outliers), dtype=np.int64))
    colors = np.where(out, OUTLIER, BASE).astype(object)
    line = np.zeros(d, np.float32)
    if selected is not None and 0 <= selected < d:
        colors[selected] = SELECTED
        line[selected] = 2
    bar = dict(
        type="bar",
        x=typed(dims, np.int32),
        y=_f32(values),
        customdata=_ids(dims),
        name=y_label,
        marker=dict(color=colors.tolist(), line=dict(width=_f32(line), color="#000")),
        hovertemplate="dim %{x}: %{y:.4f}<extra></extra>",
    )
    fig = figure([bar], title, height, x_title="dimension", y_title=y_label, bargap=0.15, showlegend=False)
    if sigma_band is not None:
        lo, hi = (float(x) for x in sigma_band)
        fig["layout"]["shapes"] = [
            dict(
                type="rect",
                xref="paper",
                x0=0,
                x1=1,
                yref="y",
                y0=lo,
                y1=hi,
                fillcolor="#adb5bd",
                opacity=0.25,
                line=dict(width=0),
                layer="below",
            )
        ]
        fig["layout"]["annotations"] = [
            dict(
                xref="paper",
                x=0.01,
                yref="y",
                y=hi,
                text="mean ± 3σ",
                showarrow=False,
                yanchor="bottom",
                font=dict(size=11),
            )
        ]
    return fig


def histogram(
    values: np.ndarray, *, title="", x_label="value", y_label="words", bins=60, marks=None, log_y=False, height=280
) -> dict:
    """A histogram computed here (numpy), so only bin centres and counts are sent to the browser."""
    values = np.asarray(values, np.float32)
    values = values[np.isfinite(values)]
    counts, edges = np.histogram(values, bins=bins) if len(values) else (np.zeros(0), np.zeros(1))
    return histogram_from_counts(
        counts, edges, title=title, x_label=x_label, y_label=y_label, marks=marks, log_y=log_y, height=height
    )


def histogram_from_counts(
    counts, edges, *, title="", x_label="value", y_label="words", marks=None, log_y=False, height=280
) -> dict:
    """A histogram from precomputed counts and bin edges (len(edges) = len(counts) + 1)."""
    counts, edges = np.asarray(counts), np.asarray(edges, np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    bar = dict(
        type="bar",
        x=_f32(centers),
        y=typed(counts, np.int32),
        width=_f32(np.diff(edges)),
        marker=dict(color=BASE),
        hovertemplate=f"{x_label} %{{x:.3f}}: %{{y}} {y_label}<extra></extra>",
    )
    fig = figure([bar], title, height, x_title=x_label, y_title=y_label, bargap=0)
    if log_y:
        fig["layout"]["yaxis"]["type"] = "log"
    shapes, notes = [], []
    for label, x in (marks or {}).items():
        shapes.append(
            dict(
                type="line",
                xref="x",
                x0=float(x),
                x1=float(x),
                yref="paper",
                y0=0,
                y1=1,
                line=dict(color=SELECTED, dash="dash"),
            )
        )
        notes.append(
            dict(
                xref="x",
                x=float(x),
                yref="paper",
                y=1,
                text=label,
                showarrow=False,
                xanchor="left",
                yanchor="bottom",
                font=dict(size=11, color=SELECTED),
            )
        )
    if shapes:
        fig["layout"]["shapes"], fig["layout"]["annotations"] = shapes, notes
    return fig


def hbar(labels, values, *, title="", x_label="", customdata=None, highlight=None, height=None, color=BASE) -> dict:
    """Horizontal bars, first item on top (e.g. concept-group scores, decoder loadings)."""
    labels = [str(x) for x in labels]
    colors = [SELECTED if highlight is not None and lab == highlight else color for lab in labels]
    bar = dict(
        type="bar",
        y=labels,
        x=_f32(values),
        orientation="h",
        marker=dict(color=colors),
        hovertemplate="%{y}: %{x:.4f}<extra></extra>",
    )
    if customdata is not None:
        bar["customdata"] = list(customdata)
    fig = figure([bar], title, height or max(180, 24 * len(labels) + 80), x_title=x_label)
    fig["layout"]["yaxis"] = dict(autorange="reversed", automargin=True)
    return fig


# -- features ---------------------------------------------------------------------------------


def feature_map(
    coords: np.ndarray,
    values: np.ndarray,
    *,
    selected=None,
    value_label="log10 density",
    title="Feature map (decoder directions)",
    height=420,
    highlight=(),
    labels=None,
) -> dict:
    """One point per SAE feature (customdata = feature id), the selected one marked; `labels` (one string per
    feature) show in the hover."""
    coords, values = np.asarray(coords, np.float32), np.asarray(values, np.float32)
    F = len(coords)
    labels = None if labels is None or len(labels) != F else [str(x) for x in labels]
    hover = "feature %{customdata}" + ("<br>%{text}" if labels else "") + "<extra></extra>"
    data = [
        dict(
            type="scattergl",
            x=_f32(coords[:, 0]),
            y=_f32(coords[:, 1]),
            mode="markers",
            customdata=_ids(np.arange(F)),
            marker=dict(
                size=5,
                color=_f32(values),
                colorscale="Viridis",
                opacity=0.75,
                colorbar=dict(title=dict(text=value_label, side="right"), thickness=12),
            ),
            name="features",
            hovertemplate=hover,
            **({"text": labels} if labels else {}),
        )
    ]
    hl = np.asarray(list(highlight), dtype=np.int64)
    hl = hl[(hl >= 0) & (hl < F)]
    if len(hl):
        data.append(
            dict(
                type="scattergl",
                x=_f32(coords[hl, 0]),
                y=_f32(coords[hl, 1]),
                mode="markers",
                customdata=_ids(hl),
                marker=dict(size=9, color=HIGHLIGHT),
                name="ranked",
                hovertemplate=hover,
                **({"text": [labels[i] for i in hl]} if labels else {}),
            )
        )
    if selected is not None and 0 <= selected < F:
        data.append(
            dict(
                type="scattergl",
                x=_f32(coords[[selected], 0]),
                y=_f32(coords[[selected], 1]),
                mode="markers+text",
                text=[f"#{selected}"],
                textposition="top center",
                customdata=[int(selected)],
                name="selected",
                marker=dict(size=13, color=SELECTED, symbol="diamond"),
                **(
                    {
                        "hovertext": [labels[selected]],
                        "hovertemplate": "feature %{customdata}<br>%{hovertext}<extra></extra>",
                    }
                    if labels
                    else {}
                ),
            )
        )
    return figure(data, title, height, x_title="map 1", y_title="map 2", showlegend=False, clickmode="event")


def activation_histogram(acts: np.ndarray, n_words: int, *, title="Activations where it fires", bins=50) -> dict:
    """Histogram of a feature's non-zero activations; the title reports how many words it fires on."""
    acts = np.asarray(acts, np.float32)
    share = len(acts) / max(1, n_words)
    return histogram(
        acts,
        title=f"{title}: {len(acts):,} of {n_words:,} words ({100 * share:.2f}%)",
        x_label="activation",
        y_label="words",
        bins=bins,
    )


def training_curves(history: dict) -> dict:
    """SAE training history against step: the error series (loss, mse, fvu) on the left axis, the
    counts (l0, dead features) on the right one."""
    step = history.get("step")
    right = {"l0", "dead"}
    data = []
    for name, y in history.items():
        if name == "step" or y is None:
            continue
        x = step if step is not None and len(step) == len(y) else np.arange(len(y))
        trace = dict(type="scatter", x=typed(x, np.float64), y=_f32(y), mode="lines", name=name)
        if name in right:
            trace["yaxis"] = "y2"
            trace["line"] = dict(dash="dot")
        data.append(trace)
    fig = figure(
        data, "SAE training", 280, x_title="step", y_title="loss / mse / FVU", legend=dict(orientation="h", y=-0.35)
    )
    fig["layout"]["yaxis"]["rangemode"] = "tozero"
    fig["layout"]["yaxis2"] = dict(
        title=dict(text="L0 / dead (dotted)"), overlaying="y", side="right", rangemode="tozero", showgrid=False
    )
    fig["layout"]["margin"].update(r=60, b=80)
    return fig
