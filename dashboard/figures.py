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
#
# A word map is a fixed stack of named layers (one trace each), so that a click, a search or a new
# colouring replaces a few small layers (a dash Patch) and never resends the base points:
#   density    2-D only: density contours of the drawn words (hidden unless asked for)
#   base       every drawn word, grey or coloured by codes (Zipf, a dimension, a cluster)
#   groups     the concept-group words, coloured by group (colouring by group)
#   active     the words a feature fires on, coloured by activation (colouring by a feature)
#   selection  the words of a lasso/box selection (colouring by a selection)
#   matches    every word matching the search
#   links      2-D only: lines from the selected word to its neighbours
#   neighbours the selected word's stored nearest neighbours, labelled
#   selected   the selected word, labelled
#   labels     group or cluster names at their centroids
# Every point carries its word row in customdata and its word in text; hovers show only the word.

MAP_LAYERS = ("base", "groups", "active", "selection", "matches", "links", "neighbours", "selected", "labels")
MATCH = "#fcc419"
SELECTION = "#7048e8"
NEIGHBOUR = "#e8590c"
HOVER = "%{text}<extra></extra>"
CODE_NONE = 0  # colour code of a word without a value (grey)


def map_layers(three_d: bool) -> dict[str, int]:
    """{layer name: trace index} of a word map."""
    names = MAP_LAYERS if three_d else ("density", *MAP_LAYERS)
    return {name: i for i, name in enumerate(names)}


def _point_size(three_d: bool) -> float:
    return 2.5 if three_d else 4.0


def points_layer(
    name: str, coords, rows, words, *, three_d: bool, marker: dict, labels=False, ids=True, visible=True
) -> dict:
    """One layer of points: coords (m, 2|3), their rows (customdata) and words (text, the hover)."""
    coords = np.asarray(coords, dtype=np.float32).reshape(len(rows), 3 if three_d else 2)
    t = dict(
        type="scatter3d" if three_d else "scattergl",
        name=name,
        x=_f32(coords[:, 0]),
        y=_f32(coords[:, 1]),
        mode="markers+text" if labels else "markers",
        marker=marker,
        text=_strs(words),
        hovertemplate=HOVER,
        showlegend=False,
        visible=visible,
    )
    if ids:
        t["customdata"] = _ids(rows)
    if three_d:
        t["z"] = _f32(coords[:, 2])
    elif name not in ("base", "groups"):
        t["unselected"] = dict(marker=dict(opacity=1))  # a lasso dims the words, not the highlights
    if labels:
        t["textposition"] = "top center"
        t["textfont"] = dict(size=11, color="#212529")
    return t


def empty_layer(name: str, three_d: bool) -> dict:
    return points_layer(name, np.zeros((0, 3)), np.zeros(0, np.int64), [], three_d=three_d, marker={})


def _discrete_scale(colors) -> list:
    """A colorscale giving code k (cmin=-0.5, cmax=len-0.5) the colour colors[k]."""
    n = len(colors)
    out = []
    for k, c in enumerate(colors):
        out += [[k / n, c], [(k + 1) / n, c]]
    return out


def _value_scale(name: str) -> list:
    """A colorscale over codes 0..255: code 0 (no value) grey, codes 1..255 the named scale."""
    import plotly.colors as pc

    lo = 1 / 255
    scale = [[lo + p * (1 - lo), c] for p, c in pc.get_colorscale(name)]
    return [[0.0, GREY], [lo * 0.999, GREY], *scale]


def value_codes(values, *, symmetric: bool = False, zero_is_none: bool = False):
    """Continuous values as colour codes 1..255 (0 = NaN, or exactly 0 with zero_is_none), and the (low,
    high) value range they span: one byte per point instead of four when a colouring changes."""
    values = np.asarray(values, dtype=np.float32)
    ok = np.isfinite(values) & ((values != 0) if zero_is_none else True)
    if not ok.any():
        return np.zeros(len(values), np.uint8), (0.0, 1.0)
    lo, hi = float(values[ok].min()), float(values[ok].max())
    if symmetric:
        m = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -m, m
    span = (hi - lo) or 1.0
    codes = np.zeros(len(values), np.uint8)
    codes[ok] = 1 + np.rint((np.clip(values[ok], lo, hi) - lo) / span * 254).astype(np.uint8)
    return codes, (lo, hi)


