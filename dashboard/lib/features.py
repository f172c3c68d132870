"""What a feature is about, for the Features and Words pages: the features-table frame, its top words
and a short gist. Functions of a RunView (dashboard/lib/store.py); they read through `v.run`."""

import numpy as np
import pandas as pd

from store.schema import SAE

# Per-feature arrays shown as columns of the features table, in this order after `feature`.
TABLE_ARRAYS = ("density", "max_act", "mono_score", "feature_intrusion")


def feature_row(run, path: str, f: int):
    """Row f of a per-feature array (None if the run does not store it). The arrays are small (F x 50 at
    most) and read whole once: decompressing HDF5 chunks on every click costs more than keeping them."""
    arr = run.get(path)
    return None if arr is None else arr[f]


def feature_frame(v) -> pd.DataFrame:
    """One row per feature: feature, the stored per-feature numbers (rounded), best group, top words."""
    F = v.n_features
    cols = {"feature": np.arange(F)}
    for name in TABLE_ARRAYS:
        values = v.run.get(getattr(SAE, name))
        if values is not None:
            cols[name] = np.round(np.asarray(values, np.float64), 4)
    best = v.run.get(SAE.best_group)
    names = v.group_names
    if best is not None:
        cols["best_group"] = np.array([names[g] if 0 <= g < len(names) else "" for g in best], dtype=object)
    if "density" not in cols:
        cols["density"] = np.round(v.feature_counts / max(1, v.n), 5)
    top = v.run.get(SAE.top_words)
    if top is not None:
        w = v.words
        cols["top_words"] = np.array([", ".join(str(w[j]) for j in row[:5] if j >= 0) for row in top], dtype=object)
    return pd.DataFrame(cols)


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


def gist(v, f: int, n: int = 3) -> str:
    """A feature's first stored top words, as a hint of what it means."""
    top = feature_row(v.run, SAE.top_words, f)
    if top is None:
        return ""
    return ", ".join(str(v.words[r]) for r in top[:n] if r >= 0)
