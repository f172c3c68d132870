"""Features traced through the layers: each SAE feature matched to the features of the neighbouring layers'
SAEs, by decoder direction and by activation on the words both layers share, and chained into a lineage.

Scores, for feature f of layer a and feature g of layer b:
- decoder cosine: cos(W_dec[f], W_dec'[g]) with the decoder rows scaled to unit length;
- activation correlation: Pearson's r between f's and g's activations over the shared words (a feature's
  activation is 0 on a word where it does not fire).
A feature's lineage follows its best decoder-cosine match to the layer above, that feature's best match to the
next layer, and so on (likewise downwards), for as long as the cosine is at least `cosine_threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.stats import beta

# A block of the (features x features) score matrix holds at most this many entries (float64: 32 MiB).
BLOCK_ENTRIES = 1 << 22
# Family-wise chance level of the threshold: the chance that the best of all pairs of unrelated features
# between two layers reaches it.
CHANCE = 1e-3


@dataclass
class Matches:
    """Each feature of one layer matched to the features of another layer. Index -1 (and score NaN): no match
    (activation scores: the feature never fires on the shared words)."""

    cos_idx: np.ndarray  # (F,) int32: best match by decoder cosine
    cos: np.ndarray  # (F,) float32: its cosine
    cos_idx_corr: np.ndarray  # (F,) float32: activation correlation of that same pair
    corr_idx: np.ndarray  # (F,) int32: best match by activation correlation
    corr: np.ndarray  # (F,) float32: its correlation

    def output(self, prefix: str) -> dict:
        return {
            f"{prefix}/cos_idx": self.cos_idx,
            f"{prefix}/cos": self.cos,
            f"{prefix}/cos_idx_corr": self.cos_idx_corr,
            f"{prefix}/corr_idx": self.corr_idx,
            f"{prefix}/corr": self.corr,
        }


def _unit_rows(W) -> np.ndarray:
    W = np.asarray(W, dtype=np.float32)
    return W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)


def _block_rows(n_cols: int, block_entries: int) -> int:
    return max(1, block_entries // max(n_cols, 1))


def decoder_matches(W_dec_a, W_dec_b, block_entries: int = BLOCK_ENTRIES):
    """Best decoder-cosine match in both directions, in row blocks:
    (a_to_b idx (F_a,) int32, cos (F_a,) float32, b_to_a idx (F_b,) int32, cos (F_b,) float32)."""
    A, B = _unit_rows(W_dec_a), _unit_rows(W_dec_b)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"W_dec: input dims differ ({A.shape[1]} vs {B.shape[1]})")
    ab_idx = np.empty(len(A), np.int32)
    ab_cos = np.empty(len(A), np.float32)
    ba_cos = np.full(len(B), -np.inf, np.float32)
    ba_idx = np.zeros(len(B), np.int32)
    step = _block_rows(len(B), block_entries)
    for s in range(0, len(A), step):
        C = A[s : s + step] @ B.T
        ab_idx[s : s + step] = C.argmax(1)
        ab_cos[s : s + step] = C[np.arange(len(C)), ab_idx[s : s + step]]
        col = C.argmax(0)
        col_best = C[col, np.arange(C.shape[1])]
        better = col_best > ba_cos
        ba_cos[better] = col_best[better]
        ba_idx[better] = s + col[better]
    return ab_idx, ab_cos, ba_idx, ba_cos


# ---------------------------------------------------------------- activation correlation


def _shared(acts, rows) -> sp.csc_matrix:
    acts = sp.csr_matrix(acts)
    if rows is not None:
        acts = acts[np.asarray(rows, dtype=np.int64)]
    return acts.astype(np.float64).tocsc()


def _column_moments(A: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    n = A.shape[0]
    mean = np.asarray(A.sum(axis=0)).ravel() / n
    sq = np.asarray(A.multiply(A).sum(axis=0)).ravel() / n
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    return mean, std


def _silent(std: np.ndarray) -> np.ndarray:
    """Columns without variance over the shared words (never firing, or the same value on every word)."""
    return std <= 1e-12 * max(float(std.max(initial=0.0)), 1e-30)


def correlation_matches(acts_a, acts_b, rows_a=None, rows_b=None, block_entries: int = BLOCK_ENTRIES):
    """Best match by Pearson correlation of feature activations over shared words, in both directions.

    acts_a (n_a, F_a) and acts_b (n_b, F_b) are sparse word-by-feature activations; row rows_a[i] of a and
    rows_b[i] of b are the same word (None: all rows, same order). The correlation matrix is formed one block of
    a's features at a time from the sparse product A_blk^T B, never densifying the activations:
    r = (A^T B / n - mean_a mean_b^T) / (std_a std_b^T).
    Returns (a_to_b idx (F_a,) int32, r (F_a,) float32, b_to_a idx (F_b,) int32, r (F_b,) float32); -1 / NaN
    for a feature silent on the shared words."""
    A, B = _shared(acts_a, rows_a), _shared(acts_b, rows_b)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"rows: {A.shape[0]} shared rows in a, {B.shape[0]} in b")
    n = A.shape[0]
    if n < 2:
        raise ValueError(f"rows: correlation needs at least 2 shared words, got {n}")
    mean_a, std_a = _column_moments(A)
    mean_b, std_b = _column_moments(B)
    live_a, live_b = ~_silent(std_a), ~_silent(std_b)
    Bt = B.tocsr()
    F_a, F_b = A.shape[1], B.shape[1]
    ab_idx = np.full(F_a, -1, np.int32)
    ab_r = np.full(F_a, np.nan, np.float32)
    ba_idx = np.full(F_b, -1, np.int32)
    ba_r = np.full(F_b, -np.inf, np.float64)
    safe_b = np.where(live_b, std_b, 1.0)
    step = _block_rows(F_b, block_entries)
    for s in range(0, F_a, step):
        e = min(s + step, F_a)
        R = (A[:, s:e].T @ Bt).toarray() / n
        R -= np.outer(mean_a[s:e], mean_b)
        R /= np.outer(np.where(live_a[s:e], std_a[s:e], 1.0), safe_b)
        R[~live_a[s:e]] = -np.inf
        R[:, ~live_b] = -np.inf
        if live_b.any():
            best = R.argmax(1)
            rows_live = live_a[s:e]
            ab_idx[s:e][rows_live] = best[rows_live]
            ab_r[s:e][rows_live] = R[np.arange(e - s), best][rows_live]
        if live_a[s:e].any():
            col = R.argmax(0)
            col_best = R[col, np.arange(F_b)]
            better = col_best > ba_r
            ba_r[better] = col_best[better]
            ba_idx[better] = s + col[better]
    ba_idx[~live_b] = -1
    ba_r = np.where(ba_idx >= 0, ba_r, np.nan).astype(np.float32)
    return ab_idx, ab_r, ba_idx, ba_r


def pair_correlation(acts_a, acts_b, idx_a, idx_b, rows_a=None, rows_b=None) -> np.ndarray:
    """Pearson correlation over the shared words of the listed feature pairs (idx_a[i], idx_b[i]): (P,) float32,
    NaN where either feature is silent or an index is -1."""
    A, B = _shared(acts_a, rows_a), _shared(acts_b, rows_b)
    n = A.shape[0]
    idx_a, idx_b = np.asarray(idx_a, np.int64), np.asarray(idx_b, np.int64)
    ok = (idx_a >= 0) & (idx_b >= 0)
    ia, ib = np.where(ok, idx_a, 0), np.where(ok, idx_b, 0)
    Aa, Bb = A[:, ia], B[:, ib]
    mean_a, std_a = _column_moments(Aa)
    mean_b, std_b = _column_moments(Bb)
    cross = np.asarray(Aa.multiply(Bb).sum(axis=0)).ravel() / n
    ok &= ~_silent(std_a) & ~_silent(std_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (cross - mean_a * mean_b) / (std_a * std_b)
    return np.where(ok, r, np.nan).astype(np.float32)


def match_layers(W_dec_a, W_dec_b, acts_a=None, acts_b=None, rows_a=None, rows_b=None) -> tuple[Matches, Matches]:
    """Layer a's features matched to layer b's, and b's to a's, by decoder cosine and (given activations on
    shared words) by activation correlation."""
    ab_idx, ab_cos, ba_idx, ba_cos = decoder_matches(W_dec_a, W_dec_b)
    F_a, F_b = len(ab_idx), len(ba_idx)
    if acts_a is None or acts_b is None:
        nan_a, nan_b = np.full(F_a, np.nan, np.float32), np.full(F_b, np.nan, np.float32)
        none_a, none_b = np.full(F_a, -1, np.int32), np.full(F_b, -1, np.int32)
        return (
            Matches(ab_idx, ab_cos, nan_a, none_a, nan_a.copy()),
            Matches(ba_idx, ba_cos, nan_b, none_b, nan_b.copy()),
        )
    if acts_a.shape[1] != F_a or acts_b.shape[1] != F_b:
        raise ValueError("acts: feature counts differ from the decoders'")
    cab_idx, cab_r, cba_idx, cba_r = correlation_matches(acts_a, acts_b, rows_a, rows_b)
    ab_pair = pair_correlation(acts_a, acts_b, np.arange(F_a), ab_idx, rows_a, rows_b)
    ba_pair = pair_correlation(acts_b, acts_a, np.arange(F_b), ba_idx, rows_b, rows_a)
    return (Matches(ab_idx, ab_cos, ab_pair, cab_idx, cab_r), Matches(ba_idx, ba_cos, ba_pair, cba_idx, cba_r))


# ---------------------------------------------------------------- lineage


def cosine_threshold(d: int, n_a: int, n_b: int, chance: float = CHANCE) -> float:
    """The decoder cosine that a match must reach to count: the (1 - chance) quantile of the largest cosine
    among the n_a x n_b pairs of two sets of independent random unit directions in d dimensions.

    With unrelated features, the best match of any of layer a's features reaches it with probability ~ chance.
    The cosine u.v of two random unit vectors is 2X - 1 with X ~ Beta((d-1)/2, (d-1)/2); the largest of N = n_a
    n_b such cosines (treated as independent) is below t with probability F(t)^N, so t = 2 F^-1((1-chance)^(1/N))
    - 1. Examples: d=384, 2048 x 2048 features: 0.31; d=768, 6144 x 6144: 0.23; d=64, 64 x 64: 0.58."""
    if d < 2 or n_a < 1 or n_b < 1:
        raise ValueError(f"cosine_threshold: needs d >= 2 and at least one feature a side (d={d}, {n_a}, {n_b})")
    upper_tail = -np.expm1(np.log1p(-chance) / (float(n_a) * float(n_b)))  # 1 - (1 - chance)^(1/N), no rounding
    a = (d - 1) / 2.0
    return float(2.0 * beta.isf(upper_tail, a, a) - 1.0)


@dataclass
class Lineage:
    """Features of every layer traced through the others.

    chains[l]: (F_l, n_layers) int32, the feature of layer m on feature f's lineage (-1 past its ends);
    chains[l][f, l] == f. born[l] / ending[l]: (F_l,) bool, no good match in the layer below / above (never at
    the first / last layer). carried_up[l]: features of layer l with a good match in layer l+1;
    carried_from_below[l]: features of layer l with a good match in layer l-1. thresholds[l]: the cosine
    threshold between layers l and l+1."""

    chains: list[np.ndarray]
    born: list[np.ndarray]
    ending: list[np.ndarray]
    thresholds: np.ndarray
    carried_up: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    carried_from_below: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def output(self, layer: int) -> dict:
        """The lineage datasets of one layer's run."""
        return {
            "lineage/chain": self.chains[layer].astype(np.int32),
            "lineage/born": self.born[layer],
            "lineage/ending": self.ending[layer],
            "lineage/thresholds": self.thresholds.astype(np.float32),
            "lineage/carried_up": self.carried_up.astype(np.int32),
            "lineage/carried_from_below": self.carried_from_below.astype(np.int32),
        }


