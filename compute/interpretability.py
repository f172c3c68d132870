"""Vocabulary-level interpretability of a basis, always beside baselines.

QVEC (Tsvetkov et al. 2015, "Evaluation of word vector representations by subspace alignment"): correlate
every basis dimension with every supersense column of the word x supersense matrix (over the words that have
a supersense), align each dimension with the supersense it correlates with best, and average those
correlations. QVEC uses the 41 noun and verb supersenses; the matrix holds each word's share of sense weight
per supersense (compute/labels.py). A dense dimension's sign is arbitrary, so it aligns by |r|; an SAE
feature is non-negative and aligns by r (clipped at 0, as an alignment that lowers the sum is not made).
The mean is over dimensions that vary on those words, so bases of different widths compare.

DistRatio word intrusion (Sun et al. 2016): `dist_ratio`.

Bases compared (`basis_report`): the SAE features, the raw dimensions, a seeded random rotation of the centred
raw vectors, and an SAE whose decoder stays frozen at random (compute/sae/train.py's freeze_decoder).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

QVEC_PREFIXES = ("noun.", "verb.")
INTRUSION_TOP = 5


def qvec_columns(label_names: Sequence[str], prefixes=QVEC_PREFIXES) -> np.ndarray:
    """Indices of the label columns QVEC uses (noun.* and verb.* supersenses: 41 in WordNet 3.0)."""
    return np.array([j for j, name in enumerate(label_names) if str(name).startswith(tuple(prefixes))], int)


def _moments(S) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of a dense or sparse matrix."""
    n = S.shape[0]
    mean = np.asarray(S.sum(0)).ravel() / n
    sq = np.asarray(S.multiply(S).sum(0) if sp.issparse(S) else (S * S).sum(0)).ravel() / n
    return mean, np.sqrt(np.maximum(sq - mean**2, 0))


