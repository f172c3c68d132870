"""Pure figure builders of the Layers page (arrays in, plotly figure dict out; see dashboard/figures.py): the
features of every layer in 3-D with their matches, and a word's path through the aligned maps."""

import numpy as np

from dashboard.figures import HIGHLIGHT, _f32, _ids, _strs, figure

# Feature nodes: features that carry on both ways, born here, ending here, and both (isolated).
KINDS = (
    ("carried", "#5b7db1", "circle"),
    ("born here", "#2b8a3e", "diamond"),
    ("ending here", "#c92a2a", "square"),
    ("born and ending (isolated)", "#868e96", "x"),
)
# Match lines, binned by decoder cosine: (lowest cosine of the bin, colour, width). The first bin starts at the
# threshold (the lines drawn are all at or above it).
LINE_BINS = ((0.0, "#bac8ff", 1.5), (0.5, "#748ffc", 3.0), (0.8, "#364fc7", 5.0))
NODE_ID = 1_000_000  # customdata of a node: layer * NODE_ID + feature


def node_id(layer: int, feature: int) -> int:
    return int(layer) * NODE_ID + int(feature)


def split_node_id(value) -> tuple[int, int] | None:
    try:
        v = int(value)
    except (TypeError, ValueError):
        return None
    return (v // NODE_ID, v % NODE_ID) if v >= 0 else None


def _scene(z_title: str, layers) -> dict:
    return dict(
        xaxis=dict(title=dict(text="map 1"), showticklabels=False),
        yaxis=dict(title=dict(text="map 2"), showticklabels=False),
        zaxis=dict(title=dict(text=z_title), tickvals=list(layers), ticktext=[f"L{x}" for x in layers]),
        aspectmode="manual",
        aspectratio=dict(x=1.2, y=1.2, z=1.0),
        camera=dict(eye=dict(x=1.6, y=1.6, z=0.7)),
    )


def _segments(a_xyz: np.ndarray, b_xyz: np.ndarray) -> np.ndarray:
    """Line segments a[i]-b[i] as one polyline with NaN gaps: (3 * n, 3)."""
    out = np.full((3 * len(a_xyz), 3), np.nan, np.float32)
    out[0::3], out[1::3] = a_xyz, b_xyz
    return out


def layers_3d(nodes, lines, place: dict, lineage=None, height: int = 640) -> dict:
    """The 3-D view: `nodes` (dashboard.lib.layers.Nodes) at (map x, map y, layer), marked by kind; `lines`
    [(lower layer, features, matches above, cosine)] drawn between matched features, binned by cosine;
    `place` {(layer, feature): (x, y)} of every drawn node; `lineage` [(layer, feature, x, y)] drawn as one
    highlighted path."""
    data = []
    for lo, colour, width in LINE_BINS:
        hi = next((b[0] for b in LINE_BINS if b[0] > lo), np.inf)
        a, b = [], []
        for layer, feats, above, cos, upper in lines:
            sel = (cos >= lo) & (cos < hi)
            for f, g in zip(feats[sel], above[sel]):
                pa, pb = place.get((layer, int(f))), place.get((upper, int(g)))
                if pa is not None and pb is not None:
                    a.append((*pa, layer))
                    b.append((*pb, upper))
        seg = _segments(np.asarray(a, np.float32).reshape(-1, 3), np.asarray(b, np.float32).reshape(-1, 3))
        name = f"match, cos ≥ {lo:.1f}" if lo > 0 else "match, cos ≥ threshold"
        data.append(
            dict(
                type="scatter3d",
                mode="lines",
                name=name,
                x=_f32(seg[:, 0]),
                y=_f32(seg[:, 1]),
                z=_f32(seg[:, 2]),
                line=dict(color=colour, width=width),
                hoverinfo="skip",
                showlegend=True,
            )
        )
    kind = np.where(nodes.born & nodes.ending, 3, np.where(nodes.ending, 2, np.where(nodes.born, 1, 0)))
    for k, (name, colour, symbol) in enumerate(KINDS):
        sel = np.flatnonzero(kind == k)
        data.append(
            dict(
                type="scatter3d",
                mode="markers",
                name=f"{name} ({len(sel):,})",
                x=_f32(nodes.xy[sel, 0]),
                y=_f32(nodes.xy[sel, 1]),
                z=_f32(nodes.layer[sel]),
                text=_strs(nodes.text[sel]),
                customdata=_ids(nodes.layer[sel] * NODE_ID + nodes.feature[sel]),
                hovertemplate="%{text}<extra></extra>",
                marker=dict(size=3.5 if k == 0 else 4.5, color=colour, symbol=symbol, opacity=0.85),
            )
        )
    if lineage:
        xyz = np.asarray([(x, y, lay) for lay, _, x, y in lineage], np.float32).reshape(-1, 3)
        data.append(
            dict(
                type="scatter3d",
                mode="lines+markers",
                name="selected lineage",
                x=_f32(xyz[:, 0]),
                y=_f32(xyz[:, 1]),
                z=_f32(xyz[:, 2]),
                customdata=_ids([node_id(lay, f) for lay, f, _, _ in lineage]),
                text=_strs([f"L{lay} #{f}" for lay, f, _, _ in lineage]),
                hovertemplate="%{text}<extra></extra>",
                line=dict(color=HIGHLIGHT, width=9),
                marker=dict(size=7, color=HIGHLIGHT),
            )
        )
    layers = sorted(set(nodes.layer.tolist()))
    fig = figure(data, height=height, showlegend=True, uirevision="layers-3d")
    fig["layout"]["scene"] = _scene("layer", layers)
    fig["layout"]["margin"] = dict(l=0, r=0, t=10, b=0)
    fig["layout"]["legend"] = dict(x=0.0, y=1.0, bgcolor="rgba(255,255,255,0.7)", font=dict(size=11))
    return fig


def word_path_3d(word: str, rows: list[dict], height: int = 520) -> dict:
    """A word's path through the layers: its place on each layer's (aligned) 2-D map at height = layer, joined
    in layer order, with its nearest neighbours of each layer as labelled grey points."""
    data = []
    nb_xyz, nb_text = [], []
    for r in rows:
        if r["neighbour_place"] is None:
            continue
        for w, p in zip(r["neighbours"], r["neighbour_place"]):
            nb_xyz.append((p[0], p[1], r["layer"]))
            nb_text.append(w)
    if nb_xyz:
        xyz = np.asarray(nb_xyz, np.float32)
        data.append(
            dict(
                type="scatter3d",
                mode="markers+text",
                name="nearest neighbours",
                x=_f32(xyz[:, 0]),
                y=_f32(xyz[:, 1]),
                z=_f32(xyz[:, 2]),
                text=_strs(nb_text),
                textfont=dict(size=10, color="#868e96"),
                hovertemplate="%{text}<extra></extra>",
                marker=dict(size=2.5, color="#adb5bd"),
            )
        )
    placed = [r for r in rows if r["place"] is not None]
    xyz = np.asarray([(r["place"][0], r["place"][1], r["layer"]) for r in placed], np.float32).reshape(-1, 3)
    data.append(
        dict(
            type="scatter3d",
            mode="lines+markers+text",
            name=word,
            x=_f32(xyz[:, 0]),
            y=_f32(xyz[:, 1]),
            z=_f32(xyz[:, 2]),
            text=_strs([f"{word} L{r['layer']}" for r in placed]),
            textfont=dict(size=12, color=HIGHLIGHT),
            hovertemplate="%{text}<extra></extra>",
            line=dict(color=HIGHLIGHT, width=7),
            marker=dict(size=6, color=HIGHLIGHT),
        )
    )
    fig = figure(data, height=height, showlegend=True, uirevision="word-path")
    fig["layout"]["scene"] = _scene("layer", [r["layer"] for r in rows])
    fig["layout"]["margin"] = dict(l=0, r=0, t=10, b=0)
    fig["layout"]["legend"] = dict(x=0.0, y=1.0, bgcolor="rgba(255,255,255,0.7)")
    return fig
