"""What a feature is about, for the Features and Words pages: the features-table frame, its top words
and a short gist. Functions of a RunView (dashboard/lib/store.py); they read through `v.run`."""

import numpy as np
import pandas as pd

from dashboard.lib.labels import best_label_names, feature_label, feature_labels, has_concept_scores
from store.schema import SAE

# Per-feature arrays shown as columns of the features table, in this order after `feature` and `label`.
TABLE_ARRAYS = ("mono_score", "density", "max_act", "feature_intrusion")


def feature_row(run, path: str, f: int):
    """Row f of a per-feature array (None if the run does not store it). The arrays are small (F x 50 at
    most) and read whole once: decompressing HDF5 chunks on every click costs more than keeping them."""
    arr = run.get(path)
    return None if arr is None else arr[f]


def feature_frame(v) -> pd.DataFrame:
    """One row per feature: feature, its label, the stored per-feature numbers (rounded; the concept score
    only where the run stores it: older runs stored another `mono_score`), and its best label."""
    F = v.n_features
    cols = {"feature": np.arange(F), "label": np.array(feature_labels(v), dtype=object)}
    for name in TABLE_ARRAYS:
        values = v.run.get(getattr(SAE, name))
        if values is not None and (name != "mono_score" or has_concept_scores(v)):
            cols[name] = np.round(np.asarray(values, np.float64), 4)
    best = best_label_names(v)
    if best is not None:
        cols["best_label"] = best
    if "density" not in cols:
        cols["density"] = np.round(v.feature_counts / max(1, v.n), 5)
    return pd.DataFrame(cols)


def features_on_word(v, frame: pd.DataFrame, row: int, column: str = "on_word") -> pd.DataFrame:
    """The rows of `frame` for the features that fire on word `row`, with their activation on it in `column`,
    strongest first."""
    feats, acts = v.word_features(row, limit=v.n_features)
    out = frame.iloc[feats].copy()
    out.insert(2, column, np.round(acts.astype(np.float64), 4))
    return out


def top_words(v, f: int, limit: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(rows, activations) of feature f's strongest words: the stored top words (-1 padding dropped) or,
    failing that, the strongest of its activation column."""
    tw, ta = feature_row(v.run, SAE.top_words, f), feature_row(v.run, SAE.top_acts, f)
    if tw is not None:
        keep = tw >= 0
        return tw[keep], (ta[keep] if ta is not None else np.zeros(keep.sum(), np.float32))
    hit_rows, hit_acts = v.feature_column(f)
    order = np.argsort(-hit_acts)[:limit]
    return hit_rows[order], hit_acts[order]


def gist(v, f: int) -> str:
    """What feature f is about, in a word list: its label (dashboard.lib.labels.feature_label)."""
    return feature_label(v, f)
