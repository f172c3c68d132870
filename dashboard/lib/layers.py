"""A run family through its layers, for the Layers page: the stored lineage, aligned decoder maps and word
shift of each layer's run (docs/store.md "Across layers"; definitions in docs/layers.md). Read only; the
matching, chains and maps were computed by compute/layer_stack.py."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from dashboard.lib import store
from dashboard.lib.labels import feature_label
from dashboard.lib.runs import family
from store.schema import EMBEDDINGS, GEOMETRY, LINEAGE, NEIGHBORS, PROJECTIONS, SAE, WORD_SHIFT

# Lines drawn between matched features, at most (the strongest matches first, shared out over the pairs of
# layers), and feature nodes per layer (the most frequently firing first, the selected lineage always).
MAX_LINES = 1500
MAX_NODES_PER_LAYER = 1000
LABEL_CHARS = 32


@dataclass
class Stack:
    """The layers of a family that were traced together, bottom first."""

    layers: list[int]
    views: list  # RunView per layer

    def index(self, layer: int) -> int | None:
        return self.layers.index(layer) if layer in self.layers else None


def stack(v) -> Stack | None:
    """The layers traced with run view `v` (its `/lineage/layers`, else every layer of its family), each with a
    readable run; None when fewer than two."""
    runs = family(v)
    stored = v.run.get(LINEAGE.layers)
    layers = [int(x) for x in stored] if stored is not None else sorted(runs)
    views, kept = [], []
    for layer in layers:
        run_id = v.run_id if layer == v.layer else runs.get(layer)
        if run_id is None:
            continue
        try:
            views.append(store.view(run_id))
            kept.append(layer)
        except store.StoreError:
            continue
    return Stack(kept, views) if len(kept) >= 2 else None


def has_lineage(v) -> bool:
    return v.run.has(LINEAGE.chain)


def feature_xy(v) -> np.ndarray | None:
    """(F, 2) the features' place in the layer's plane: the aligned decoder map, else the run's own."""
    xy = v.run.get(LINEAGE.feature_map)
    if xy is None:
        xy = v.run.get(SAE.feature_map)
    return None if xy is None else np.asarray(xy, np.float32)


