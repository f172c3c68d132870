"""The word map shared by the Words, Features and Concepts pages: the figure of a map state, and the
Patch that takes a drawn map from one state to another by replacing only the layers that changed
(figures.MAP_LAYERS). A click, a search, a new feature or colouring never resends the base points;
only a new run or projection draws the map again."""

from dataclasses import dataclass, field

import dash_bootstrap_components as dbc
import numpy as np
from dash import Patch, html

from dashboard import figures
from dashboard.lib import store, wordsearch
from dashboard.lib.mapstate import COLORS, PROJECTIONS, MapState
from dashboard.lib.urls import as_int

NEIGHBOURS_SHOWN = 10  # stored neighbours lit up and labelled on a click
MATCHES_DRAWN = 5000  # search matches drawn (all are counted)
LABELLED = 25  # at most this many highlighted words get a text label
ACTIVE_DRAWN_3D = 20_000  # words a feature fires on drawn on top (the strongest)
ACTIVE_DRAWN_2D = 50_000


@dataclass
class Overlay:
    """What a map shows besides its URL state: highlighted rows (Features, Concepts pages) and a lasso
    selection (`key` identifies it; `colour` = colour the map by it)."""

    highlight: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    selection: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    selection_key: str | None = None
    colour: bool = False


def limit_for(three_d: bool) -> int:
    return store.max_points() if three_d else store.max_points_2d()


def colouring(state: MapState, overlay: Overlay) -> str:
    """The colouring drawn: the state's, or 'selection' when the map is coloured by a selection."""
    return "selection" if overlay.colour and overlay.selection_key else state.color


def layer_keys(state: MapState, overlay: Overlay) -> dict:
    """What each layer depends on: a layer is redrawn when its key changes."""
    c = colouring(state, overlay)
    return {
        "density": state.density,
        "base": (c if c in ("zipf", "dim", "cluster") else "grey", state.dim if c == "dim" else None),
        "groups": c == "group",
        "active": (c == "feature", state.feature if c == "feature" else None),
        "selection": (c == "selection", overlay.selection_key if c == "selection" else None),
        "matches": (state.q, overlay.highlight.tobytes()),
        "links": state.row,
        "neighbours": state.row,
        "selected": state.row,
        "labels": (c if c in ("group", "cluster") and state.labels else None),
    }


class _Layers:
    """Builds the layers of one map state over one run view."""

    def __init__(self, v, state: MapState, overlay: Overlay, limit: int | None = None, ids: bool = True):
        self.v, self.state, self.overlay, self.ids = v, state, overlay, ids
        self.three_d = state.three_d
        self.coords = v.coords(state.proj)
        self.limit = limit or limit_for(self.three_d)
        self.colour = colouring(state, overlay)

    @property
    def rows(self) -> np.ndarray:
        return self.v.base_sample(self.limit)

    def points(self, name, rows, marker, labels=False, visible=True):
        rows = np.asarray(rows, np.int64)
        return figures.points_layer(
            name,
            self.coords[rows],
            rows,
            self.v.words[rows],
            three_d=self.three_d,
            marker=marker,
            labels=labels,
            ids=self.ids,
            visible=visible,
        )

    def build(self, name: str) -> dict:
        return getattr(self, f"_{name}")()

    def _density(self):
        return figures.density_layer(self.coords[self.rows], visible=self.state.density)

    def base_marker(self) -> dict:
        v, rows, c = self.v, self.rows, self.colour
        if c == "zipf":
            codes, rng = figures.value_codes(v.zipf[rows])
            return figures.base_marker(self.three_d, codes, value_range=rng, label="Zipf")
        if c == "dim" and self.state.dim is not None:
            codes, rng = figures.value_codes(v.embeddings[rows, self.state.dim], symmetric=True, zero_is_none=True)
            return figures.base_marker(
                self.three_d, codes, scale="RdBu_r", value_range=rng, label=f"dim {self.state.dim}"
            )
        if c == "cluster" and v.clusters is not None:
            return figures.base_marker(self.three_d, figures.palette_codes(v.clusters[rows]), palette=figures.PALETTE)
        return figures.base_marker(self.three_d)

    def _base(self):
        return self.points("base", self.rows, self.base_marker())

    def _groups(self):
        rows = self.rows
        rows = rows[self.v.group[rows] >= 0]
        marker = figures.groups_marker(self.three_d, self.v.group[rows])
        return self.points("groups", rows, marker, visible=self.colour == "group")

    def _active(self):
        f = self.state.feature
        if self.colour != "feature" or f is None:
            return figures.empty_layer("active", self.three_d)
        rows, acts = self.v.feature_column(f)
        cap = ACTIVE_DRAWN_3D if self.three_d else ACTIVE_DRAWN_2D
        order = np.argsort(acts, kind="stable")[-cap:]  # weakest first: the strongest are drawn on top
        marker = figures.active_marker(self.three_d, acts[order], f"feature #{f}")
        return self.points("active", rows[order], marker)

    def _selection(self):
        if self.colour != "selection":
            return figures.empty_layer("selection", self.three_d)
        marker = figures.accent_marker(self.three_d, figures.SELECTION, 1.6)
        return self.points("selection", self.overlay.selection[: self.limit], marker)

    def match_rows(self) -> np.ndarray:
        rows = self.overlay.highlight
        if self.state.q:
            try:
                rows = np.union1d(rows, wordsearch.matches(self.v, self.state.q))
            except wordsearch.SearchError:
                pass
        return np.asarray(rows, np.int64)[:MATCHES_DRAWN]

    def _matches(self):
        rows = self.match_rows()
        marker = figures.accent_marker(self.three_d, figures.MATCH, 2.4)
        return self.points("matches", rows, marker, labels=0 < len(rows) <= LABELLED)

    def neighbour_rows(self) -> np.ndarray:
        if self.state.row is None:
            return np.empty(0, np.int64)
        nb = self.v.neighbors(self.state.row)
        return np.empty(0, np.int64) if nb is None else nb[0][:NEIGHBOURS_SHOWN].astype(np.int64)

    def _neighbours(self):
        marker = figures.accent_marker(self.three_d, figures.NEIGHBOUR, 2.6)
        return self.points("neighbours", self.neighbour_rows(), marker, labels=True)

    def _links(self):
        if self.three_d:
            return figures.empty_layer("links", True)
        nb = self.neighbour_rows()
        centre = self.coords[self.state.row] if self.state.row is not None else (0, 0)
        return figures.links_layer(centre, self.coords[nb])

    def _selected(self):
        row = self.state.row
        rows = [] if row is None else [row]
        return self.points("selected", rows, figures.selected_marker(self.three_d), labels=True)

    def _labels(self):
        c = self.colour
        if not self.state.labels or c not in ("group", "cluster"):
            return figures.labels_layer(np.zeros((0, 3 if self.three_d else 2)), [], self.three_d)
        cats = self.v.group if c == "group" else self.v.clusters
        if cats is None:
            return figures.labels_layer(np.zeros((0, 3 if self.three_d else 2)), [], self.three_d)
        names, centres = [], []
        for k in np.unique(cats[cats >= 0]):
            members = np.flatnonzero(cats == k)
            centres.append(np.median(self.coords[members], axis=0))
            if c == "group":
                names.append(self.v.group_names[k] if k < len(self.v.group_names) else f"group {k}")
            else:
                names.append(f"cluster {k + 1}")
        return figures.labels_layer(np.asarray(centres, np.float32), names, self.three_d)


