"""Stored runs compared: read two runs from the store, compare them (compute/compare.py compare_runs) and write the
result as its own comparison file (store/schema.py COMPARISON, written atomically by store.ComparisonWriter).

`lexiscope compare RUN_A RUN_B` and the worker's compare jobs call `compare_stored`; after a precompute,
`compare_natural_pairs` compares the pairs a user looks at first (`natural_pairs`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from compute import compare
from compute.lineage import correlation_matches
from compute.progress import Progress
from store import Catalog, StoreError, default_root
from store import comparisons as stored
from store.schema import COMPARISON, COMPARISON_ROOT, LABELS, ROOT, SAE, WORDS, comparison_path
from store.writer import ComparisonWriter

log = logging.getLogger("lexiscope.compute")

K = 10  # neighbours per word for the overlap
EXTREMES = 50  # words stored as agreeing most and least
REPEATS = 5  # shuffles of the CKA baseline


def comparison_output(c: compare.Comparison, label_names: list[str]) -> dict:
    """A Comparison as {schema path: array} (docs/store.md "Comparisons")."""
    names = [n for n in label_names if n in c.cka_labels]
    most, least = compare.extremes(c.jaccard, EXTREMES)
    out = {
        COMPARISON.words: list(c.words),
        COMPARISON.rows_a: c.rows_a.astype(np.int32),
        COMPARISON.rows_b: c.rows_b.astype(np.int32),
        COMPARISON.jaccard: c.jaccard.astype(np.float32),
        COMPARISON.most_agree: most.astype(np.int32),
        COMPARISON.least_agree: least.astype(np.int32),
        COMPARISON.neighbours_a: c.neighbours_a.astype(np.int32),
        COMPARISON.neighbours_b: c.neighbours_b.astype(np.int32),
        COMPARISON.labels.names: names,
        COMPARISON.labels.n: np.array([c.cka_labels[n]["n"] for n in names], np.int32),
        COMPARISON.labels.cka: np.array([c.cka_labels[n]["cka"] for n in names], np.float64),
        COMPARISON.labels.shuffled: np.array([c.cka_labels[n]["shuffled"] for n in names], np.float64),
    }
    if c.features_a_to_b is not None:
        (ab, ab_r), (ba, ba_r) = c.features_a_to_b, c.features_b_to_a
        out.update(
            {
                COMPARISON.features.a_to_b: ab.astype(np.int32),
                COMPARISON.features.a_to_b_r: ab_r.astype(np.float32),
                COMPARISON.features.b_to_a: ba.astype(np.int32),
                COMPARISON.features.b_to_a_r: ba_r.astype(np.float32),
            }
        )
    return out


def _labels(run) -> tuple[list[str], dict[str, np.ndarray]]:
    """The run's concept labels as {name: boolean mask over its rows}: /labels, or for runs written before labels
    were stored their concept groups (`group.<name>`, as /labels names them)."""
    if not run.has(LABELS.member.indptr):
        group = run.get(WORDS.group)
        if group is None:
            return [], {}
        names = [f"group.{g}" for g in run.group_names]
        return names, {name: group == g for g, name in enumerate(names)}
    names = [str(x) for x in run.array(LABELS.names)]
    member = run.csc(LABELS.member)
    masks = {}
    for j, name in enumerate(names):
        mask = np.zeros(member.shape[0], bool)
        mask[member.indices[member.indptr[j] : member.indptr[j + 1]]] = True
        masks[name] = mask
    return names, masks


def compare_stored(root, run_a: str, run_b: str, k: int = K, seed: int = 0, repeats: int = REPEATS, progress=None):
    """Compare two stored runs and write `<store>/comparisons/<run_a>__<run_b>.h5`; returns its path. StoreError
    or ValueError (one line, nothing written) for an unknown run or a pair that cannot be compared."""
    progress = progress or Progress(show=False)
    root = default_root(root)
    if run_a == run_b:
        raise ValueError(f"compare: run {run_a} against itself; pick two different runs")
    catalog = Catalog(root)
    a, b = catalog.open(run_a), catalog.open(run_b)
    with progress.stage("compare: read"):
        names, masks = _labels(a)
        acts = [r.csr(SAE.acts) if r.has(SAE.acts.indptr) else None for r in (a, b)]
        inputs = dict(words_a=list(a.array(WORDS.text)), X_a=a.array("embeddings"))
        inputs.update(words_b=list(b.array(WORDS.text)), X_b=b.array("embeddings"))
    with progress.stage("compare: CKA, neighbours, features"):
        c = compare.compare_runs(
            **inputs, labels_a=masks, acts_a=acts[0], acts_b=acts[1], k=k, seed=seed, repeats=repeats
        )
    attrs = {
        **_feature_baseline(c, *acts, seed),
        COMPARISON_ROOT.created_a: a.attrs.get(ROOT.created),
        COMPARISON_ROOT.created_b: b.attrs.get(ROOT.created),
        COMPARISON_ROOT.n_shared: len(c.words),
        COMPARISON_ROOT.k: k,
        COMPARISON_ROOT.seed: seed,
        COMPARISON_ROOT.cka: c.cka,
        COMPARISON_ROOT.cka_shuffled: np.asarray(c.cka_shuffled, np.float64),
        COMPARISON_ROOT.jaccard_mean: float(np.mean(c.jaccard)),
        COMPARISON_ROOT.jaccard_random: c.jaccard_random,
    }
    with progress.stage("compare: write"), ComparisonWriter(root, run_a, run_b, attrs) as w:
        w.write_all(comparison_output(c, names))
    return comparison_path(root, run_a, run_b)


def _feature_baseline(c: compare.Comparison, acts_a, acts_b, seed: int) -> dict:
    """In each direction, the median over a run's features of the best activation correlation with the other
    run's features, beside the same with b's shared words shuffled (features of unrelated runs): the matched
    features' baseline."""
    if c.features_a_to_b is None:
        return {}
    rows_b = np.random.default_rng(seed).permutation(c.rows_b)
    _, ab_shuffled, _, ba_shuffled = correlation_matches(acts_a, acts_b, c.rows_a, rows_b)
    out = {}
    for (_, r), shuffled, median, baseline in (
        (c.features_a_to_b, ab_shuffled, COMPARISON_ROOT.feature_r_median, COMPARISON_ROOT.feature_r_shuffled),
        (c.features_b_to_a, ba_shuffled, COMPARISON_ROOT.feature_r_median_ba, COMPARISON_ROOT.feature_r_shuffled_ba),
    ):
        if np.isfinite(r).any() and np.isfinite(shuffled).any():
            out[median], out[baseline] = float(np.nanmedian(r)), float(np.nanmedian(shuffled))
    return out


