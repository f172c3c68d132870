"""Two runs compared on the words they share: linear CKA (overall and per concept label), per-word neighbour
overlap, and their SAE features matched by activation correlation.

- Linear CKA (Kornblith et al. 2019): with X (n, d1) and Y (n, d2) column-centred,
  CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), in [0, 1]; 1 when Y is X up to rotation and isotropic
  scaling. Formed in feature space, O(n d^2) time and O(d^2) memory. Baseline: the same with Y's rows shuffled
  (CKA of unrelated representations of the same size, which is well above 0 when n is not much larger than d).
- Neighbour overlap of a word: Jaccard |N_a & N_b| / |N_a | N_b| of its k nearest neighbours by cosine in each
  run, both searched within the shared vocabulary. Baseline: k^2 / (n - 1) / (2k - k^2 / (n - 1)), the overlap
  of two random k-sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from compute import projections
from compute.alignment import shared_rows
from compute.lineage import correlation_matches

MIN_LABEL_ROWS = 3


def _centred(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X - X.mean(axis=0)


def linear_cka(X, Y) -> float:
    """Linear CKA between two representations of the same n rows (see the module docstring). NaN when either
    has no variance."""
    X, Y = _centred(X), _centred(Y)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"linear_cka: row counts differ ({X.shape[0]} vs {Y.shape[0]})")
    xx = np.linalg.norm(X.T @ X)
    yy = np.linalg.norm(Y.T @ Y)
    if xx == 0 or yy == 0:
        return float("nan")
    return float(np.linalg.norm(Y.T @ X) ** 2 / (xx * yy))


def shuffled_cka(X, Y, repeats: int = 5, seed: int = 0) -> np.ndarray:
    """Baseline: linear CKA with Y's rows in random order, `repeats` seeded shuffles: (repeats,) float64. The
    norms of X^T X and Y^T Y do not change under a shuffle (nor does centring), so only Y^T X is formed again."""
    rng = np.random.default_rng(seed)
    X, Y = _centred(X), _centred(Y)
    xx, yy = np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    if xx == 0 or yy == 0:
        return np.full(repeats, np.nan)
    return np.array([np.linalg.norm(Y[rng.permutation(len(Y))].T @ X) ** 2 / (xx * yy) for _ in range(repeats)])


def cka_by_label(
    X, Y, labels: Mapping[str, np.ndarray], min_rows: int = MIN_LABEL_ROWS, repeats: int = 5, seed: int = 0
) -> dict[str, dict]:
    """Linear CKA on the rows of each label (a boolean mask or row indices), centred within the label, beside
    its shuffled baseline. {label: {"n": rows, "cka": float, "shuffled": mean baseline}}; labels with fewer than
    `min_rows` rows get NaN."""
    X, Y = np.asarray(X), np.asarray(Y)
    out = {}
    for name, sel in labels.items():
        sel = np.asarray(sel)
        rows = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64)
        if len(rows) < min_rows:
            out[name] = {"n": len(rows), "cka": float("nan"), "shuffled": float("nan")}
            continue
        Xs, Ys = X[rows], Y[rows]
        out[name] = {
            "n": len(rows),
            "cka": linear_cka(Xs, Ys),
            "shuffled": float(np.mean(shuffled_cka(Xs, Ys, repeats, seed))),
        }
    return out


# ---------------------------------------------------------------- neighbour overlap


def neighbour_sets(X, k: int = 10, seed: int = 0) -> np.ndarray:
    """Each row's k nearest other rows by cosine: (n, k) int32, nearest first. Exact, in row blocks
    (compute.projections.knn_cosine; approximate above its EXACT_KNN_MAX rows)."""
    if len(X) <= k:
        raise ValueError(f"neighbours: {len(X)} shared words are too few for {k} neighbours each")
    idx, _ = projections.knn_cosine(np.asarray(X, dtype=np.float32), k, seed)
    return idx[:, 1 : k + 1]


def jaccard_rows(A: np.ndarray, B: np.ndarray, block: int = 4096) -> np.ndarray:
    """Jaccard overlap of row i of A with row i of B, each a set of distinct ids: (n,) float64."""
    A, B = np.asarray(A), np.asarray(B)
    out = np.empty(len(A))
    for s in range(0, len(A), block):
        a, b = A[s : s + block], B[s : s + block]
        inter = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
        out[s : s + block] = inter / (a.shape[1] + b.shape[1] - inter)
    return out


def random_jaccard(n: int, k: int) -> float:
    """Expected-overlap baseline: the Jaccard of two random k-sets among the n - 1 other words, from the
    expected intersection k^2 / (n - 1)."""
    inter = k * k / max(n - 1, 1)
    return inter / (2 * k - inter)


def neighbour_overlap(X_a, X_b, k: int = 10, seed: int = 0):
    """Per shared word, the Jaccard of its top-k neighbours in a and in b (rows of X_a and X_b are the same
    words): (jaccard (n,), neighbours_a (n, k), neighbours_b (n, k))."""
    Na, Nb = neighbour_sets(X_a, k, seed), neighbour_sets(X_b, k, seed)
    return jaccard_rows(Na, Nb), Na, Nb


def neighbour_change(neighbours: Sequence[np.ndarray]) -> np.ndarray:
    """A word's path through the layers of one run family (the same words, row for row): the Jaccard overlap of
    its stored neighbours in each layer with those in the next, (n, n_layers - 1). The layer where its
    neighbourhood changes most is the argmin of its row (the step from that layer to the next)."""
    if len(neighbours) < 2:
        raise ValueError("neighbour_change: needs at least 2 layers")
    return np.stack([jaccard_rows(a, b) for a, b in pairwise(neighbours)], axis=1)


def extremes(scores: np.ndarray, m: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Rows with the highest and the lowest scores, best / worst first (ties in row order): (top, bottom)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    low = np.argsort(np.asarray(scores), kind="stable")
    return order[:m], low[:m]


# ---------------------------------------------------------------- two runs


@dataclass
class Comparison:
    """Two runs on their shared words. rows_a / rows_b: the shared words' rows in each run (same order)."""

    words: list[str]
    rows_a: np.ndarray
    rows_b: np.ndarray
    cka: float
    cka_shuffled: np.ndarray
    cka_labels: dict[str, dict]
    jaccard: np.ndarray  # (n_shared,) per word
    jaccard_random: float
    neighbours_a: np.ndarray  # (n_shared, k) shared-word positions, not run rows
    neighbours_b: np.ndarray
    features_a_to_b: tuple | None = None  # (idx (F_a,), r (F_a,)) best activation match in b
    features_b_to_a: tuple | None = None


