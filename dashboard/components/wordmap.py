"""The word map shared by the Words, Features and Concepts pages (built from cached per-run arrays)."""

import dash_bootstrap_components as dbc
import numpy as np
from dash import html

from dashboard import figures
from dashboard.lib import store
from dashboard.lib.urls import as_int

PROJECTIONS = {"umap3d": "UMAP 3D", "umap2d": "UMAP 2D", "pca2": "PCA"}
COLORS = {"group": "concept group", "zipf": "Zipf frequency", "feature": "feature activation", "dim": "dimension value"}


def projection_or_default(v, proj):
    available = v.projections()
    if not available:
        return None
    return proj if proj in available else available[0]


def map_figure(
    v, proj, color="group", feature=None, dim=None, highlight=(), selected=None, height=560, title=None, limit=None
):
    """The word map of run view `v`: at most store.max_points() points, always including the
    highlighted and selected rows; coloured by group, Zipf, a feature's activation or a dimension."""
    proj = projection_or_default(v, proj)
    if proj is None:
        return None
    must = np.asarray(list(highlight) + ([selected] if selected is not None else []), dtype=np.int64)
    rows = v.map_rows(limit or store.max_points(), must)
    coords = v.coords(proj)[rows]
    words = v.words[rows]
    kw = {}
    feature, dim = as_int(feature), as_int(dim)
    if color == "zipf":
        kw = dict(color="value", values=v.zipf[rows], value_label="Zipf")
    elif color == "feature" and feature is not None and v.has_sae and 0 <= feature < v.n_features:
        kw = dict(color="value", values=v.feature_values(feature, rows), value_label=f"feature #{feature}")
    elif color == "dim" and dim is not None and 0 <= dim < v.d:
        kw = dict(color="value", values=v.embeddings[rows, dim], value_label=f"dim {dim}")
    elif color == "plain":
        kw = dict(color="plain")
    else:
        kw = dict(color="group", groups=v.group[rows], group_names=v.group_names)
    names = ("PC 1", "PC 2") if proj == "pca2" else None
    return figures.word_map(
        coords,
        rows,
        words,
        highlight=highlight,
        selected=selected,
        height=height,
        title=title,
        uirevision=f"{v.run_id}-{proj}",
        axis_names=names,
        **kw,
    )


def map_controls(prefix, proj, color, v, allow=("group", "zipf", "feature", "dim")):
    projs = [{"label": PROJECTIONS[p], "value": p} for p in v.projections()]
    colors = [{"label": COLORS[c], "value": c} for c in allow if c != "feature" or v.has_sae]
    return html.Div(
        [
            html.Span("map ", className="lx-muted me-1"),
            dbc.RadioItems(
                id=f"{prefix}-proj",
                options=projs,
                value=projection_or_default(v, proj),
                inline=True,
                className="d-inline-block me-3",
            ),
            html.Span("colour by ", className="lx-muted me-1"),
            dbc.RadioItems(
                id=f"{prefix}-color",
                options=colors,
                value=color if color in allow else "group",
                inline=True,
                className="d-inline-block",
            ),
        ],
        className="mb-1",
    )


def clicked_row(click) -> int | None:
    """The word row of a map click (every map point carries its row in customdata)."""
    if not click or not click.get("points"):
        return None
    cd = click["points"][0].get("customdata")
    if isinstance(cd, list):
        cd = cd[0] if cd else None
    return as_int(cd)