def base_marker(three_d: bool, codes=None, *, scale="Viridis", value_range=None, label="", palette=None) -> dict:
    """The base layer's marker: plain grey, value codes (with a colour bar labelled in values), or
    category codes (palette)."""
    size = _point_size(three_d)
    if codes is None:
        return dict(size=size, color=GREY, opacity=0.5 if three_d else 0.45)
    if palette is not None:
        return dict(
            size=size * 1.2,
            color=typed(codes, np.uint8),
            colorscale=_discrete_scale(palette),
            cmin=-0.5,
            cmax=len(palette) - 0.5,
            showscale=False,
            opacity=0.8,
        )
    lo, hi = value_range
    ticks = np.linspace(1, 255, 5)
    return dict(
        size=size * 1.1,
        color=typed(codes, np.uint8),
        colorscale=_value_scale(scale),
        cmin=0,
        cmax=255,
        opacity=0.8,
        colorbar=dict(
            title=dict(text=label, side="right"),
            thickness=12,
            len=0.6,
            tickvals=ticks.tolist(),
            ticktext=[f"{lo + (t - 1) / 254 * (hi - lo):.3g}" for t in ticks],
        ),
    )


def palette_codes(categories) -> np.ndarray:
    """Category ids (>= 0) as codes into PALETTE."""
    return (np.asarray(categories, np.int64) % len(PALETTE)).astype(np.uint8)


def groups_marker(three_d: bool, groups) -> dict:
    return dict(
        size=_point_size(three_d) * 1.8,
        color=typed(palette_codes(groups), np.uint8),
        colorscale=_discrete_scale(PALETTE),
        cmin=-0.5,
        cmax=len(PALETTE) - 0.5,
        showscale=False,
        opacity=0.9,
    )


def active_marker(three_d: bool, values, label: str) -> dict:
    """Colours of the words a feature fires on (pass them sorted ascending: the strongest are drawn last)."""
    return dict(
        size=_point_size(three_d) * 1.4,
        color=_f32(values),
        colorscale="Viridis",
        opacity=0.9,
        colorbar=dict(title=dict(text=label, side="right"), thickness=12, len=0.6),
    )


def accent_marker(three_d: bool, color: str, scale: float = 2.0, symbol=None) -> dict:
    m = dict(size=_point_size(three_d) * scale, color=color, line=dict(width=1, color="#212529"))
    if symbol:
        m["symbol"] = symbol
    return m


def selected_marker(three_d: bool) -> dict:
    return dict(size=_point_size(three_d) * 4, color=SELECTED, symbol="diamond", line=dict(width=1, color="#fff"))


def links_layer(center, others) -> dict:
    """2-D lines from `center` (x, y) to each row of `others` (m, 2): one trace, gaps between segments."""
    others = np.asarray(others, dtype=np.float64).reshape(-1, 2)
    xs, ys = [], []
    for x, y in others:
        xs += [float(center[0]), float(x), None]
        ys += [float(center[1]), float(y), None]
    return dict(
        type="scattergl",
        name="links",
        x=xs,
        y=ys,
        mode="lines",
        line=dict(color=NEIGHBOUR, width=1),
        opacity=0.6,
        hoverinfo="skip",
        showlegend=False,
    )


def labels_layer(centroids, names, three_d: bool, visible=True) -> dict:
    """Names (of groups or clusters) written at their centroids; not clickable."""
    centroids = np.asarray(centroids, dtype=np.float32).reshape(len(names), 3 if three_d else 2)
    t = dict(
        type="scatter3d" if three_d else "scattergl",
        name="labels",
        x=_f32(centroids[:, 0]),
        y=_f32(centroids[:, 1]),
        mode="text",
        text=_strs(names),
        textfont=dict(size=13, color="#343a40"),
        hoverinfo="skip",
        showlegend=False,
        visible=visible,
    )
    if three_d:
        t["z"] = _f32(centroids[:, 2])
    return t