def compare_runs(
    words_a: Sequence[str],
    X_a,
    words_b: Sequence[str],
    X_b,
    labels_a: Mapping[str, np.ndarray] | None = None,
    acts_a=None,
    acts_b=None,
    k: int = 10,
    seed: int = 0,
    repeats: int = 5,
) -> Comparison:
    """Everything the Compare page shows for runs a and b. labels_a: {label: boolean mask over a's rows} (e.g.
    concept groups); acts_a / acts_b: sparse word-by-feature activations of each run's SAE, or None."""
    rows_a, rows_b = shared_rows(words_a, words_b)
    if len(rows_a) <= k:
        raise ValueError(f"compare: the runs share {len(rows_a)} words; at least {k + 1} are needed")
    Xa, Xb = np.asarray(X_a)[rows_a], np.asarray(X_b)[rows_b]
    labels = {name: np.asarray(mask, dtype=bool)[rows_a] for name, mask in (labels_a or {}).items()}
    jac, Na, Nb = neighbour_overlap(Xa, Xb, k, seed)
    comp = Comparison(
        words=[words_a[i] for i in rows_a.tolist()],
        rows_a=rows_a,
        rows_b=rows_b,
        cka=linear_cka(Xa, Xb),
        cka_shuffled=shuffled_cka(Xa, Xb, repeats, seed),
        cka_labels=cka_by_label(Xa, Xb, labels, repeats=repeats, seed=seed),
        jaccard=jac,
        jaccard_random=random_jaccard(len(rows_a), k),
        neighbours_a=Na,
        neighbours_b=Nb,
    )
    if acts_a is not None and acts_b is not None:
        ab, ab_r, ba, ba_r = correlation_matches(acts_a, acts_b, rows_a, rows_b)
        comp.features_a_to_b, comp.features_b_to_a = (ab, ab_r), (ba, ba_r)
    return comp