def trace(ups: list[Matches], downs: list[Matches], thresholds) -> Lineage:
    """Lineages from the matches of every pair of neighbouring layers: ups[l] matches layer l to l+1,
    downs[l] matches layer l+1 to l, thresholds[l] is the cosine a match between them must reach."""
    n_pairs = len(ups)
    if len(downs) != n_pairs or len(thresholds) != n_pairs:
        raise ValueError("trace: ups, downs and thresholds must have one entry per pair of layers")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    sizes = [len(m.cos_idx) for m in ups] + [len(downs[-1].cos_idx)] if n_pairs else []
    L = len(sizes)
    good_up = [m.cos >= t for m, t in zip(ups, thresholds)]  # layer l -> l+1
    good_down = [m.cos >= t for m, t in zip(downs, thresholds)]  # layer l+1 -> l
    chains = []
    for layer, F in enumerate(sizes):
        chain = np.full((F, L), -1, np.int32)
        chain[:, layer] = np.arange(F)
        cur = np.arange(F)
        for m in range(layer, L - 1):  # upwards
            alive = cur >= 0
            nxt = np.full(F, -1, np.int64)
            nxt[alive] = np.where(good_up[m][cur[alive]], ups[m].cos_idx[cur[alive]], -1)
            chain[:, m + 1] = cur = nxt
        cur = np.arange(F)
        for m in range(layer, 0, -1):  # downwards
            alive = cur >= 0
            nxt = np.full(F, -1, np.int64)
            nxt[alive] = np.where(good_down[m - 1][cur[alive]], downs[m - 1].cos_idx[cur[alive]], -1)
            chain[:, m - 1] = cur = nxt
        chains.append(chain)
    born = [np.zeros(F, bool) if layer == 0 else ~good_down[layer - 1] for layer, F in enumerate(sizes)]
    ending = [np.zeros(F, bool) if layer == L - 1 else ~good_up[layer] for layer, F in enumerate(sizes)]
    carried_up = np.array([int(g.sum()) for g in good_up] + [0], np.int64) if L else np.zeros(0, np.int64)
    carried_from_below = np.array([0] + [int(g.sum()) for g in good_down], np.int64) if L else np.zeros(0, np.int64)
    return Lineage(chains, born, ending, thresholds, carried_up, carried_from_below)