def density_layer(coords, visible=False, bins: int = 64) -> dict:
    """Density contours of 2-D points: a smoothed 2-D histogram computed here, so only a bins x bins grid
    is sent, whatever the number of points."""
    from scipy.ndimage import gaussian_filter

    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) < 2:
        z, xe, ye = np.zeros((bins, bins)), np.linspace(0, 1, bins + 1), np.linspace(0, 1, bins + 1)
    else:
        z, xe, ye = np.histogram2d(coords[:, 0], coords[:, 1], bins=bins)
        z = gaussian_filter(z, 1.2)
    return dict(
        type="contour",
        name="density",
        x=_f32((xe[:-1] + xe[1:]) / 2),
        y=_f32((ye[:-1] + ye[1:]) / 2),
        z=typed(z.T.astype(np.float32), np.float32) | {"shape": f"{bins}, {bins}"},
        contours=dict(coloring="lines", showlabels=False),
        line=dict(width=1),
        colorscale=[[0, "#dee2e6"], [1, "#495057"]],
        ncontours=8,
        showscale=False,
        hoverinfo="skip",
        visible=visible,
    )


def word_map_figure(
    layers: dict, three_d: bool, *, title=None, height=620, uirevision="map", axis_names=None, colorbar_right=True
) -> dict:
    """The figure of a word map from its layers (missing ones empty), in map_layers order."""
    order = map_layers(three_d)
    data = [layers.get(name) or empty_layer(name, three_d) for name in order]
    if not three_d and "density" not in layers:
        data[order["density"]] = density_layer(np.zeros((0, 2)))
    names = axis_names or (("UMAP 1", "UMAP 2", "UMAP 3") if three_d else ("UMAP 1", "UMAP 2"))
    fig = figure(data, title, height, uirevision=uirevision, clickmode="event", showlegend=False, hovermode="closest")
    if three_d:
        fig["layout"]["scene"] = dict(
            aspectmode="cube", **{f"{a}axis": dict(title=dict(text=n), showspikes=False) for a, n in zip("xyz", names)}
        )
        fig["layout"]["margin"] = dict(l=0, r=0, t=30 if title else 0, b=0)
    else:
        label_axes_2d(fig, names[0], names[1])
        fig["layout"]["dragmode"] = "zoom"
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


def vector_strip(values: np.ndarray, *, outliers=(), height=130) -> dict:
    """A word vector of any width as one heatmap row (diverging colours, centred at 0); a click on a cell
    gives its dimension (clickData's x). Outlier dimensions are marked above the strip (customdata = dim)."""
    values = np.asarray(values, np.float32)
    d = len(values)
    m = float(np.abs(values).max()) or 1.0
    strip = dict(
        type="heatmap",
        z=typed(values.reshape(1, d), np.float32) | {"shape": f"1, {d}"},
        x=typed(np.arange(d), np.int32),
        y=[0],
        colorscale="RdBu",
        reversescale=True,
        zmin=-m,
        zmax=m,
        xgap=0,
        colorbar=dict(thickness=8, len=1.0, x=1.0, xpad=4),
        hovertemplate="dim %{x}: %{z:.4f}<extra></extra>",
        name="vector",
    )
    data = [strip]
    out = np.asarray(list(outliers), dtype=np.int64)
    out = out[(out >= 0) & (out < d)]
    if len(out):
        data.append(
            dict(
                type="scatter",
                x=typed(out, np.int32),
                y=_f32(np.full(len(out), 0.75)),
                customdata=_ids(out),
                mode="markers",
                marker=dict(symbol="triangle-down", size=8, color=OUTLIER),
                name="outlier dims",
                hovertemplate="outlier dim %{x}<extra></extra>",
            )
        )
    fig = figure(data, None, height, x_title="dimension (click one)", showlegend=False)
    fig["layout"]["yaxis"] = dict(visible=False, range=[-0.5, 0.95], fixedrange=True)
    fig["layout"]["xaxis"].update(range=[-0.5, d - 0.5], showgrid=False, zeroline=False)
    fig["layout"]["margin"] = dict(l=10, r=10, t=5, b=40)
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
