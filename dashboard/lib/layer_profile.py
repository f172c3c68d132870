"""A run family's measures layer by layer, for the Geometry page: isotropy of word types, tokens and
enhanced vectors, word similarity, and STS scores (docs/store.md, "Geometry" and "STS")."""

import numpy as np
import pandas as pd

from dashboard.lib import store
from dashboard.lib.runs import family
from store.schema import ENHANCED, GEOMETRY, GEOMETRY_TOKENS, SIMILARITY, STS

# I_PC as log10: it underflows to 0 in transformer layers (docs/store.md, `i_pc_log10`).
MEASURES = [("i_cos", "I_Cos (mean cosine)"), ("i_pc_log10", "log10 I_PC"), ("isoscore", "IsoScore")]
SIMILARITY_MEASURES = [("wordsim353_spearman", "WordSim353 ρ"), ("simlex999_spearman", "SimLex-999 ρ")]
ROW_LABELS = {
    **{k: f"{label}, word types" for k, label in MEASURES},
    **{k + "_tokens": f"{label}, tokens" for k, label in MEASURES},
    **{k + "_enhanced": f"{label}, after enhancement" for k, label in MEASURES},
    **{k: label for k, label in SIMILARITY_MEASURES},
    **{k + "_enhanced": f"{label}, after enhancement" for k, label in SIMILARITY_MEASURES},
}
STS_COLUMNS = ("raw", "individual", "zero_shot")


def number(x) -> float:
    """x as a float, NaN when it is missing or not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return np.nan


def measure(attrs: dict, key: str) -> float:
    """A stored measure as a float; `i_pc_log10` falls back to log10(i_pc) for runs stored before it existed
    (NaN where that underflowed to 0)."""
    if key == "i_pc_log10" and attrs.get(key) is None:
        pc = number(attrs.get("i_pc"))
        return float(np.log10(pc)) if pc > 0 else np.nan
    return number(attrs.get(key))


def layer_table(v) -> pd.DataFrame:
    """One row per layer of this run's family: isotropy of word types, tokens and enhanced vectors."""
    rows = []
    for layer, run_id in sorted(family(v).items()):
        try:
            r = store.view(run_id).run
        except store.StoreError:
            continue
        row = {"layer": layer, "run_id": run_id}
        for group, suffix in ((GEOMETRY, ""), (GEOMETRY_TOKENS, "_tokens"), (ENHANCED, "_enhanced")):
            a = r.attrs_of(group.path)
            for k, _ in MEASURES:
                row[k + suffix] = measure(a, k)
        s = r.attrs_of(SIMILARITY.path)
        for k, _ in SIMILARITY_MEASURES:
            row[k] = number(s.get(k))
            row[k + "_enhanced"] = number(s.get(k + "_enhanced"))
        rows.append(row)
    return pd.DataFrame(rows)


def by_measure(layers: pd.DataFrame, current: int) -> pd.DataFrame:
    """Measures as rows and layers as columns (the current run's layer marked), readable at any width."""
    out = {"measure": [ROW_LABELS.get(c, c) for c in layers.columns if c != "layer"]}
    for _, r in layers.iterrows():
        name = f"layer {int(r['layer'])}" + (" (this run)" if int(r["layer"]) == current and len(layers) > 1 else "")
        out[name] = [r[c] for c in layers.columns if c != "layer"]
    return pd.DataFrame(out)


def sts_by_layer(v) -> dict[str, dict[str, dict[int, float]]]:
    """{column: {language: {layer: Spearman x100}}} over the layers of this run's family that store STS."""
    series = {}
    for layer, run_id in sorted(family(v).items()):
        try:
            r = store.view(run_id).run
            langs = r.attrs_of(STS.path).get("languages") or []
            scores = r.get(STS.scores)
        except store.StoreError:
            continue
        if scores is None:
            continue
        for i, lang in enumerate(langs):
            for j, col in enumerate(STS_COLUMNS[: scores.shape[1]]):
                series.setdefault(col, {}).setdefault(lang, {})[layer] = float(scores[i, j])
    return series


def enhancement_note(v) -> str | None:
    """One line when the isotropy enhancement lowers word similarity on this run (its neighbours after
    enhancement are then less like human judgements than the raw ones), else None."""
    s = v.run.attrs_of(SIMILARITY.path)
    drops = [
        f"{label} {number(s.get(k)):.2f} → {number(s.get(k + '_enhanced')):.2f}"
        for k, label in SIMILARITY_MEASURES
        if number(s.get(k + "_enhanced")) < number(s.get(k))
    ]
    if not drops:
        return None
    return f"On this run the enhancement lowers word similarity ({', '.join(drops)}): read these neighbours with care."