def short(text: str, n: int = LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class Nodes:
    """The feature nodes drawn: per node its layer, feature, place, kind and label."""

    layer: np.ndarray
    feature: np.ndarray
    xy: np.ndarray
    born: np.ndarray
    ending: np.ndarray
    text: np.ndarray


def _drawn_features(v) -> np.ndarray:
    density = v.run.get(SAE.density)
    if density is None:
        return np.arange(min(v.n_features, MAX_NODES_PER_LAYER))
    alive = np.flatnonzero(density > 0)
    if len(alive) > MAX_NODES_PER_LAYER:
        alive = np.sort(alive[np.argsort(-density[alive], kind="stable")[:MAX_NODES_PER_LAYER]])
    return alive.astype(np.int64)


def nodes(st: Stack) -> Nodes:
    """The drawn features of every layer (the firing ones, at most MAX_NODES_PER_LAYER a layer), built once
    per set of run views (they are cached per run file, so a rewritten run gives new ones)."""
    return _nodes(tuple(st.views), tuple(st.layers))


@functools.lru_cache(maxsize=4)
def _nodes(views: tuple, layers: tuple) -> Nodes:
    cols = {k: [] for k in ("layer", "feature", "xy", "born", "ending", "text")}
    for layer, v in zip(layers, views):
        xy = feature_xy(v)
        if xy is None or not v.has_sae:
            continue
        f = _drawn_features(v)
        born, ending = v.run.get(LINEAGE.born), v.run.get(LINEAGE.ending)
        names = v.run.get(SAE.feature_label)
        cols["layer"].append(np.full(len(f), layer, np.int64))
        cols["feature"].append(f)
        cols["xy"].append(xy[f])
        cols["born"].append(born[f] if born is not None else np.zeros(len(f), bool))
        cols["ending"].append(ending[f] if ending is not None else np.zeros(len(f), bool))
        cols["text"].append(
            np.array([f"L{layer} #{g} " + short(str(names[g]) if names is not None else "") for g in f], dtype=str)
        )
    if not cols["layer"]:
        empty = np.zeros(0, np.int64)
        return Nodes(
            empty, empty, np.zeros((0, 2), np.float32), empty.astype(bool), empty.astype(bool), empty.astype(str)
        )
    return Nodes(**{k: np.concatenate(parts) for k, parts in cols.items()})


def places(st: Stack) -> dict[tuple[int, int], tuple[float, float]]:
    """{(layer, feature): (x, y)} of every drawn feature."""
    return _places(tuple(st.views), tuple(st.layers))


@functools.lru_cache(maxsize=4)
def _places(views: tuple, layers: tuple) -> dict:
    n = _nodes(views, layers)
    return {(int(a), int(b)): (float(x), float(y)) for a, b, (x, y) in zip(n.layer, n.feature, n.xy)}


def lineage_places(st: Stack, steps: list[dict]) -> list[tuple[int, int, float, float]]:
    """(layer, feature, x, y) of each step of a lineage, from the layers' feature maps (drawn or not)."""
    out = []
    for s in steps:
        xy = feature_xy(st.views[st.index(s["layer"])])
        if xy is not None:
            out.append((s["layer"], s["feature"], float(xy[s["feature"], 0]), float(xy[s["feature"], 1])))
    return out


def match_lines(st: Stack, max_lines: int = MAX_LINES) -> list[tuple]:
    """The matches drawn as lines: per pair of neighbouring layers (lower layer, features, their match in the
    layer above, cosine, upper layer), only matches at or above the stored threshold, the strongest first, at most
    `max_lines` in all."""
    pairs = []
    per_pair = max(1, max_lines // max(1, len(st.layers) - 1))
    for i in range(len(st.layers) - 1):
        v = st.views[i]
        idx, cos = v.run.get(LINEAGE.up.cos_idx), v.run.get(LINEAGE.up.cos)
        t = v.run.attrs_of(LINEAGE.path).get("threshold_up")
        if idx is None or cos is None or t is None:
            continue
        good = np.flatnonzero(cos >= float(t))
        good = good[np.argsort(-cos[good], kind="stable")[:per_pair]]
        pairs.append((st.layers[i], good.astype(np.int64), idx[good].astype(np.int64), cos[good], st.layers[i + 1]))
    return pairs


def carry_over(st: Stack) -> list[dict]:
    """One row per layer: features, firing features, carried up / from below, born, ending, the rotated-decoder
    null of the pair above and the threshold to the layer above."""
    rows = []
    for i, (layer, v) in enumerate(zip(st.layers, st.views)):
        if not has_lineage(v):
            continue
        lin = v.run.attrs_of(LINEAGE.path)
        up, below = v.run.get(LINEAGE.up.cos), v.run.get(LINEAGE.down.cos)
        density = v.run.get(SAE.density)
        nulls, null_cos = v.run.get(LINEAGE.null_matched), v.run.get(LINEAGE.null_max_cos)
        t_up = lin.get("threshold_up")
        rows.append(
            dict(
                layer=layer,
                features=int(v.n_features),
                firing=int((density > 0).sum()) if density is not None else None,
                carried_up=int((up >= float(t_up)).sum()) if up is not None else None,
                from_below=int((below >= float(lin.get("threshold_down"))).sum()) if below is not None else None,
                born=int(v.run.get(LINEAGE.born).sum()),
                ending=int(v.run.get(LINEAGE.ending).sum()),
                null_up=int(nulls[i]) if nulls is not None and i < len(nulls) and up is not None else None,
                null_max_cos=float(null_cos[i])
                if null_cos is not None and i < len(null_cos) and up is not None
                else None,
                threshold_up=float(t_up) if up is not None else None,
            )
        )
    return rows


def lineage_steps(st: Stack, layer: int, f: int, top: int = 5) -> list[dict]:
    """Feature f of `layer` along its stored lineage: per layer on the chain, the feature, its label and top
    words, and the step's cosine and activation correlation to the layer below on the chain."""
    i = st.index(layer)
    if i is None:
        return []
    chain = st.views[i].run.array(LINEAGE.chain)[f]
    stored_layers = st.views[i].run.get(LINEAGE.layers)
    col = {int(lay): c for c, lay in enumerate(stored_layers)} if stored_layers is not None else {}
    steps, prev = [], None
    for j, (lay, v) in enumerate(zip(st.layers, st.views)):
        c = col.get(lay)
        g = int(chain[c]) if c is not None else -1
        if g < 0:
            prev = None
            continue
        cos = corr = None
        if prev is not None:  # the lower step's match upwards is this feature
            lower_v, lower_g = st.views[j - 1], prev
            cos = float(lower_v.run.array(LINEAGE.up.cos)[lower_g])
            corr = float(lower_v.run.array(LINEAGE.up.cos_idx_corr)[lower_g])
        top_words = v.run.array(SAE.top_words)[g] if v.run.has(SAE.top_words) else np.zeros(0, np.int64)
        steps.append(
            dict(
                layer=lay,
                run_id=v.run_id,
                feature=g,
                label=feature_label(v, g),
                top_words=[str(v.words[r]) for r in top_words[:top] if r >= 0],
                cos=cos,
                corr=None if corr is None or not np.isfinite(corr) else corr,
                born=bool(v.run.array(LINEAGE.born)[g]),
                ending=bool(v.run.array(LINEAGE.ending)[g]),
                selected=lay == layer,
            )
        )
        prev = g
    return steps


def word_layers(st: Stack, word: str, n_neighbours: int = 8, n_features: int = 3) -> list[dict] | None:
    """The word in every layer: its place on the aligned 2-D map (else the layer's own), nearest neighbours
    (words and their places), top features, norm, cosine to the layer's mean vector, and the stored shift from
    the layer below. None when the word is not in the runs."""
    out = []
    for layer, v in zip(st.layers, st.views):
        row = v.find(word)
        if row is None:
            return None
        norms, cos_means = _norms(v)
        norm, cos_mean = float(norms[row]), float(cos_means[row])
        cos_mean = cos_mean if np.isfinite(cos_mean) else None
        aligned = v.run.has(PROJECTIONS.aligned.umap2d)
        map_path = PROJECTIONS.aligned.umap2d if aligned else PROJECTIONS.umap2d
        nb_rows, nb_cos = [], []
        if v.run.has(NEIGHBORS.indices):
            idx, cos = v.run.array(NEIGHBORS.indices)[row], v.run.array(NEIGHBORS.cos)[row]
            nb_rows, nb_cos = idx[idx >= 0][:n_neighbours], cos[idx >= 0][:n_neighbours]
        coords = v.run.get(map_path)
        place = coords[row] if coords is not None else None
        nb_place = coords[nb_rows] if coords is not None and len(nb_rows) else None
        feats = v.word_features(row, n_features) if v.has_sae else (np.zeros(0, np.int64), np.zeros(0))

        out.append(
            dict(
                layer=layer,
                view=v,
                row=row,
                aligned=aligned,
                place=place,
                neighbours=[str(v.words[r]) for r in nb_rows],
                neighbour_cos=[float(c) for c in nb_cos],
                neighbour_place=nb_place,
                features=[(int(f), float(a)) for f, a in zip(*feats)],
                norm=norm,
                cos_mean=cos_mean,
                jaccard=_stored(v, WORD_SHIFT.neighbour_jaccard, row),
                shift_aligned=_stored(v, WORD_SHIFT.shift_aligned, row),
                shift_independent=_stored(v, WORD_SHIFT.shift_independent, row),
            )
        )
    return out


@functools.lru_cache(maxsize=16)
def _norms(v) -> tuple[np.ndarray, np.ndarray]:
    """Every word's vector norm and cosine to the layer's mean vector (NaN without a stored mean), computed once
    per run view; the embeddings are read once and not kept."""
    X = np.asarray(v.run.array(EMBEDDINGS, cache=False), np.float32)
    norms = np.linalg.norm(X, axis=1)
    mean = v.run.get(GEOMETRY.mean)
    if mean is None or not np.linalg.norm(mean) > 0:
        return norms, np.full(len(X), np.nan, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (X @ mean.astype(np.float32)) / (norms * np.linalg.norm(mean))
    return norms, cos.astype(np.float32)


def _stored(v, path: str, row: int) -> float | None:
    if not v.run.has(path):
        return None
    val = float(v.run.array(path)[row])
    return val if np.isfinite(val) else None


def most_changed(rows: list[dict]) -> dict | None:
    """The layer where the word's neighbourhood changes most: lowest stored neighbour Jaccard with the layer
    below (first such layer on ties)."""
    scored = [r for r in rows if r["jaccard"] is not None]
    return min(scored, key=lambda r: r["jaccard"]) if scored else None


def steadiness(st: Stack) -> list[dict]:
    """Per layer (from the second): the stored mean shift of a word from the layer below, aligned and
    independent maps."""
    out = []
    for layer, v in zip(st.layers, st.views):
        a = v.run.attrs_of(WORD_SHIFT.path)
        if a.get("steadiness_aligned") is not None or a.get("steadiness_independent") is not None:
            out.append(
                dict(
                    layer=layer,
                    below=a.get("below_layer"),
                    aligned=a.get("steadiness_aligned"),
                    independent=a.get("steadiness_independent"),
                )
            )
    return out


def neighbours_in_layer(v) -> bool:
    return v.run.has(NEIGHBORS.indices)
