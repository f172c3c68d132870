"""Aligned word maps before and after issue 17, side by side on the same word vectors (the default plan's MiniLM
layers read from a store, or any stack of runs of one family):

- before: umap-learn's `AlignedUMAP.fit` as compute/alignment.py called it (the plan's settings, the faster
  neighbourhood-similarity kernel patched in, an approximate k-NN, a UMAP fit and a spectral layout per layer);
- after: compute.alignment.aligned_maps (the exact k-NN graph, each layer's spectral start, the same epochs on
  one flat array, compiled once).

Per map: wall and CPU time, steadiness (mean Procrustes displacement between neighbouring layers; lower is
steadier) and trustworthiness (k = 15, sklearn's definition, on a seeded 20k sample) averaged over the layers,
beside the same two measures of the independent per-layer maps the store holds (the baseline).

    python -m benchmarks.aligned_maps --store STORE [--dims 2 3] [--words N] [--fewer-epochs 50 30] --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.common import save_results


def _layers(store: Path, family_prefix: str = "minilm-l6"):
    from store import Run
    from store.schema import EMBEDDINGS, PROJECTIONS

    runs = sorted(store.glob(f"runs/{family_prefix}-L*.h5"), key=lambda p: int(p.name.split("-L")[1].split("-")[0]))
    X, indep = [], {2: [], 3: []}
    for path in runs:
        r = Run(path)
        X.append(np.asarray(r.array(EMBEDDINGS), np.float32))
        indep[2].append(r.array(PROJECTIONS.umap2d))
        indep[3].append(r.array(PROJECTIONS.umap3d))
        r.close()
    return X, indep


def before(layers, dim: int, cfg) -> list[np.ndarray]:
    """The aligned maps as compute/alignment.py computed them before issue 17."""
    import umap
    import umap.aligned_umap as au

    from compute import alignment

    reducer = umap.AlignedUMAP(
        n_neighbors=min(cfg.n_neighbors, min(len(X) for X in layers) - 1),
        n_components=dim,
        metric="cosine",
        min_dist=cfg.min_dist,
        n_epochs=cfg.umap_epochs,
        random_state=cfg.seed,
        transform_seed=cfg.seed,
        alignment_regularisation=alignment.REGULARISATION,
        alignment_window_size=alignment.WINDOW,
        force_approximation_algorithm=True,
    )
    original = au.build_neighborhood_similarities
    au.build_neighborhood_similarities = alignment._neighbourhood_similarities  # umap-learn's is O(n^2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            maps = reducer.fit_transform(list(layers), relations=alignment.identity_relations([len(X) for X in layers]))
    finally:
        au.build_neighborhood_similarities = original
    return alignment._fill_unplaced([np.asarray(m, np.float32) for m in maps], alignment.identity_relations(
        [len(X) for X in layers]
    ))  # fmt: skip


def after(layers, dim: int, cfg) -> list[np.ndarray]:
    from compute import alignment

    return alignment.aligned_maps(layers, dim, cfg)


def quality(layers, maps) -> dict:
    from compute import alignment, projections

    return dict(
        steadiness=round(float(alignment.steadiness(maps).mean()), 4),
        trustworthiness=round(float(np.mean([projections.trustworthiness(X, m, 15) for X, m in zip(layers, maps)])), 4),
    )


def run(store: Path, dims=(2, 3), words: int | None = None, fewer_epochs=(), only_after: bool = False) -> dict:
    from compute.config import load_plan

    cfg = next(r for r in load_plan().runs if r.model == "minilm-l6").projections
    layers, indep = _layers(store)
    if words:
        layers = [X[:words] for X in layers]
        indep = {d: [m[:words] for m in ms] for d, ms in indep.items()}
    out = dict(store=str(store), n_layers=len(layers), n_words=len(layers[0]), umap_epochs=cfg.umap_epochs, maps={})
    for dim in dims:
        res = {"independent (baseline)": quality(layers, indep[dim])} if not words else {}
        for name, fn in (("before", before), ("after", after))[1 if only_after else 0 :]:
            t0, c0 = time.perf_counter(), time.process_time()
            maps = fn(layers, dim, cfg)
            res[name] = dict(s=round(time.perf_counter() - t0, 1), cpu_s=round(time.process_time() - c0, 1))
            res[name].update(quality(layers, maps))
            print(f"[aligned_maps] {dim}-D {name}: {res[name]}", flush=True)
        if not only_after:
            res["cpu_ratio_before_over_after"] = round(res["before"]["cpu_s"] / res["after"]["cpu_s"], 2)
        for e in fewer_epochs:  # what cutting the epochs would cost the maps
            c = cfg.model_copy(update={"umap_epochs": e})
            t0, c0 = time.perf_counter(), time.process_time()
            maps = after(layers, dim, c)
            res[f"after, {e} epochs"] = dict(
                s=round(time.perf_counter() - t0, 1), cpu_s=round(time.process_time() - c0, 1)
            )
            res[f"after, {e} epochs"].update(quality(layers, maps))
            print(f"[aligned_maps] {dim}-D after, {e} epochs: {res[f'after, {e} epochs']}", flush=True)
        out["maps"][f"{dim}d"] = res
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True, help="a store holding the default plan's MiniLM layers")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--words", type=int, default=None, help="only the first N words of each layer")
    ap.add_argument("--fewer-epochs", type=int, nargs="*", default=[], help="also the new maps with these epochs")
    ap.add_argument("--only-after", action="store_true", help="skip the (slow) before maps")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = run(args.store, tuple(args.dims), args.words, tuple(args.fewer_epochs), args.only_after)
    if args.out:
        save_results(args.out, res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
