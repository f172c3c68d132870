"""Per-run statistics computed once and then only indexed by callbacks."""

import numpy as np
from scipy.stats import rankdata

MAX_RANKED = 100_000  # Spearman on a seeded sample above this many words (its standard error ~ 0.003)


def dimension_stats(
    E: np.ndarray, zipf: np.ndarray, k: int = 15, bins: int = 60, max_ranked: int = MAX_RANKED, seed: int = 0
) -> dict:
    """Everything the Dimensions page shows about each dimension, for all dimensions at once, so a
    click only indexes: top/bottom k rows (descending / ascending), moments, histograms, and the
    Spearman and Pearson correlation with Zipf frequency over the words that have one (Spearman on a
    seeded sample of `max_ranked` of them when there are more; `spearman_n` says how many)."""
    n, d = E.shape
    T = np.ascontiguousarray(E.T)  # (d, n): one row per dimension
    k = min(k, n)
    top = np.argpartition(-T, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(T, top, 1), axis=1, kind="stable"), 1)
    bottom = np.argpartition(T, k - 1, axis=1)[:, :k]
    bottom = np.take_along_axis(bottom, np.argsort(np.take_along_axis(T, bottom, 1), axis=1, kind="stable"), 1)
    out = {
        "top": top,
        "bottom": bottom,
        "mean": T.mean(1),
        "std": T.std(1),
        "min": T.min(1),
        "max": T.max(1),
        "spearman": np.full(d, np.nan),
        "pearson": np.full(d, np.nan),
        "spearman_n": 0,
        "hist": [np.histogram(T[j], bins=bins) for j in range(d)],
    }
    rows = np.flatnonzero(np.isfinite(zipf))
    if len(rows) > 2:
        z = zipf[rows].astype(np.float64)
        X = T[:, rows].astype(np.float64)
        Xc = X - X.mean(1, keepdims=True)
        zc = z - z.mean()
        out["pearson"] = (Xc @ zc) / np.maximum(np.linalg.norm(Xc, axis=1) * np.linalg.norm(zc), 1e-300)
        if len(rows) > max_ranked:
            pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_ranked, replace=False))
            X, z = X[:, pick], z[pick]
        R = rankdata(X, axis=1)
        zr = rankdata(z)
        R -= R.mean(1, keepdims=True)
        zr -= zr.mean()
        out["spearman"] = (R @ zr) / np.maximum(np.linalg.norm(R, axis=1) * np.linalg.norm(zr), 1e-300)
        out["spearman_n"] = int(len(z))
    return out


def sigma_band(mean: np.ndarray, k: float = 3.0) -> tuple[float, float]:
    """mean(m) ± k·std(m) of the mean vector's entries (the outlier rule of DESIGN.md)."""
    mu, sd = float(np.mean(mean)), float(np.std(mean))
    return mu - k * sd, mu + k * sd


def decoder_loadings(W_dec: np.ndarray, dim: int, limit: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Features whose decoder direction (rows of W_dec) loads most, by |weight|, on dimension `dim`."""
    col = W_dec[:, dim]
    order = np.argsort(-np.abs(col))[:limit]
    return order, col[order]
