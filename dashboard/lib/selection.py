"""A lasso or box selection on a 2-D word map: which words lie inside it, and what they have in common
(the features they share most, their concept groups)."""

import numpy as np

from dashboard.lib.concepts import rank_features_for

MAX_POLYGON = 2000  # lasso vertices kept (the browser sends one per mouse move)


def region_of(selected_data: dict | None) -> dict | None:
    """The region of plotly's selection event data: {"kind": "box", "x": [x0, x1], "y": [y0, y1]} or
    {"kind": "lasso", "x": [...], "y": [...]}; None when there is none."""
    if not selected_data:
        return None
    lasso = selected_data.get("lassoPoints")
    if lasso and len(lasso.get("x") or []) >= 3:
        xs, ys = lasso["x"][:MAX_POLYGON], lasso["y"][:MAX_POLYGON]
        return {"kind": "lasso", "x": [float(x) for x in xs], "y": [float(y) for y in ys]}
    box = selected_data.get("range")
    if box and box.get("x") and box.get("y"):
        return {"kind": "box", "x": sorted(map(float, box["x"])), "y": sorted(map(float, box["y"]))}
    return None


def in_polygon(points: np.ndarray, xs, ys) -> np.ndarray:
    """Mask of the points (m, 2) inside the polygon (even-odd rule; the closing edge is implied)."""
    px, py = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    box = (px >= xs.min()) & (px <= xs.max()) & (py >= ys.min()) & (py <= ys.max())
    cand = np.flatnonzero(box)
    x, y = px[cand], py[cand]
    inside = np.zeros(len(cand), bool)
    for x1, y1, x2, y2 in zip(xs, ys, np.roll(xs, -1), np.roll(ys, -1)):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < at)
    out = np.zeros(len(points), bool)
    out[cand[inside]] = True
    return out


def rows_in_region(coords: np.ndarray, region: dict | None) -> np.ndarray:
    """Rows of `coords` (n, 2) inside the region, in row order."""
    if not region:
        return np.empty(0, np.int64)
    if region["kind"] == "box":
        (x0, x1), (y0, y1) = region["x"], region["y"]
        mask = (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
    else:
        mask = in_polygon(coords, region["x"], region["y"])
    return np.flatnonzero(mask).astype(np.int64)


def group_counts(v, rows: np.ndarray) -> list[tuple[str, int, float]]:
    """(group name, words of the selection in it, share of the group selected), largest first."""
    g = v.group[rows]
    out = []
    for k, c in zip(*np.unique(g[g >= 0], return_counts=True)):
        if k < len(v.group_names):
            out.append((v.group_names[k], int(c), c / max(1, len(v.group_rows(k)))))
    return sorted(out, key=lambda t: -t[1])


def shared_features(v, rows: np.ndarray, limit: int = 8) -> list[dict]:
    """The features the selected words share most, scored like any concept (dashboard/lib/concepts.py)."""
    if not v.has_sae or len(rows) == 0:
        return []
    return rank_features_for(v, rows, limit=limit)
