"""What a feature and a word are about: the stored feature labels and word labels (docs/store.md "Labels",
"SAE"), and the stored concept score of a label. Functions of a RunView; they read through `v.run`, which
caches each array once per view."""

import numpy as np

from store.schema import LABELS, SAE

GROUP_PREFIX = "group."


def feature_label(v, f: int) -> str:
    """Feature f's name, the same on every page: the stored `noun.animal 0.51 · deer, whales, birds`, or for runs
    without stored labels its first top words."""
    names = v.run.get(SAE.feature_label)
    if names is not None and 0 <= f < len(names):
        return str(names[f])
    top = v.run.get(SAE.top_words)
    if top is None or not 0 <= f < len(top):
        return ""
    return ", ".join(str(v.words[r]) for r in top[f][:3] if r >= 0)


def feature_labels(v) -> list[str]:
    """Every feature's name (feature_label of each)."""
    names = v.run.get(SAE.feature_label)
    if names is not None:
        return [str(x) for x in names]
    return [feature_label(v, f) for f in range(v.n_features)]


def has_concept_scores(v) -> bool:
    """Whether the run stores the concept score (runs written before it stored an older `mono_score`)."""
    return v.run.has(SAE.concept_f1)


def label_names(v) -> list[str]:
    return [str(x) for x in v.run.get(LABELS.names, [])]


def display_name(name: str) -> str:
    """`group.animals` -> `animals` (a concept group); supersenses as WordNet names them."""
    return name[len(GROUP_PREFIX) :] if name.startswith(GROUP_PREFIX) else name


def best_label_names(v) -> np.ndarray | None:
    """(F,) the name of each feature's best label ('' for none), or None without stored concept scores."""
    best = v.run.get(SAE.best_label)
    if best is None or not has_concept_scores(v):
        return None
    names = label_names(v)
    return np.array([names[b] if 0 <= b < len(names) else "" for b in best], dtype=object)


def word_supersenses(v, row: int) -> list[tuple[str, float]]:
    """The WordNet supersenses a word carries with their share of its sense weight, largest first."""
    if not v.run.has(LABELS.weights.indptr):
        return []
    names, member, weights = label_names(v), v.run.csr(LABELS.member), v.run.csr(LABELS.weights)
    lo, hi = member.indptr[row], member.indptr[row + 1]
    out = []
    for j in member.indices[lo:hi]:
        if not names[j].startswith(GROUP_PREFIX):
            out.append((names[j], float(weights[row, j])))
    return sorted(out, key=lambda x: -x[1])


def label_index(v, name: str) -> int | None:
    names = label_names(v)
    return names.index(name) if name in names else None


def label_rows(v, c: int) -> np.ndarray:
    """Rows of the words that carry label c."""
    member = v.run.csc(LABELS.member)
    return np.sort(member.indices[member.indptr[c] : member.indptr[c + 1]]).astype(np.int64)


def stored_ranking(v, c: int, limit: int = 20) -> list[dict]:
    """Features ranked by their stored concept score (F1) for label c, with the stored precision and recall:
    the numbers the Features table and the feature page show."""
    f1 = v.run.get(SAE.concept_f1)
    if f1 is None or not 0 <= c < f1.shape[1]:
        return []
    col = f1[:, c]
    precision, recall = v.run.get(SAE.concept_precision), v.run.get(SAE.concept_recall)
    order = [int(f) for f in np.argsort(-col, kind="stable")[:limit] if col[f] > 0]
    return [
        dict(
            feature=f,
            score=float(col[f]),
            precision=float(precision[f, c]) if precision is not None else float("nan"),
            recall=float(recall[f, c]) if recall is not None else float("nan"),
        )
        for f in order
    ]


def feature_concepts(v, f: int, limit: int = 8) -> list[dict]:
    """Feature f's labels with the highest stored F1: [{label, f1, precision, recall}]."""
    f1 = v.run.get(SAE.concept_f1)
    if f1 is None:
        return []
    names = label_names(v)
    precision, recall = v.run.get(SAE.concept_precision), v.run.get(SAE.concept_recall)
    row = f1[f]
    return [
        dict(label=names[c], f1=float(row[c]), precision=float(precision[f, c]), recall=float(recall[f, c]))
        for c in np.argsort(-row, kind="stable")[:limit]
        if row[c] > 0
    ]