def trace_layers(
    decoders: list[np.ndarray], acts: list | None = None, rows: list | None = None, chance: float = CHANCE
) -> tuple[list[Matches], list[Matches], Lineage]:
    """Match every pair of neighbouring layers and trace the lineages.

    decoders[l]: layer l's W_dec (F_l, d); acts[l]: its sparse (n_l, F_l) activations or None; rows[l]:
    (rows in layer l, rows in layer l+1) of the words both share, or None when every layer has the same rows.
    Returns (ups, downs, lineage)."""
    if len(decoders) < 2:
        raise ValueError(f"lineage: needs at least 2 layers, got {len(decoders)}")
    ups, downs, thresholds = [], [], []
    for layer in range(len(decoders) - 1):
        ra, rb = rows[layer] if rows is not None else (None, None)
        aa = acts[layer] if acts is not None else None
        ab = acts[layer + 1] if acts is not None else None
        up, down = match_layers(decoders[layer], decoders[layer + 1], aa, ab, ra, rb)
        ups.append(up)
        downs.append(down)
        thresholds.append(
            cosine_threshold(decoders[layer].shape[1], len(decoders[layer]), len(decoders[layer + 1]), chance)
        )
    return ups, downs, trace(ups, downs, thresholds)


def relations(ups: list[Matches], downs: list[Matches], thresholds) -> list[dict[int, int]]:
    """For aligned maps of the features (compute.alignment.aligned_maps on the decoders): for each pair of
    neighbouring layers, {feature of l: feature of l+1} for mutual best matches at or above the threshold (one to
    one, as AlignedUMAP's relations must be)."""
    out = []
    for up, down, t in zip(ups, downs, thresholds, strict=True):
        f = np.flatnonzero((up.cos >= t) & (down.cos_idx[up.cos_idx] == np.arange(len(up.cos_idx))))
        out.append(dict(zip(f.tolist(), up.cos_idx[f].tolist())))
    return out
