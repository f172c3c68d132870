"""The cross-layer stage of a contextual run: what needs every layer computed in one pipeline call.

- Aligned word maps: every layer's word map fitted jointly (compute.alignment.aligned_maps), stored beside the
  per-layer maps as `projections/aligned/*`.
- Feature lineage: each layer's SAE features matched to the layers below and above (decoder cosine, activation
  correlation on the shared words; compute.lineage), traced through all layers, with the rotated-decoder null,
  and an aligned 2-D map of the decoder directions (relations: mutual best matches above the threshold).
- Word shift: per word, how its neighbours and its place on the map change from the layer below.
Definitions: docs/layers.md. Every function returns {layer: {schema path: value}} or one layer's dict."""

from __future__ import annotations

import numpy as np
from scipy.stats import ortho_group

from compute import alignment, lineage
from compute.config import RunConfig
from store.schema import LINEAGE, NEIGHBORS, PROJECTIONS, WORD_SHIFT, LayerMatches

# The aligned maps' dimensions, from the per-layer maps' switches.
ALIGNED_DIMS = ((3, "umap3d", PROJECTIONS.aligned.umap3d), (2, "umap2d", PROJECTIONS.aligned.umap2d))


def aligned_word_maps(
    cfg: RunConfig, layers: list[int], vectors: list[np.ndarray], progress=None, knns=None, dims=(3, 2)
) -> dict:
    """{layer: {projections/aligned/umap3d|umap2d: (n, d) float32}} for those of `dims` the run's per-layer maps
    have; empty when `projections.aligned` is off, there are fewer than 2 layers or too few words for a map.
    `knns`: each layer's cosine k-NN (compute.projections.word_knn), when the caller has them."""
    p = cfg.projections
    smallest = min((len(X) for X in vectors), default=0)
    if not p.aligned or len(layers) < 2 or smallest <= p.n_neighbors + 1:
        return {}
    out = {layer: {} for layer in layers}
    for dim, switch, path in ALIGNED_DIMS:
        if not getattr(p, switch) or dim not in dims:
            continue
        if progress:
            progress(f"aligned {dim}d", 0.0)
        for layer, m in zip(layers, alignment.aligned_maps(vectors, dim, p, knns=knns)):
            out[layer][path] = m
    return out


def _matches_output(group: LayerMatches, m: lineage.Matches) -> dict:
    return {
        group.cos_idx: m.cos_idx.astype(np.int32),
        group.cos: m.cos.astype(np.float32),
        group.cos_idx_corr: m.cos_idx_corr.astype(np.float32),
        group.corr_idx: m.corr_idx.astype(np.int32),
        group.corr: m.corr.astype(np.float32),
    }


def rotated_null(W_dec_a, W_dec_b, threshold: float, seed: int = 0) -> tuple[float, int]:
    """The baseline of the decoder-cosine matches: layer b's decoder rotated by a seeded random orthogonal
    matrix (same geometry, unrelated directions). Returns (the best cosine any feature of a reaches with it, how
    many features of a reach the threshold)."""
    Q = ortho_group.rvs(W_dec_b.shape[1], random_state=seed).astype(np.float32)
    _, cos, _, _ = lineage.decoder_matches(W_dec_a, np.asarray(W_dec_b, np.float32) @ Q)
    return float(cos.max(initial=-1.0)), int((cos >= threshold).sum())


def feature_lineage(
    cfg: RunConfig, layers: list[int], decoders: list[np.ndarray], acts: list, progress=None
) -> dict[int, dict]:
    """{layer: lineage datasets and attributes}: matches to the layer below and above (both scores), the
    lineage chain through all `layers`, born / ending flags, carry-over, the rotated-decoder null per pair and
    (with `projections.aligned`) the aligned decoder map. `acts[l]`: layer l's (n, F) word activations, rows the
    same words in every layer."""
    ups, downs, lin = lineage.trace_layers(decoders, acts)
    seed = cfg.sae.seed if cfg.sae is not None else 0
    nulls = [rotated_null(decoders[i], decoders[i + 1], float(lin.thresholds[i]), seed + i) for i in range(len(ups))]
    fmaps = None
    rel = lineage.relations(ups, downs, lin.thresholds)
    smallest = min(len(W) for W in decoders)
    if cfg.projections.aligned and all(rel) and smallest > 3:
        if progress:
            progress("aligned feature maps", 0.0)
        fmaps = alignment.aligned_maps(decoders, 2, cfg.projections, relations=rel)
    out = {}
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        o = {
            LINEAGE.path: {
                "chance": lineage.CHANCE,
                "below_layer": layers[i - 1] if i else -1,
                "above_layer": layers[i + 1] if i < last else -1,
                "threshold_down": float(lin.thresholds[i - 1]) if i else float("nan"),
                "threshold_up": float(lin.thresholds[i]) if i < last else float("nan"),
            },
            LINEAGE.layers: np.asarray(layers, np.int32),
            LINEAGE.chain: lin.chains[i].astype(np.int32),
            LINEAGE.born: lin.born[i],
            LINEAGE.ending: lin.ending[i],
            LINEAGE.thresholds: lin.thresholds.astype(np.float32),
            LINEAGE.carried_up: lin.carried_up.astype(np.int32),
            LINEAGE.carried_from_below: lin.carried_from_below.astype(np.int32),
            LINEAGE.null_max_cos: np.array([n[0] for n in nulls], np.float32),
            LINEAGE.null_matched: np.array([n[1] for n in nulls], np.int32),
        }
        if i < last:
            o.update(_matches_output(LINEAGE.up, ups[i]))
        if i:
            o.update(_matches_output(LINEAGE.down, downs[i - 1]))
        if fmaps is not None:
            o[LINEAGE.feature_map] = fmaps[i]
        out[layer] = o
    return out


def neighbour_jaccard(idx_a: np.ndarray, idx_b: np.ndarray) -> np.ndarray:
    """Per row, the Jaccard overlap of two neighbour lists of the same words (row indices, -1 ignored)."""
    out = np.empty(len(idx_a), np.float32)
    for r, (a, b) in enumerate(zip(idx_a, idx_b)):
        sa, sb = set(a[a >= 0].tolist()), set(b[b >= 0].tolist())
        union = len(sa | sb)
        out[r] = len(sa & sb) / union if union else np.nan
    return out


def word_shift(out: dict, below: dict, below_layer: int) -> dict:
    """The `word_shift` datasets of a layer's output `out`, against the output `below` of the layer under it
    (both runs of one call share their vocabulary, row for row): the Jaccard of each word's stored neighbours,
    and its Procrustes displacement (compute.alignment.procrustes_displacement) between the two layers' aligned
    2-D maps and between their independent 2-D maps (the baseline)."""
    res = {}
    if NEIGHBORS.indices in out and NEIGHBORS.indices in below:
        res[WORD_SHIFT.neighbour_jaccard] = neighbour_jaccard(below[NEIGHBORS.indices], out[NEIGHBORS.indices])
    attrs = {"below_layer": int(below_layer)}
    for path, key, attr in (
        (PROJECTIONS.aligned.umap2d, WORD_SHIFT.shift_aligned, "steadiness_aligned"),
        (PROJECTIONS.umap2d, WORD_SHIFT.shift_independent, "steadiness_independent"),
    ):
        if path in out and path in below:
            d = alignment.procrustes_displacement(below[path], out[path]).astype(np.float32)
            res[key] = d
            attrs[attr] = float(d.mean())
    if res:
        res[WORD_SHIFT.path] = attrs
    return res
