"""Isotropy measures of an embedding space, and cluster-based isotropy enhancement.

Definitions are pinned in DESIGN.md ("Exact definitions"); sources:
- I_Cos, I_PC, per-dimension cosine contribution, outlier dimensions, frequency bias and the
  cluster-based enhancement follow Rajaee & Pilehvar (2022), "An Isotropy Analysis in the
  Multilingual BERT Embedding Space"; I_PC is from Mu & Viswanath (2018), "All-but-the-Top".
- IsoScore is Algorithm 1 of Rudman et al. (2022), "IsoScore: Measuring the Uniformity of
  Embedding Space Utilization".
- The enhancement (k-means, then per cluster: subtract the cluster mean and null its dominant
  principal directions) is Cai et al. (2021), "Isotropy in the Contextual Embedding Space",
  as used by Rajaee & Pilehvar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from compute.config import GeometryConfig
from compute.linalg import unit_rows
from store.schema import ENHANCED, GEOMETRY, LANGUAGES, Enhanced, Geometry

CHUNK = 65536  # rows per block: bounds the float64 working copies on 400k-row vocabularies
Progress = Callable[[str, float], None] | None


def _blocks(n: int, size: int = CHUNK):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _check(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"{name}: expected an (n, d) array with n >= 2, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name}: expected a numeric array, got dtype {X.dtype}")
    return X


def _nonzero_rows(X: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(X != 0, axis=1))


# ---------------------------------------------------------------------------------------------
# The measures
# ---------------------------------------------------------------------------------------------


def i_cos(X) -> float:
    """Exact mean cosine over all ordered pairs i != j, in O(nd): (||sum x_hat||^2 - n) / (n(n-1)).
    All-zero rows have no direction and are left out (n counts the other rows)."""
    X = _check(X)
    sum_D = np.zeros(X.shape[1], dtype=np.float64)
    n = 0
    for b in _blocks(X.shape[0]):
        u_BD = unit_rows(X[b])
        n += int(np.count_nonzero(np.any(u_BD != 0, axis=1)))
        sum_D += u_BD.sum(axis=0)
    if n < 2:
        return float("nan")
    return float((sum_D @ sum_D - n) / (n * (n - 1)))


def sample_pairs(n: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`pairs` seeded random pairs (i, j) of distinct indices in [0, n)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=pairs)
    j = rng.integers(0, n - 1, size=pairs)
    j = j + (j >= i)  # skip i itself, keeping j uniform over the other n-1 rows
    return i, j


def i_cos_sampled(X, pairs: int = 1000, seed: int = 0) -> tuple[float, np.ndarray]:
    """Mean cosine over `pairs` seeded random pairs of distinct (non-zero) rows, and the
    per-dimension contribution CC_D = mean over pairs of x_D*y_D/(|x||y|); CC_D.sum() is the
    mean cosine."""
    X = _check(X)
    rows = _nonzero_rows(X)
    if len(rows) < 2:
        return float("nan"), np.full(X.shape[1], np.nan)
    i, j = sample_pairs(len(rows), pairs, seed)
    cc_D = (unit_rows(X[rows[i]]) * unit_rows(X[rows[j]])).mean(axis=0)
    return float(cc_D.sum()), cc_D


def i_pc(X) -> float:
    """I_PC = min_u F(u) / max_u F(u), F(u) = sum_i exp(u.w_i), u over the eigenvectors of W^T W
    (uncentred) and their negatives. log F by log-sum-exp, accumulated blockwise, so large norms
    never overflow. It underflows to 0 below ~1e-308 (transformer layers): `i_pc_log10` keeps those."""
    return float(10.0 ** i_pc_log10(X))


def i_pc_log10(X) -> float:
    """log10 of I_PC, computed in log space: finite where I_PC itself underflows to 0."""
    X = _check(X)
    gram_DD = np.zeros((X.shape[1],) * 2, dtype=np.float64)
    for b in _blocks(X.shape[0]):
        w = np.asarray(X[b], dtype=np.float64)
        gram_DD += w.T @ w
    _, u_DD = _eigh(gram_DD)
    u_DU = np.concatenate([u_DD, -u_DD], axis=1)  # columns: eigenvectors, then their negatives
    log_f_U = np.full(u_DU.shape[1], -np.inf)
    for b in _blocks(X.shape[0]):
        proj_BU = np.asarray(X[b], dtype=np.float64) @ u_DU
        top_U = proj_BU.max(axis=0)
        block_U = top_U + np.log(np.exp(proj_BU - top_U).sum(axis=0))  # log-sum-exp
        log_f_U = np.logaddexp(log_f_U, block_U)
    return float((log_f_U.min() - log_f_U.max()) / np.log(10.0))


def isoscore(X) -> float:
    """IsoScore (Rudman et al. 2022, Algorithm 1) of the point cloud X (n points, d dimensions).
    1 = variance spread evenly over all d dimensions; 0 = all variance in one direction."""
    X = _check(X)
    return _isoscore(*_pca_basis(X)[1:])


def _pca_basis(X):
    """mean (d,), covariance (d, d), and its eigenvalues / eigenvectors (ascending), float64."""
    mean_D = _mean(X)
    cov_DD = _covariance(X, mean_D)
    evals_D, v_DD = _eigh(cov_DD)
    return mean_D, cov_DD, evals_D, v_DD


def _isoscore(cov_DD, evals_D, v_DD) -> float:
    d = cov_DD.shape[0]
    if d == 1:
        return 1.0
    # Step 1: PCA reorientation (v_DD); step 2: the diagonal of the reoriented covariance.
    var_D = np.einsum("ij,ij->j", v_DD, cov_DD @ v_DD)
    norm = np.linalg.norm(var_D)
    if norm == 0:
        return float("nan")
    # Step 3: normalise to the length of the all-ones vector; step 4: distance to it.
    var_hat_D = np.sqrt(d) * var_D / norm
    defect = np.linalg.norm(var_hat_D - 1) / np.sqrt(2 * (d - np.sqrt(d)))
    # Step 5: fraction of dimensions used; step 6: rescale to [0, 1].
    phi = (d - defect**2 * (d - np.sqrt(d))) ** 2 / d**2
    return float(np.clip((d * phi - 1) / (d - 1), 0.0, 1.0))


def _covariance(X, mean_D) -> np.ndarray:
    """Sample covariance (ddof=1) in float64, accumulated blockwise."""
    n, d = X.shape
    cov_DD = np.zeros((d, d), dtype=np.float64)
    for b in _blocks(n):
        c = np.asarray(X[b], dtype=np.float64) - mean_D
        cov_DD += c.T @ c
    return cov_DD / (n - 1)


def _eigh(a_DD: np.ndarray):
    # A (d, d) eigendecomposition gains little from BLAS threads, and multithreaded LAPACK
    # eigh slows down ~10x when the cores are oversubscribed.
    with threadpool_limits(limits=1, user_api="blas"):
        return np.linalg.eigh(a_DD)


def _mean(X) -> np.ndarray:
    total_D = np.zeros(X.shape[1], dtype=np.float64)
    for b in _blocks(X.shape[0]):
        total_D += np.asarray(X[b], dtype=np.float64).sum(axis=0)
    return total_D / X.shape[0]


def outlier_dims(mean_vec, sigma: float = 3.0) -> np.ndarray:
    """Dimensions i of the mean vector m with |m_i - mean(m)| > sigma * std(m) (population std)."""
    m = np.asarray(mean_vec, dtype=np.float64).ravel()
    return np.flatnonzero(np.abs(m - m.mean()) > sigma * m.std()).astype(np.int64)


def pca2(X, basis=None) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates on the first two principal components (signs fixed so that each
    component's largest loading is positive), and their explained-variance ratios."""
    X = _check(X)
    mean_D, _, evals, v_DD = basis if basis is not None else _pca_basis(X)
    order = np.argsort(evals)[::-1][:2]
    comp_D2 = v_DD[:, order]
    signs = np.sign(comp_D2[np.abs(comp_D2).argmax(axis=0), range(comp_D2.shape[1])])
    comp_D2 = comp_D2 * np.where(signs == 0, 1, signs)
    coords = np.empty((X.shape[0], comp_D2.shape[1]), dtype=np.float32)
    for b in _blocks(X.shape[0]):
        coords[b] = (np.asarray(X[b], dtype=np.float64) - mean_D) @ comp_D2
    total = evals.sum()
    ratio = evals[order] / total if total > 0 else np.zeros(len(order))
    if coords.shape[1] < 2:  # d == 1
        coords = np.concatenate([coords, np.zeros_like(coords)], axis=1)
        ratio = np.append(ratio, 0.0)
    return coords, ratio.astype(np.float32)


