"""One score for "feature f is about label c", for every feature and label at once, and a name per feature.

For activations A (n words x F features, non-negative, CSR) and a label membership M (n x L, bool):
- precision_fc = sum of A[:, f] over c's words / sum of A[:, f] over all words  (share of f's activation mass);
- recall_fc    = number of c's words on which f fires (A > 0) / number of c's words;
- f1_fc        = 2 P R / (P + R), 0 when both are 0;
- best_f       = the label with the largest F1 (ties: the lower label index), -1 when every F1 is 0.
Labels with fewer than MIN_LABEL_WORDS words in the vocabulary are left out (their F1 is 0): with fewer words,
one word moves recall by more than 5 points, and the label's precision cannot be told from chance.

Shapes in names: n words, F features, L labels, M top words per feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

MIN_LABEL_WORDS = 20
# Below this best F1 a feature is named by its top words only (measured: benchmarks/results/labels-*.json).
LABEL_FLOOR = 0.1
TOP_SHARE_WORDS = 10


@dataclass(frozen=True)
class ConceptScores:
    precision: np.ndarray  # (F, L) float32
    recall: np.ndarray  # (F, L) float32
    f1: np.ndarray  # (F, L) float32, 0 for labels that are not eligible
    best: np.ndarray  # (F,) int32, -1 = no label
    best_f1: np.ndarray  # (F,) float32, 0 = no label
    eligible: np.ndarray  # (L,) bool: the label has at least `min_words` words


def _divide(a, b) -> np.ndarray:
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    return np.divide(a, b, out=np.zeros(a.shape), where=b > 0)


def concept_scores(acts_nF, member_nL, min_words: int = MIN_LABEL_WORDS) -> ConceptScores:
    """Precision, recall and F1 of every (feature, label) pair, and each feature's best label (module docstring).
    Two sparse products (A^T M and (A > 0)^T M), so the cost is O(nnz(A) x labels per word)."""
    A = sp.csr_matrix(acts_nF, dtype=np.float64)
    M = sp.csr_matrix(member_nL, dtype=np.float64)
    if A.shape[0] != M.shape[0]:
        raise ValueError(f"member_nL: {M.shape[0]} rows but the activations have {A.shape[0]}")
    if A.nnz and A.data.min() < 0:
        raise ValueError("acts_nF: activations must be non-negative")
    M.data[:] = 1.0
    fires = A.copy()
    fires.data = (fires.data > 0).astype(np.float64)

    mass_FL = (A.T @ M).toarray()
    hits_FL = (fires.T @ M).toarray()
    total_F = np.asarray(A.sum(0)).ravel()
    size_L = np.asarray(M.sum(0)).ravel()
    eligible = size_L >= max(1, int(min_words))

    precision = _divide(mass_FL, total_F[:, None])
    recall = _divide(hits_FL, size_L[None, :])
    f1 = _divide(2 * precision * recall, precision + recall)
    f1[:, ~eligible] = 0.0
    best = f1.argmax(1).astype(np.int32) if f1.shape[1] else np.full(f1.shape[0], -1, np.int32)
    best_f1 = f1.max(1) if f1.shape[1] else np.zeros(f1.shape[0])
    best[best_f1 <= 0] = -1
    return ConceptScores(
        precision.astype(np.float32),
        recall.astype(np.float32),
        f1.astype(np.float32),
        best,
        best_f1.astype(np.float32),
        eligible,
    )


def top_label_share(top_words_FM: np.ndarray, member_nL, best_F: np.ndarray, m: int = TOP_SHARE_WORDS) -> np.ndarray:
    """(F,) share of each feature's top-m words (rows of top_words, -1 padded) that carry its best label;
    NaN where the feature has no label or no top word."""
    top = np.asarray(top_words_FM)[:, :m]
    best_F = np.asarray(best_F)
    member = sp.csr_matrix(member_nL, dtype=bool)
    out = np.full(len(top), np.nan)
    for f in np.flatnonzero(best_F >= 0):
        rows = top[f][top[f] >= 0]
        if len(rows):
            out[f] = member[rows, int(best_F[f])].toarray().mean()
    return out


def median_top_share(
    score_F: np.ndarray,
    top_words_FM: np.ndarray,
    member_nL,
    best_F: np.ndarray,
    n_features: int = 20,
    m: int = TOP_SHARE_WORDS,
) -> float:
    """Over the `n_features` features with the highest score, the median share of their top-m words that carry
    their best label (issue 12's acceptance figure); NaN when none of them has a label."""
    top = np.argsort(-np.asarray(score_F), kind="stable")[:n_features]
    share = top_label_share(np.asarray(top_words_FM)[top], member_nL, np.asarray(best_F)[top], m)
    return float(np.nanmedian(share)) if np.isfinite(share).any() else float("nan")


def feature_labels(
    top_words_FM: np.ndarray,
    words: Sequence[str],
    label_names: Sequence[str],
    best_F: np.ndarray,
    best_f1_F: np.ndarray,
    floor: float = LABEL_FLOOR,
    n_words: int = 3,
) -> list[str]:
    """A name per feature: `noun.animal 0.42 · dog, cat, horse` (best label, its F1, the top words), or the top
    words alone when the best F1 is below `floor`, or `(never fires)`."""
    out = []
    for f, row in enumerate(np.asarray(top_words_FM)):
        head = ", ".join(str(words[i]) for i in row[row >= 0][:n_words])
        b = int(best_F[f])
        if b >= 0 and best_f1_F[f] >= floor:
            out.append(f"{label_names[b]} {best_f1_F[f]:.2f} · {head}" if head else label_names[b])
        else:
            out.append(head or "(never fires)")
    return out
