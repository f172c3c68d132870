"""Word-similarity benchmarks: Spearman correlation between human ratings and vector cosines.

WordSim353 (Finkelstein et al. 2002) and SimLex-999 (Hill et al. 2015), as shipped in gensim's
test data. Pairs with a word missing from the vocabulary are left out and counted."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from compute.linalg import unit_rows
from store.schema import SIMILARITY, Similarity

BENCHMARK_FILES = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def load_benchmarks() -> dict[str, pd.DataFrame]:
    """{name: DataFrame(w1, w2, gold)} for 'wordsim353' and 'simlex999'."""
    from gensim.test.utils import datapath

    out = {}
    for name, fname in BENCHMARK_FILES.items():
        df = pd.read_csv(
            datapath(fname),
            sep="\t",
            comment="#",
            header=None,
            names=["w1", "w2", "gold"],
            dtype={"w1": str, "w2": str, "gold": float},
            keep_default_na=False,
        )
        out[name] = df
    return out


def _index(vocab: Sequence[str], lower: bool) -> dict[str, int]:
    """word -> first row holding it (lowercased keys when `lower`)."""
    index: dict[str, int] = {}
    for row, word in enumerate(vocab):
        key = str(word).lower() if lower else str(word)
        index.setdefault(key, row)
    return index


def word_similarity(
    vocab: Sequence[str],
    X: np.ndarray,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    lower: bool = True,
    benchmarks: dict[str, pd.DataFrame] | None = None,
) -> dict:
    """Spearman between gold ratings and cosines of the covered pairs, per benchmark:
    {name: {"spearman", "pairs", "covered"}}. Only the rows that covered pairs need are read and
    passed through `transform` (raw rows (m, d) -> (m, d')), so vocab may be large."""
    X = np.asarray(X) if not hasattr(X, "shape") else X
    if len(vocab) != X.shape[0]:
        raise ValueError(f"vocab: {len(vocab)} words but X has {X.shape[0]} rows")
    benchmarks = benchmarks if benchmarks is not None else load_benchmarks()
    index = _index(vocab, lower)
    norm = (lambda w: w.lower()) if lower else (lambda w: w)

    covered_pairs = {}
    needed: set[int] = set()
    for name, df in benchmarks.items():
        r1 = np.array([index.get(norm(w), -1) for w in df["w1"]])
        r2 = np.array([index.get(norm(w), -1) for w in df["w2"]])
        ok = (r1 >= 0) & (r2 >= 0)
        covered_pairs[name] = (r1[ok], r2[ok], df["gold"].to_numpy(dtype=np.float64)[ok], len(df))
        needed.update(r1[ok].tolist())
        needed.update(r2[ok].tolist())

    rows = np.array(sorted(needed), dtype=np.int64)
    vecs = np.asarray(X[rows], dtype=np.float64) if len(rows) else np.zeros((0, X.shape[1]))
    if transform is not None and len(rows):
        vecs = np.asarray(transform(vecs), dtype=np.float64)
        if vecs.ndim != 2 or vecs.shape[0] != len(rows):
            raise ValueError(f"transform: expected ({len(rows)}, d') rows back, got shape {vecs.shape}")
    unit = unit_rows(vecs)  # zero vector: cosine 0
    where = {r: k for k, r in enumerate(rows.tolist())}

    results = {}
    for name, (r1, r2, gold, total) in covered_pairs.items():
        a = unit[[where[r] for r in r1.tolist()]] if len(r1) else unit[:0]
        b = unit[[where[r] for r in r2.tolist()]] if len(r2) else unit[:0]
        cos = (a * b).sum(axis=1)
        rho = float(spearmanr(gold, cos).statistic) if len(cos) >= 3 and np.ptp(cos) > 0 else float("nan")
        results[name] = {"spearman": rho, "pairs": int(total), "covered": int(len(cos))}
    return results


def similarity_output(results_before: dict, results_after: dict | None = None, group: Similarity = SIMILARITY) -> dict:
    """Stage OUTPUT: attrs `<name>_spearman`, `<name>_pairs`, `<name>_covered`, and with
    `results_after` the same keys suffixed `_enhanced`."""
    attrs = {}
    for suffix, results in (("", results_before), ("_enhanced", results_after)):
        for name, r in (results or {}).items():
            for key in ("spearman", "pairs", "covered"):
                attrs[f"{name}_{key}{suffix}"] = r[key]
    return {group.path: attrs}