def _spearman(a, b) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


# ---------------------------------------------------------------------------------------------
# Stage output
# ---------------------------------------------------------------------------------------------


def analyse(
    X,
    cfg: GeometryConfig | None = None,
    zipf: np.ndarray | None = None,
    group: Geometry = GEOMETRY,
    progress: Progress = None,
) -> dict:
    """All isotropy measures of X as a stage OUTPUT: attrs of `group` plus its arrays."""
    cfg = cfg or GeometryConfig()
    X = _check(X)
    say = progress or (lambda stage, fraction: None)
    say(group.path, 0.0)
    exact = i_cos(X)
    sampled, cc_D = i_cos_sampled(X, cfg.pairs, cfg.seed)
    say(group.path, 0.3)
    pc_log10 = i_pc_log10(X)
    basis = _pca_basis(X)
    iso = _isoscore(*basis[1:])
    say(group.path, 0.6)
    coords_N2, ratio = pca2(X, basis)
    top3 = np.argsort(-cc_D, kind="stable")[:3]
    share = float(cc_D[top3].sum() / sampled) if np.isfinite(sampled) and sampled != 0 else float("nan")
    attrs = dict(
        n=int(X.shape[0]),
        d=int(X.shape[1]),
        i_cos=exact,
        i_cos_sampled=sampled,
        i_pc=float(10.0**pc_log10),
        i_pc_log10=pc_log10,
        isoscore=iso,
        top3_dims=[int(i) for i in top3],
        top3_share=share,
        pairs=int(cfg.pairs),
        seed=int(cfg.seed),
        outlier_sigma=float(cfg.outlier_sigma),
        mean_norm=float(np.linalg.norm(basis[0])),
    )
    if zipf is not None:
        zipf = np.asarray(zipf, dtype=np.float64)
        if zipf.shape != (X.shape[0],):
            raise ValueError(f"zipf: expected shape ({X.shape[0]},), got {zipf.shape}")
        attrs["freq_pc1_spearman"] = _spearman(coords_N2[:, 0].astype(np.float64), zipf)
        attrs["freq_pc2_spearman"] = _spearman(coords_N2[:, 1].astype(np.float64), zipf)
    mean_D = basis[0]
    outliers = outlier_dims(mean_D, cfg.outlier_sigma)
    attrs["n_outlier_dims"] = int(len(outliers))
    say(group.path, 1.0)
    return {
        group.path: attrs,
        group.mean: mean_D.astype(np.float32),
        group.cos_contrib: cc_D.astype(np.float32),
        group.outlier_dims: outliers,
        group.pca2: coords_N2,
        group.pca2_explained: ratio,
    }