def natural_pairs(runs: list[dict], new_ids: Iterable[str]) -> list[tuple[str, str]]:
    """The pairs a user compares first, among stored runs (`runs`: rows of {run_id, layer, n_layers, source,
    family, vocabulary}), where at least one run is new: the first against the last layer of each contextual
    family, and each static run against the last layer of each contextual family built on the same vocabulary
    config (the default plan: MiniLM L0 vs L6; GloVe vs MiniLM L6)."""
    new = set(new_ids)
    families: dict[str, list[dict]] = {}
    for r in runs:
        if r["source"] == "contextual":
            families.setdefault(r["family"], []).append(r)
    pairs = []
    lasts = []
    for members in families.values():
        members = sorted(members, key=lambda r: r["layer"])
        first, last = members[0], members[-1]
        if last["layer"] == last["n_layers"] - 1:
            lasts.append(last)
            if first["layer"] == 0 and first is not last and {first["run_id"], last["run_id"]} & new:
                pairs.append((first["run_id"], last["run_id"]))
    for s in (r for r in runs if r["source"] == "static"):
        for last in lasts:
            if s["vocabulary"] == last["vocabulary"] and {s["run_id"], last["run_id"]} & new:
                pairs.append((s["run_id"], last["run_id"]))
    return pairs


def compare_natural_pairs(root, new_ids: Iterable[str], progress=None, force: bool = False) -> list[str]:
    """Compare the natural pairs that involve the runs just written (unless stored and up to date with both runs,
    or with `force`); returns the paths written. A pair that cannot be compared is logged and skipped: it never
    fails the runs."""
    root = default_root(root)
    catalog = Catalog(root)
    runs = []
    for row in catalog.table().to_dict("records"):
        run = catalog.open(row["run_id"])
        runs.append({**row, "vocabulary": run.config.get("vocabulary")})
    written = []
    created = {r["run_id"]: r.get("created") for r in runs}
    for a, b in natural_pairs(runs, new_ids):
        attrs = None if force else stored.read_attrs(root, a, b)
        if attrs is not None and not stored.is_stale(attrs, created[a], created[b]):
            continue
        try:
            written.append(str(compare_stored(root, a, b, progress=progress)))
            log.info("compared %s with %s", a, b)
        except (StoreError, ValueError) as e:
            log.warning("could not compare %s with %s: %s", a, b, e)
    return written
