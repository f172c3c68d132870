"""What a feature means, end to end (issue 12): the concept score, labels and baselines as the pipeline stores
them, recomputed here from the stored arrays with plain h5py and numpy, and a run without WordNet."""

import logging

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from compute.config import parse_plan
from compute.pipeline import precompute


def _csr(f, path) -> sp.csr_matrix:
    g = f[path]
    return sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=tuple(g.attrs["shape"]))


def _run_file(store):
    root, run_id = store
    return h5py.File(root / "runs" / f"{run_id}.h5", "r")


def _f1_dense(col: np.ndarray, M: np.ndarray, min_words: int) -> np.ndarray:
    """The concept score of one feature against every label, one label at a time (docs/store.md)."""
    out = np.zeros(M.shape[1])
    for c in range(M.shape[1]):
        words = M[:, c]
        if words.sum() < min_words or col.sum() == 0:
            continue
        p = col[words].sum() / col.sum()
        r = (col[words] > 0).mean()
        out[c] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return out


def _top_share(top_words: np.ndarray, M: np.ndarray, label: int) -> float:
    rows = top_words[:10][top_words[:10] >= 0]
    return float(M[rows, label].mean())


@pytest.mark.slow
def test_default_glove_best_scored_features_carry_their_best_label(glove_default_store):
    with _run_file(glove_default_store) as f:
        score, best = f["sae/mono_score"][()], f["sae/best_label"][()]
        f1, top = f["sae/concept_f1"][()], f["sae/top_words"][()]
        acts, member = _csr(f, "sae/acts"), _csr(f, "labels/member")
        names = list(f["labels/names"].asstr()[()])
        group, min_words = f["words/group"][()], int(f["sae"].attrs["min_label_words"])
        labels = list(f["sae/feature_label"].asstr()[()])
        words = list(f["words/text"].asstr()[()])
    M = member.toarray() > 0
    assert len(names) == 45 + 12 and names[5] == "noun.animal" and names[-1].startswith("group.")
    # the stored score is each feature's best F1, and best_label its label
    np.testing.assert_array_equal(score, f1.max(1))
    np.testing.assert_array_equal(best, np.where(f1.max(1) > 0, f1.argmax(1), -1))

    ranked = np.argsort(-score, kind="stable")[:20]
    for feat in ranked:  # recomputed one label at a time from the stored activations
        np.testing.assert_allclose(f1[feat], _f1_dense(acts[:, feat].toarray().ravel(), M, min_words), atol=1e-5)
        head = ", ".join(words[r] for r in top[feat][:3])
        assert labels[feat] == f"{names[best[feat]]} {score[feat]:.2f} · {head}"
    shares = [_top_share(top[feat], M, best[feat]) for feat in ranked]

    # The same figure for the formula the store used before (issue 12): per-group mean activation over the
    # sum of group means and the mean over ungrouped words; its claimed group's words are the label.
    G = int(group.max()) + 1
    A = acts.tocsc()
    means = np.stack([np.asarray(A[group == g].mean(0)).ravel() for g in range(G)], 1)
    none = np.asarray(A[group < 0].mean(0)).ravel()
    old = means.max(1) / np.maximum(means.sum(1) + none, 1e-30)
    old_best = means.argmax(1)
    old_shares = [
        float((group[top[feat][:10]] == old_best[feat]).mean()) for feat in np.argsort(-old, kind="stable")[:20]
    ]
    print(
        f"\ntop-20 by the stored concept score: median share of top-10 words with the best label "
        f"{np.median(shares):.2f}; by the old mono_score: {np.median(old_shares):.2f} "
        f"({int((old > 0.9).sum())} features above 0.9 on the old formula, {int((score > 0.9).sum())} now)"
    )
    assert np.median(shares) >= 0.6


@pytest.mark.slow
def test_default_glove_stores_qvec_and_intrusion_against_every_baseline(glove_default_store):
    with _run_file(glove_default_store) as f:
        a = dict(f["sae"].attrs)
        X = f["embeddings"][()].astype(np.float64)
        weights = _csr(f, "labels/weights").toarray()
        names = list(f["labels/names"].asstr()[()])
        pcs = int(f["enhanced"].attrs["pcs_removed"])
    bases = ("", "_raw", "_rotated", "_random_decoder")
    for suffix in bases:
        assert np.isfinite(a[f"qvec{suffix}"]) and np.isfinite(a[f"intrusion{suffix}"]), suffix
    # QVEC of the raw dimensions, from its definition: each dimension's best |Pearson r| with a noun/verb
    # supersense column, over the words that have one, averaged
    cols = [j for j, n in enumerate(names) if n.startswith(("noun.", "verb."))]
    W = weights[:, cols]
    rows = W.sum(1) > 0
    r = np.corrcoef(np.hstack([X[rows], W[rows]]).T)[: X.shape[1], X.shape[1] :]
    assert a["qvec_raw"] == pytest.approx(np.abs(np.nan_to_num(r)).max(1).mean(), rel=1e-6)
    assert a["fvu_random_decoder"] > a["fvu"]  # a frozen random decoder reconstructs worse
    assert pcs == 1  # pcs_removed auto on 50-d vectors
    print("\nbasis             QVEC   DistRatio")
    for suffix in bases:
        print(f"{suffix or '_sae':<17} {a[f'qvec{suffix}']:.3f}  {a[f'intrusion{suffix}']:.3f}")


@pytest.mark.slow  # the pipeline's first UMAP (the feature map) compiles numba code: ~1 min
def test_without_wordnet_the_run_completes_with_one_line_and_top_word_labels(tmp_path, monkeypatch, caplog):
    empty = tmp_path / "no-wordnet"
    empty.mkdir()
    monkeypatch.setenv("LEXISCOPE_WORDNET_DIR", str(empty))
    run = {
        "model": "glove-6b-50d",
        "vocabulary": {"top_n": 400, "concept_groups": None},
        "projections": {"umap3d": False, "umap2d": False, "pca2": False, "neighbors": 5},
        "sae": {"arch": "topk", "d_sae": 32, "k": 4, "steps": 60, "seed": 0},
    }
    with caplog.at_level(logging.INFO, logger="lexiscope"):
        ids = precompute(parse_plan({"runs": [run]}), store=tmp_path / "store", device="cpu")
    lines = [r.getMessage() for r in caplog.records if "WordNet" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and str(empty) in lines[0] and "wordnet-base" in lines[0]
    with _run_file((tmp_path / "store", ids[0])) as f:
        assert not f["labels"].attrs["wordnet"] and len(f["labels/names"]) == 0
        assert f["labels/member"].attrs["shape"][1] == 0
        words = list(f["words/text"].asstr()[()])
        top, labels = f["sae/top_words"][()], list(f["sae/feature_label"].asstr()[()])
        assert (f["sae/best_label"][()] == -1).all() and (f["sae/mono_score"][()] == 0).all()
        a = dict(f["sae"].attrs)
    for feat, row in enumerate(top):  # every feature is named by its top words
        head = ", ".join(words[r] for r in row[row >= 0][:3])
        assert labels[feat] == (head or "(never fires)")
    assert np.isnan(a["qvec"]) and np.isnan(a["qvec_random_decoder"]) and np.isfinite(a["intrusion"])