# ---------------------------------------------------------------------------------------------
# Cluster-based isotropy enhancement
# ---------------------------------------------------------------------------------------------


@dataclass
class Enhancement:
    """k-means centroids (k, d); per-cluster means (k, d); per-cluster dominant directions
    (k, p, d), orthonormal rows (rows of zeros where a cluster had fewer than p directions)."""

    centroids: np.ndarray
    means: np.ndarray
    directions: np.ndarray

    def assign(self, X) -> np.ndarray:
        """Index of the nearest centroid of each row."""
        X = np.asarray(X)
        c_KD = self.centroids.astype(np.float64)
        c_sq_K = (c_KD**2).sum(axis=1)
        labels = np.empty(X.shape[0], dtype=np.int64)
        for b in _blocks(X.shape[0]):
            x = np.asarray(X[b], dtype=np.float64)
            labels[b] = np.argmin(c_sq_K - 2 * x @ c_KD.T, axis=1)  # |x|^2 is the same for all k
        return labels

    def apply(self, X) -> np.ndarray:
        """Each row minus its cluster's mean, with its cluster's directions projected out."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"X: expected shape (n, {self.centroids.shape[1]}), got {X.shape}")
        labels = self.assign(X)
        out = np.empty(X.shape, dtype=np.float32)
        for k in range(len(self.centroids)):
            rows = np.flatnonzero(labels == k)
            if len(rows) == 0:
                continue
            c = np.asarray(X[rows], dtype=np.float64) - self.means[k]
            d_PD = self.directions[k].astype(np.float64)
            out[rows] = c - (c @ d_PD.T) @ d_PD
        return out


def fit_enhancement(X, clusters: int = 7, pcs_removed: int = 12, seed: int = 0) -> Enhancement:
    """k-means (seeded), then per cluster its mean and its top `pcs_removed` principal directions.
    A cluster with m rows yields at most m-1 directions; the rest are zero rows."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    X = _check(X)
    x_ND = np.asarray(X, dtype=np.float32)
    d = x_ND.shape[1]
    k = max(1, min(int(clusters), len(x_ND)))
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x_ND)
    p = max(0, min(int(pcs_removed), d))
    means = np.zeros((k, d), dtype=np.float64)
    directions = np.zeros((k, p, d), dtype=np.float64)
    for c in range(k):
        members = x_ND[km.labels_ == c].astype(np.float64)
        if len(members) == 0:
            continue
        means[c] = members.mean(axis=0)
        q = min(p, len(members) - 1, d)
        if q > 0:
            pca = PCA(n_components=q, random_state=seed).fit(members)
            directions[c, :q] = pca.components_
    return Enhancement(
        centroids=km.cluster_centers_.astype(np.float32),
        means=means.astype(np.float32),
        directions=directions.astype(np.float32),
    )