def state_figure(
    v, state: MapState, overlay: Overlay | None = None, *, height=620, title=None, limit=None, ids=True
) -> dict | None:
    """The whole word map of a resolved state (None when the run has no projection)."""
    if state.proj is None:
        return None
    layers = _Layers(v, state, overlay or Overlay(), limit, ids)
    three_d = state.three_d
    names = ("PC 1", "PC 2") if state.proj == "pca2" else None
    return figures.word_map_figure(
        {name: layers.build(name) for name in figures.map_layers(three_d)},
        three_d,
        title=title,
        height=height,
        uirevision=f"{v.run_id}-{state.proj}",
        axis_names=names,
    )


def state_patch(v, old: MapState, new: MapState, old_overlay: Overlay, new_overlay: Overlay):
    """A Patch from the map drawn for `old` to the one for `new` (same run and projection): only the
    layers whose key changed; the groups and density layers only change their visibility. None when
    nothing changed."""
    before, after = layer_keys(old, old_overlay), layer_keys(new, new_overlay)
    changed = [name for name in figures.map_layers(new.three_d) if before[name] != after[name]]
    if not changed:
        return None
    layers = _Layers(v, new, new_overlay)
    index = figures.map_layers(new.three_d)
    p = Patch()
    for name in changed:
        i = index[name]
        if name == "groups":
            p["data"][i]["visible"] = after["groups"]
        elif name == "density":
            p["data"][i]["visible"] = new.density
        elif name == "base":
            p["data"][i]["marker"] = layers.base_marker()
        else:
            p["data"][i] = layers.build(name)
    return p


def map_figure(
    v, proj, color="group", feature=None, dim=None, highlight=(), selected=None, height=560, title=None, limit=None
):
    """A word map for pages other than Words: coloured by group, Zipf, a feature, a dimension or 'plain'
    (grey), with `highlight` rows lit up and labelled (when few) and a `selected` row."""
    query = {"proj": proj, "color": color if color in COLORS else "group", "feature": feature, "dim": dim}
    state = MapState.of(query).resolve(v)
    if selected is not None:
        state = MapState(**{**state.to_dict(), "row": int(selected)})
    overlay = Overlay(highlight=np.unique(np.asarray(list(highlight), np.int64)))
    if color == "plain":
        state = MapState(**{**state.to_dict(), "color": "plain", "labels": False})
    return state_figure(v, state, overlay, height=height, title=title, limit=limit)


def map_controls(prefix, proj, color, v, allow=("group", "cluster", "zipf", "feature", "dim")):
    projs = [{"label": PROJECTIONS[p], "value": p} for p in v.projections()]
    colors = [
        {"label": COLORS[c], "value": c}
        for c in allow
        if (c != "feature" or v.has_sae) and (c != "cluster" or v.clusters is not None)
    ]
    available = v.projections()
    return html.Div(
        [
            html.Span("map ", className="lx-muted me-1"),
            dbc.RadioItems(
                id=f"{prefix}-proj",
                options=projs,
                value=proj if proj in available else (available[0] if available else None),
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
