"""The concept explorer's analysis: a group of words (typed or stored), and the SAE features ranked by
how selectively they fire on it. Stored activations only; nothing is retrained."""

import numpy as np


def resolve_group(
    v, group: str | None = None, words: list[str] | None = None
) -> tuple[list[str], np.ndarray, list[str]]:
    """(known words, their rows, unknown words) for typed words (already split) or a stored group name."""
    if words is not None:
        asked = words
    elif group and group in v.group_names:
        rows = v.group_rows(v.group_names.index(group))
        return [str(v.words[r]) for r in rows], rows, []
    else:
        return [], np.empty(0, np.int64), []
    known, rows, unknown = [], [], []
    for w in asked:
        r = v.find(w)
        if r is None:
            unknown.append(w)
        else:
            known.append(str(v.words[r]))
            rows.append(r)
    return known, np.asarray(rows, np.int64), unknown


def rank_features_for(v, rows: np.ndarray, limit: int = 20) -> list[dict]:
    """Features of run view `v` ranked by how selectively they fire on `rows` against all other words.

    recall = share of the group's words the feature fires on; precision = share of the feature's
    total activation that falls on the group; score = their harmonic mean (an F1 of the group as
    a 'retrieval' by the feature). Uses only the group's CSR rows and cached column sums:
    O(|group| * k + F), independent of the vocabulary size."""
    rows = np.unique(np.asarray(rows, np.int64))
    if len(rows) == 0:
        return []
    sub = v.acts[rows]
    in_sum = np.asarray(sub.sum(axis=0)).ravel()
    in_hits = np.bincount(sub.indices, minlength=v.n_features)
    cand = np.flatnonzero(in_hits)
    if len(cand) == 0:
        return []
    recall = in_hits[cand] / len(rows)
    total = v.feature_sums[cand]
    precision = np.divide(in_sum[cand], total, out=np.zeros(len(cand)), where=total > 0)
    score = 2 * recall * precision / np.maximum(recall + precision, 1e-12)
    n_out = max(1, v.n - len(rows))
    out_mean = (total - in_sum[cand]) / n_out
    order = np.argsort(-score, kind="stable")[:limit]
    return [
        dict(
            feature=int(cand[j]),
            score=float(score[j]),
            recall=float(recall[j]),
            precision=float(precision[j]),
            in_mean=float(in_sum[cand[j]] / len(rows)),
            out_mean=float(out_mean[j]),
            hits=int(in_hits[cand[j]]),
        )
        for j in order
    ]