def enhancement_output(X, enh: Enhancement, cfg: GeometryConfig | None = None, group: Enhanced = ENHANCED) -> dict:
    """Isotropy of the enhanced vectors as a stage OUTPUT, plus the fitted enhancement."""
    cfg = cfg or GeometryConfig()
    x_enh = enh.apply(X)
    sampled, _ = i_cos_sampled(x_enh, cfg.pairs, cfg.seed)
    pc_log10 = i_pc_log10(x_enh)
    attrs = dict(
        i_cos=i_cos(x_enh),
        i_cos_sampled=sampled,
        i_pc=float(10.0**pc_log10),
        i_pc_log10=pc_log10,
        isoscore=isoscore(x_enh),
        clusters=int(len(enh.centroids)),
        pcs_removed=int(enh.directions.shape[1]),
    )
    return {
        group.path: attrs,
        group.centroids: enh.centroids.astype(np.float32),
        group.means: enh.means.astype(np.float32),
        group.directions: enh.directions.astype(np.float32),
        group.cluster: enh.assign(X).astype(np.int16),
    }


# ---------------------------------------------------------------------------------------------
# Per-language isotropy and zero-shot enhancement
# ---------------------------------------------------------------------------------------------


def per_language(
    X, langs, cfg: GeometryConfig | None = None, source_lang: str = "en", progress: Progress = None
) -> dict:
    """Per language: i_cos and i_pc before, after its own enhancement, and after the enhancement
    fitted on `source_lang` (zero-shot). Empty when fewer than two languages are present."""
    cfg = cfg or GeometryConfig()
    X = _check(X)
    langs = np.asarray(langs).astype(str)
    if langs.shape != (X.shape[0],):
        raise ValueError(f"langs: expected shape ({X.shape[0]},), got {langs.shape}")
    present = [str(s) for s in dict.fromkeys(langs.tolist())]
    if len(present) < 2:
        return {}
    say = progress or (lambda stage, fraction: None)
    source = source_lang if source_lang in present else None
    zero_shot = None
    removed = cfg.removed(X.shape[1])
    if source is not None and np.sum(langs == source) >= 2:
        zero_shot = fit_enhancement(X[langs == source], cfg.clusters, removed, cfg.seed)
    out: dict = {}
    table = []
    for step, lang in enumerate(present):
        say(LANGUAGES.path, step / len(present))
        x_lang = X[langs == lang]
        row = dict(language=lang, n=int(len(x_lang)))
        if len(x_lang) >= 2:
            row.update(i_cos=i_cos(x_lang), i_pc=i_pc(x_lang))
            own = zero_shot if lang == source else fit_enhancement(x_lang, cfg.clusters, removed, cfg.seed)
            x_own = own.apply(x_lang)
            row.update(i_cos_enhanced=i_cos(x_own), i_pc_enhanced=i_pc(x_own))
            if zero_shot is not None:
                x_zs = zero_shot.apply(x_lang)
                row.update(i_cos_zero_shot=i_cos(x_zs), i_pc_zero_shot=i_pc(x_zs))
        out[LANGUAGES.of(lang)] = row
        table.append(row)
    say(LANGUAGES.path, 1.0)
    out[LANGUAGES.path] = dict(
        languages=present, source=source, table=table, clusters=int(cfg.clusters), pcs_removed=removed
    )
    return out