def _varies(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    # a relative floor: a column whose spread is rounding noise counts as constant
    return sd > 1e-9 * np.maximum(1, np.abs(mean))


def correlations(S_nF, P_nP) -> np.ndarray:
    """(F, P) Pearson correlation of every column of S (dense or sparse) with every column of P (dense or
    sparse), over the n rows; 0 where a column is constant."""
    n = S_nF.shape[0]
    S = sp.csc_matrix(S_nF, dtype=np.float64) if sp.issparse(S_nF) else np.asarray(S_nF, np.float64)
    P = np.asarray(P_nP.toarray() if sp.issparse(P_nP) else P_nP, dtype=np.float64)
    if P.shape[0] != n:
        raise ValueError(f"P_nP: {P.shape[0]} rows but the basis has {n}")
    (mean_S, sd_S), (mean_P, sd_P) = _moments(S), _moments(P)
    cov = np.asarray(S.T @ P) / n - np.outer(mean_S, mean_P)
    denom = np.outer(sd_S, sd_P)
    live = np.outer(_varies(mean_S, sd_S), _varies(mean_P, sd_P))
    return np.divide(cov, denom, out=np.zeros_like(cov), where=live & (denom > 0))


def qvec(S_nF, weights_nL, label_names: Sequence[str], signed: bool) -> dict:
    """QVEC of the basis S (n words x F dims) against the supersense weights (n x L). Returns {"qvec_mean",
    "qvec_sum", "dims" (dimensions that vary), "words" (rows used), "per_dim" (F,), "aligned" (F,) label index,
    -1 when none}. Without supersense columns or labelled words (WordNet absent) the scores are NaN."""
    cols = qvec_columns(label_names)
    W = sp.csr_matrix(weights_nL, dtype=np.float64)[:, cols]
    rows = np.flatnonzero(np.asarray(W.sum(1)).ravel() > 0)  # words with some noun/verb sense weight
    F = S_nF.shape[1]
    if len(rows) < 2:
        return {
            "qvec_mean": float("nan"),
            "qvec_sum": float("nan"),
            "dims": 0,
            "words": len(rows),
            "per_dim": np.full(F, np.nan, np.float32),
            "aligned": np.full(F, -1, np.int32),
        }
    S = S_nF[rows] if sp.issparse(S_nF) else np.asarray(S_nF)[rows]
    r = correlations(S, W[rows])
    score = np.abs(r) if signed else np.maximum(r, 0)
    per_dim = score.max(1) if score.shape[1] else np.zeros(score.shape[0])
    aligned = np.where(per_dim > 0, cols[score.argmax(1)] if score.shape[1] else -1, -1)
    varies = _varies(*_moments(sp.csc_matrix(S, dtype=np.float64) if sp.issparse(S) else np.asarray(S, np.float64)))
    return {
        "qvec_mean": float(per_dim[varies].mean()) if varies.any() else float("nan"),
        "qvec_sum": float(per_dim.sum()),
        "dims": int(varies.sum()),
        "words": len(rows),
        "per_dim": per_dim.astype(np.float32),
        "aligned": aligned.astype(np.int32),
    }


def dist_ratio(S_nF, X: np.ndarray, seed: int = 0, top: int = INTRUSION_TOP, positive_only: bool = False):
    """Automatic word-intrusion score (DistRatio, Sun et al. 2016) of the basis whose scores are the columns
    of S (n, F), dense or sparse; distances are Euclidean between the rows of X (the original embeddings).

    For feature f: T = its `top` highest-scoring words; the intruder is a seeded random word that lies in
    the bottom half of f (score <= f's median) and in the top 10% of another random feature j. DistRatio_f =
    mean ||x_intruder - x_t|| over t in T / mean ||x_t - x_t'|| over pairs in T. With `positive_only` (SAE
    codes), top words and the top 10% of j must have activation > 0. Returns (per-feature (F,) float32, NaN
    where undefined, i.e. fewer than `top` positive words or no intruder after 50 draws; their mean)."""
    rng = np.random.default_rng(seed)
    X = np.asarray(X, dtype=np.float64)
    dense = not sp.issparse(S_nF)
    S = np.asarray(S_nF) if dense else S_nF.tocsc()
    n, F = S.shape
    tenth = max(1, n // 10)

    top_words, top_sets, in_bottom = [], [], []
    for f in range(F):
        if dense:
            c = S[:, f]
            order = np.argsort(-c, kind="stable")
            head = order[: max(tenth, top)]
            if positive_only:
                head = head[c[head] > 0]
            mask = c <= np.median(c)
            in_bottom.append(lambda rows, mask=mask: mask[rows])
        else:  # sparse, non-negative: only the stored entries can be in the top
            lo, hi = S.indptr[f], S.indptr[f + 1]
            rows, data = S.indices[lo:hi], S.data[lo:hi]
            rows, data = rows[data > 0], data[data > 0]
            head = rows[np.lexsort((rows, -data))][: max(tenth, top)]
            if 2 * len(rows) < n:  # the median is 0: the bottom half is every word with activation 0
                active = np.sort(rows)
                in_bottom.append(lambda r, active=active: ~np.isin(r, active, assume_unique=False))
            else:
                col = np.zeros(n)
                col[rows] = data
                in_bottom.append(lambda r, mask=col <= np.median(col): mask[r])
        top_words.append(head[:top])
        top_sets.append(head[:tenth])

    ratios = np.full(F, np.nan, dtype=np.float32)
    for f in range(F):
        T = top_words[f]
        if len(T) < top:
            continue
        for _ in range(50):
            j = int(rng.integers(F - 1))
            j += j >= f
            cand = top_sets[j][in_bottom[f](top_sets[j])]
            if len(cand):
                break
        else:
            continue
        intruder = int(rng.choice(cand))
        XT = X[T]
        intra = np.linalg.norm(XT[:, None] - XT[None], axis=-1)[np.triu_indices(top, 1)].mean()
        inter = np.linalg.norm(XT - X[intruder], axis=-1).mean()
        if intra > 0:
            ratios[f] = inter / intra
    mean = float(np.nanmean(ratios)) if np.isfinite(ratios).any() else float("nan")
    return ratios, mean


def random_rotation(d: int, seed: int = 0) -> np.ndarray:
    """A seeded uniformly random orthogonal (d, d) matrix (QR of a Gaussian, signs fixed)."""
    Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def bases(
    acts_nF: sp.csr_matrix, X: np.ndarray, seed: int = 0, random_decoder_acts: sp.csr_matrix | None = None
) -> dict[str, tuple[object, bool]]:
    """{name: (scores (n, F), signed)} for the SAE, the raw dimensions, a random rotation and, when given, the
    frozen-random-decoder SAE."""
    X = np.asarray(X, np.float64)
    Xc = X - X.mean(0)
    out = {"sae": (acts_nF, False), "raw": (X, True), "rotated": (Xc @ random_rotation(X.shape[1], seed), True)}
    if random_decoder_acts is not None:
        out["random_decoder"] = (random_decoder_acts, False)
    return out


def basis_report(
    acts_nF: sp.csr_matrix,
    X: np.ndarray,
    weights_nL,
    label_names: Sequence[str],
    seed: int = 0,
    random_decoder_acts: sp.csr_matrix | None = None,
) -> dict[str, dict]:
    """QVEC and DistRatio intrusion of every basis (`bases`): {name: {"qvec_mean", "qvec_sum", "dims", "words",
    "intrusion", "per_feature" (the DistRatio of each dimension)}}. Intrusion distances are always in the
    original space X, so the bases compare."""
    out = {}
    for name, (S, signed) in bases(acts_nF, X, seed, random_decoder_acts).items():
        q = qvec(S, weights_nL, label_names, signed)
        per_feature, intrusion = dist_ratio(S, X, seed, positive_only=not signed)
        out[name] = {k: q[k] for k in ("qvec_mean", "qvec_sum", "dims", "words")}
        out[name].update(intrusion=intrusion, per_feature=per_feature)
    return out
