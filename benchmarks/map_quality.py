"""Benchmark 7: the word maps' time against their quality, today's UMAP settings beside the new ones.

For each set of word vectors (the default plan's GloVe 20k run, one MiniLM layer of the default plan, all
400k GloVe words) the cosine k-NN graph is computed once and shared, as the pipeline does; then each map
setting builds the 3-D and the 2-D UMAP map from it (compute.projections.umap_maps, the pipeline's code).
Quality: trustworthiness (k = 15; cosine in the word space, Euclidean on the map) on a fixed seeded sample of
20,000 words (all of them when fewer), with the PCA 2-D map of the same words as the baseline.

Settings (SETTINGS): "spectral" is today's (each map solves its own spectral initialisation); "shared-*"
computes one initialisation for both maps; "tswspectral" and "pca" are umap-learn's other inits per map;
"/2" halves the number of optimisation epochs. Times are process CPU seconds (steadier than wall time on
this shared machine; with NUMBA_NUM_THREADS=1 and 1 torch/BLAS thread they are the work done) and wall
seconds, measured side by side in one process, the settings interleaved."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks.common import bench_thread_limits, bench_threads, now_iso, row, stats, work_dir

TODAY = "spectral"
CHOSEN = "shared-pca"  # compute.projections.MAP_INIT: what the pipeline uses now
SETTINGS = {  # name -> (init, epochs factor)
    "spectral": ("spectral", 1.0),
    "tswspectral": ("tswspectral", 1.0),
    "pca": ("pca", 1.0),
    "shared-spectral": ("shared-spectral", 1.0),
    "shared-pca": ("shared-pca", 1.0),
    "shared-spectral/2": ("shared-spectral", 0.5),
    "shared-pca/2": ("shared-pca", 0.5),
}
K, SAMPLE = 15, 20_000
TOLERANCE = 0.01  # trustworthiness a new setting may lose against today's


def default_epochs(n: int, cfg) -> int:
    """The epochs umap-learn runs when the config leaves them unset (500 up to 10k rows, else 200)."""
    return cfg.umap_epochs or (500 if n <= 10_000 else 200)


# ---------------------------------------------------------------- the word vectors


def glove_plan_vectors(top_n: int | None = None):
    """The default plan's GloVe run's words and vectors (its vocabulary, or the first top_n GloVe words)."""
    from compute import vocabulary
    from compute.config import load_plan
    from compute.embeddings import load_static

    cfg = load_plan().runs[0]
    source = load_static(cfg.model)
    if top_n:
        return np.ascontiguousarray(source.vectors[:top_n], dtype=np.float32), cfg.projections
    vocab = vocabulary.build(cfg.vocabulary)
    rows = source.lookup(vocab.words)
    return np.ascontiguousarray(source.vectors[rows[rows >= 0]], dtype=np.float32), cfg.projections


def glove_all_vectors():
    from compute.config import load_plan
    from compute.embeddings import load_static

    return np.ascontiguousarray(load_static("glove-6b-50d").vectors, dtype=np.float32), load_plan().runs[0].projections


def minilm_plan_vectors(layer: int):
    """One layer's word vectors of the default plan's MiniLM run (its vocabulary and corpus)."""
    from compute import contextual, vocabulary
    from compute.config import load_plan

    cfg = next(r for r in load_plan().runs if not r.model.startswith("glove"))
    tokenizer, model = contextual.load_transformer(cfg.model, "cpu")
    vocab = vocabulary.build(cfg.vocabulary)
    sentences = contextual.read_corpus(cfg.corpus or "lee")
    ext = contextual.extract(
        tokenizer,
        model,
        sentences,
        vocab.words,
        [layer],
        token_sample=0,
        seed=cfg.geometry.seed,
        batch_size=cfg.batch_size,
        device="cpu",
    )
    return np.ascontiguousarray(ext.word_vectors[0], dtype=np.float32), cfg.projections


# ---------------------------------------------------------------- timing umap-learn's parts


class UmapParts:
    """Times the parts of umap-learn's fit (graph, its own spectral initialisation, optimisation) by wrapping
    the functions umap.umap_ calls, while in a `with` block; `take()` returns and resets the seconds (process
    CPU) spent in each."""

    PARTS = (
        ("fuzzy_simplicial_set", "graph"),
        ("spectral_layout", "init"),
        ("tswspectral_layout", "init"),
        ("optimize_layout_euclidean", "optimise"),
    )

    def __init__(self):
        self.cpu, self._old = {}, {}

    def __enter__(self):
        import umap.umap_ as uu

        for fn_name, part in self.PARTS:
            self._old[fn_name] = getattr(uu, fn_name)
            setattr(uu, fn_name, self._wrap(self._old[fn_name], part))
        return self

    def __exit__(self, *exc):
        import umap.umap_ as uu

        for fn_name, fn in self._old.items():
            setattr(uu, fn_name, fn)

    def _wrap(self, fn, part):
        def wrapped(*a, **kw):
            c0 = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                self.cpu[part] = self.cpu.get(part, 0.0) + time.process_time() - c0

        return wrapped

    def take(self) -> dict:
        out, self.cpu = {k: round(v, 2) for k, v in self.cpu.items()}, {}
        return out


# ---------------------------------------------------------------- one data set


def measure(
    name: str,
    X: np.ndarray,
    cfg,
    settings: list[str],
    repeats: int = 1,
    epochs: int | None = None,
    sample: int = SAMPLE,
) -> dict:
    """Each setting's 3-D and 2-D maps of X from one shared k-NN graph: times and trustworthiness."""
    from sklearn.decomposition import PCA

    from compute import projections

    if epochs:
        cfg = cfg.model_copy(update={"umap_epochs": epochs})
    n = len(X)
    base_epochs = default_epochs(n, cfg)
    print(f"[map_quality] {name}: n={n:,}, k-NN ...", file=sys.stderr, flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    idx, dist = projections.knn_cosine(X, max(cfg.neighbors, cfg.n_neighbors), cfg.seed)
    knn = dict(s=round(time.perf_counter() - t0, 2), cpu_s=round(time.process_time() - c0, 2))
    pca = PCA(2, random_state=cfg.seed).fit_transform(np.asarray(X, np.float64))
    baseline = projections.trustworthiness(X, pca, K, sample, cfg.seed)
    _warm_up(X, cfg, settings)
    wall, cpu, breakdown, maps = ({s: [] for s in settings} for _ in range(4))
    for r in range(repeats):
        for s in settings if r % 2 == 0 else settings[::-1]:
            init, factor = SETTINGS[s]
            with UmapParts() as parts:
                t0, c0 = time.perf_counter(), time.process_time()
                maps[s] = projections.umap_maps(
                    X, idx, dist, cfg, (3, 2), init=init, n_epochs=max(10, round(base_epochs * factor))
                )
                wall[s].append(time.perf_counter() - t0)
                cpu[s].append(time.process_time() - c0)
            part = parts.take()
            part["other"] = round(cpu[s][-1] - sum(part.values()), 2)  # a shared start, umap-learn's set-up
            breakdown[s].append(part)
            print(
                f"[map_quality] {name} {s}: {cpu[s][-1]:.1f} s CPU, {wall[s][-1]:.1f} s wall",
                file=sys.stderr,
                flush=True,
            )
    out = {}
    for s in settings:
        tw = {f"{d}d": round(projections.trustworthiness(X, maps[s][d], K, sample, cfg.seed), 4) for d in (3, 2)}
        finite = all(bool(np.isfinite(m).all()) for m in maps[s].values())
        out[s] = dict(
            init=SETTINGS[s][0],
            epochs=max(10, round(base_epochs * SETTINGS[s][1])),
            wall_s=stats(wall[s]),
            cpu_s=stats(cpu[s]),
            umap_parts_cpu_s=breakdown[s],
            trustworthiness=tw,
            finite=finite,
        )
    return dict(
        n=n,
        d=int(X.shape[1]),
        sample=min(sample, n),
        k=K,
        knn=knn,
        epochs_today=base_epochs,
        trustworthiness_pca2=round(baseline, 4),
        settings=out,
    )


FEATURE_MAP_SETTINGS = ("today", "knn+spectral", "knn+pca")


def measure_feature_map(repeats: int = 2, d_sae: int = 2048, k: int = 16, steps: int | None = None) -> dict:
    """The SAE feature map (2-D UMAP of the decoder directions) today and as proposed, on the decoder of an
    SAE of the MiniLM runs' width trained on the GloVe 20k words: CPU time and trustworthiness."""
    from sklearn.decomposition import PCA

    from benchmarks import before_after
    from compute import projections, sae
    from compute.config import SAEConfig

    X, _ = glove_plan_vectors()
    print(f"[map_quality] feature-map: SAE F={d_sae} ...", file=sys.stderr, flush=True)
    W = sae.fit(X, SAEConfig(arch="topk", d_sae=d_sae, k=k, steps=steps, seed=0), device="cpu").W_dec.detach().numpy()
    W = np.ascontiguousarray(W, dtype=np.float32)
    fns = {
        "today": lambda: before_after.feature_map_before(W, 0),
        "knn+spectral": lambda: before_after.feature_map_proposed(W, 0, "spectral"),
        "knn+pca": lambda: before_after.feature_map_proposed(W, 0, "pca"),
    }
    for f in fns.values():  # numba compilation
        f()
    cpu, wall, maps = ({s: [] for s in fns} for _ in range(3))
    for r in range(repeats):
        for s in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            maps[s] = fns[s]()
            wall[s].append(time.perf_counter() - t0)
            cpu[s].append(time.process_time() - c0)
            print(f"[map_quality] feature-map {s}: {cpu[s][-1]:.1f} s CPU", file=sys.stderr, flush=True)
    pca = projections.trustworthiness(W, PCA(2, random_state=0).fit_transform(W), K)
    out = {
        s: dict(
            cpu_s=stats(cpu[s]),
            wall_s=stats(wall[s]),
            finite=bool(np.isfinite(maps[s]).all()),
            trustworthiness={"2d": round(projections.trustworthiness(W, maps[s], K), 4)},
        )
        for s in fns
    }
    return dict(n=len(W), d=int(W.shape[1]), k=K, trustworthiness_pca2=round(pca, 4), settings=out)


def feature_map_rows(m: dict) -> list:
    today = m["settings"]["today"]
    rows = []
    for s, r in m["settings"].items():
        base = None if s == "today" else today["cpu_s"]["median"]
        rows.append(
            row(
                "7 map quality",
                f"SAE feature map (F={m['n']:,} decoder directions) '{s}', CPU s; "
                f"trustworthiness 2D {r['trustworthiness']['2d']:.3f} (today "
                f"{today['trustworthiness']['2d']:.3f}; PCA 2D {m['trustworthiness_pca2']:.3f})",
                r["cpu_s"]["median"],
                base,
                base / r["cpu_s"]["median"] if base else None,
                target="" if s == "today" else f"trustworthiness >= today - {TOLERANCE}",
                met=None if s == "today" else r["trustworthiness"]["2d"] >= today["trustworthiness"]["2d"] - TOLERANCE,
                unit="s",
            )
        )
    return rows


def _warm_up(X, cfg, settings):
    """numba compiles umap-learn's functions on first use (seconds): do that before anything is timed."""
    from compute import projections

    few = X[:300]
    idx, dist = projections.knn_cosine(few, max(cfg.neighbors, cfg.n_neighbors), cfg.seed)
    for init in dict.fromkeys(SETTINGS[s][0] for s in settings):
        projections.umap_maps(few, idx, dist, cfg, (3, 2), init=init, n_epochs=10)


def table_rows(name: str, m: dict) -> list:
    rows = []
    today = m["settings"].get(TODAY)
    for s, r in m["settings"].items():
        tw = r["trustworthiness"]
        if today is None or s == TODAY:
            ratio_, met, base = None, None, None
        else:
            base = today["cpu_s"]["median"]
            ratio_ = base / r["cpu_s"]["median"]
            met = all(tw[d] >= today["trustworthiness"][d] - TOLERANCE for d in tw)
        label = "today" if s == TODAY else ("new default" if s == CHOSEN else "")
        rows.append(
            row(
                "7 map quality",
                f"{name} n={m['n']:,}: UMAP 3D+2D '{s}'{f' ({label})' if label else ''}, "
                f"{r['epochs']} epochs, CPU s; trustworthiness 3D {tw['3d']:.3f} / 2D {tw['2d']:.3f} "
                f"(today {today['trustworthiness']['3d']:.3f} / {today['trustworthiness']['2d']:.3f}; "
                f"PCA 2D {m['trustworthiness_pca2']:.3f})"
                if today
                else f"{name}: '{s}'",
                r["cpu_s"]["median"],
                base,
                ratio_,
                target=f"trustworthiness >= today - {TOLERANCE}" if s != TODAY else "",
                met=met,
                unit="s",
            )
        )
    return rows


def run(
    quick: bool = False, sets: list[str] | None = None, settings: list[str] | None = None, repeats: int | None = None
) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    limits = bench_thread_limits()
    if quick:
        plan = {"glove-2k": (lambda: glove_plan_vectors(2000), [TODAY, CHOSEN], repeats or 1, 30)}
    else:
        big = [TODAY, CHOSEN]
        plan = {
            "glove-20k": (glove_plan_vectors, list(SETTINGS), repeats or 2, None),
            "minilm-L6": (lambda: minilm_plan_vectors(6), list(SETTINGS), repeats or 2, None),
            "glove-400k": (glove_all_vectors, big, repeats or 1, None),
        }
    figures = {}
    with limits:
        for name, (load, names, reps, epochs) in plan.items():
            if sets and name not in sets:
                continue
            X, cfg = load()
            figures[name] = measure(name, X, cfg, settings or names, reps, epochs)
            _checkpoint(name, figures[name], quick)
        if not sets or "feature-map" in sets:
            figures["feature-map"] = measure_feature_map(
                repeats or (1 if quick else 2), *((128, 8, 40) if quick else ())
            )
            _checkpoint("feature-map", figures["feature-map"], quick)
    table = [
        r
        for name, m in figures.items()
        for r in (feature_map_rows(m) if name == "feature-map" else table_rows(name, m))
    ]
    return dict(
        params=dict(
            k=K,
            sample=SAMPLE,
            tolerance=TOLERANCE,
            today=TODAY,
            chosen=CHOSEN,
            settings={s: SETTINGS[s] for s in SETTINGS},
        ),
        figures=figures,
        table=table,
        notes=[
            f"torch/BLAS threads = {bench_threads() or 'library defaults'}; numba threads: "
            f"{os.environ.get('NUMBA_NUM_THREADS', 'numba default')} (set NUMBA_NUM_THREADS=1 for "
            "comparable CPU times); umap-learn optimises single-threaded anyway when seeded",
            "times: process CPU s of the two maps (k-NN excluded: computed once and shared), "
            "median of the repeats, settings interleaved; the machine was shared with other jobs",
            "trustworthiness: compute.projections.trustworthiness (equals sklearn.manifold."
            f"trustworthiness, metric='cosine'), k={K}, seeded sample of {SAMPLE:,} words",
        ],
    )


def _checkpoint(name: str, m: dict, quick: bool):
    """Each data set's figures as soon as they exist (a long run can be stopped and resumed by --sets)."""
    path = work_dir() / f"map-quality-{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(dict(measured=now_iso(), **m), indent=1))


def main():
    ap = argparse.ArgumentParser(description="map quality against time, one process")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sets", nargs="+", help="glove-20k, minilm-L6, glove-400k, feature-map (default: all)")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS))
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    res = run(args.quick, args.sets, args.settings, args.repeats)
    from benchmarks.common import markdown_table

    print(markdown_table({"benchmarks": {"map_quality": dict(status="ok", **res)}}))


if __name__ == "__main__":
    main()
