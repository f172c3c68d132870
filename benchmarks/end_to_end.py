"""Benchmark 4: GloVe end to end through compute.pipeline.precompute_run (vocabulary, geometry, enhancement,
word similarity, neighbours, UMAP 3D and 2D, PCA, SAE with 4096 features, feature statistics, store write),
at n = 10k, 50k, 200k and all 400k words: wall time per stage, peak memory, store size, and how each stage
grows with n.

Each size runs in its own subprocess (`python -m benchmarks.end_to_end --worker ...`) so that its peak
memory is its own. Stage times come from the pipeline's progress stages; the functions inside them are
wrapped with timers too (e.g. UMAP 3D and 2D separately, the two k-NN graphs)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import PeakMemory, bench_thread_limits, bench_threads, row, ru_maxrss_bytes, work_dir
from store.settings import settings

FULL_SIZES = (10_000, 50_000, 200_000, 400_000)
QUICK_SIZES = (1_000, 2_000)
TARGET_S, TARGET_GIB = 15 * 60, 6.0


def store_dir(n: int, quick: bool) -> Path:
    return work_dir() / (f"quick-store-{n}" if quick else f"e2e-store-{n}")


def run_config(n: int, quick: bool, word_list: Path):
    from compute.config import ProjectionConfig, RunConfig, TopKConfig, VocabularyConfig

    sae = TopKConfig(d_sae=128, k=16, steps=40) if quick else TopKConfig(d_sae=4096, k=16)
    proj = ProjectionConfig(umap_epochs=30) if quick else ProjectionConfig()
    return RunConfig(
        name=f"glove-{n // 1000}k",
        model="glove-6b-50d",
        vocabulary=VocabularyConfig(top_n=0, word_lists=[str(word_list)]),
        sae=sae,
        projections=proj,
    )


# ---------------------------------------------------------------- worker (one size, own process)

INSTRUMENTED = [  # (module, function): timed on every call
    ("compute.vocabulary", "build"),
    ("compute.embeddings", "load_static"),
    ("compute.geometry", "analyse"),
    ("compute.geometry", "fit_enhancement"),
    ("compute.geometry", "enhancement_output"),
    ("compute.similarity", "word_similarity"),
    ("compute.projections", "knn_cosine"),
    ("compute.projections", "umap_embed"),
    ("compute.sae", "fit"),
    ("compute.features", "sae_output"),
    ("compute.features", "sae_similarity_output"),
    ("store.writer", "RunWriter.write_all"),
]


def _instrument(calls: list, mem: PeakMemory):
    import importlib

    for mod_name, fn_name in INSTRUMENTED:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        owner, attr = mod, fn_name
        if "." in fn_name:
            cls, attr = fn_name.split(".")
            owner = getattr(mod, cls)
        fn = getattr(owner, attr, None)
        if fn is None:
            continue

        def wrapped(*a, __fn=fn, __name=f"{mod_name.split('.')[-1]}.{fn_name}", **kw):
            mem.mark()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return __fn(*a, **kw)
            finally:
                label = __name
                if __name.endswith("umap_embed"):
                    label += f"[{a[3] if len(a) > 3 else kw.get('n_components')}d]"
                if __name.endswith("knn_cosine"):
                    label += f"[k={a[1] if len(a) > 1 else kw.get('k')}]"
                calls.append(
                    dict(
                        call=label,
                        s=round(time.perf_counter() - t0, 3),
                        cpu_s=round(time.process_time() - c0, 3),
                        peak_rss_gib=round(mem.mark() / 2**30, 3),
                    )
                )

        setattr(owner, attr, functools.wraps(fn)(wrapped))


def worker(n: int, quick: bool, out: Path):
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    t_start = time.perf_counter()
    from compute.embeddings import load_static
    from compute.pipeline import precompute_run
    from compute.progress import Progress
    from store import Run

    root = store_dir(n, quick)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    glove = load_static("glove-6b-50d")
    word_list = root / "words.txt"
    # GloVe is ordered by corpus frequency: its first n words. read_word_list drops '#' lines.
    word_list.write_text("\n".join(glove.words[:n]) + "\n", encoding="utf-8")
    cfg = run_config(n, quick, word_list)

    calls, stages = [], {}
    limits = bench_thread_limits()
    with PeakMemory(0.05) as mem, limits:
        _instrument(calls, mem)

        def on_progress(label: str, frac: float):
            t, c = time.perf_counter() - t_start, time.process_time()
            stage = label.removeprefix(cfg.name).strip().removeprefix("L0").strip() or label
            s = stages.setdefault(stage, [t, t, c, c])
            s[1], s[3] = t, c

        t0 = time.perf_counter()
        ids = precompute_run(cfg, store=root, device="cpu", force=True, progress=Progress(on_progress, show=False))
        total = time.perf_counter() - t0
    path = root / "runs" / f"{ids[0]}.h5"
    r = Run(path)
    rows = int(r.summary()["n_words"])
    trust = map_trustworthiness(r)
    r.close()
    result = dict(
        n_requested=n,
        n_rows=rows,
        run_id=ids[0],
        store=str(root),
        total_s=round(total, 2),
        stages={k: round(v[1] - v[0], 2) for k, v in stages.items()},
        stages_cpu_s={k: round(v[3] - v[2], 2) for k, v in stages.items()},
        calls=calls,
        total_cpu_s=round(time.process_time(), 2),
        peak_rss_gib=round(mem.peak / 2**30, 3),
        ru_maxrss_gib=round(ru_maxrss_bytes() / 2**30, 3),
        store_mib=round(path.stat().st_size / 2**20, 1),
        trustworthiness=trust,
        cores=os.cpu_count(),
        torch_blas_threads=bench_threads() or "library defaults",
    )
    out.write_text(json.dumps(result, indent=1))


def map_trustworthiness(run, k: int = 15, sample: int = 20_000) -> dict:
    """Trustworthiness (compute.projections.trustworthiness, k = 15, a seeded 20k sample) of a run's stored UMAP
    maps against its word vectors."""
    from compute.projections import trustworthiness
    from store.schema import EMBEDDINGS, PROJECTIONS

    X = run.array(EMBEDDINGS)
    return {
        name: round(trustworthiness(X, run.array(path), k, sample), 4)
        for name, path in (("umap3d", PROJECTIONS.umap3d), ("umap2d", PROJECTIONS.umap2d))
        if run.has(path)
    }


# ---------------------------------------------------------------- the benchmark


def result_file(n: int, quick: bool) -> Path:
    return work_dir() / f"e2e-{n}{'-quick' if quick else ''}.json"


def run_size(n: int, quick: bool, timeout_s: int = 2700) -> dict:
    """One size in its own process; its figures (also left in the work dir for the scaling benchmark)."""
    out = result_file(n, quick)
    if settings().bench_reuse and out.is_file():
        r = json.loads(out.read_text())  # a worker that finished earlier (e.g. after its parent had stopped)
        r["reused_result_file"] = str(out)
        print(f"[end_to_end] n={n:,}: reusing {out}", file=sys.stderr)
        return r
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.end_to_end", "--worker", "--n", str(n), "--out", str(out)]
    if quick:
        cmd.append("--quick")
    print(f"[end_to_end] n={n:,} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise RuntimeError(f"end-to-end worker n={n} failed (rc {proc.returncode}): {' | '.join(tail)}")
    r = json.loads(out.read_text())
    r["process_s"] = round(time.perf_counter() - t0, 2)
    out.write_text(json.dumps(r, indent=1))
    print(f"[end_to_end] n={n:,}: {r['total_s']:.0f} s, peak {r['peak_rss_gib']:.2f} GiB", file=sys.stderr)
    return r


def notes() -> list[str]:
    return [
        f"torch and BLAS/OpenMP threads = {bench_threads() or 'library defaults'} (LEXISCOPE_BENCH_THREADS); "
        "numba (UMAP, pynndescent) keeps its default",
        "stages_cpu_s / total_cpu_s: process CPU time (all threads), steadier than wall time when other "
        "jobs share the cores",
        "per-call figures (calls) time the functions inside the stages; peak_rss_gib per call is the "
        "largest RSS sampled (every 50 ms) during that call",
    ]


def run(quick: bool = False) -> dict:
    """All 400k GloVe words (quick: 2,000), one run: it takes minutes, so repeats = 1."""
    n = QUICK_SIZES[-1] if quick else FULL_SIZES[-1]
    r = run_size(n, quick)
    table = [
        row(
            "4 end to end",
            f"GloVe n={r['n_rows']:,}: total wall time (process CPU time {r['total_cpu_s']:.0f} s)",
            r["total_s"],
            unit="s",
            target="< 15 min" if not quick else "",
            met=r["total_s"] < TARGET_S if not quick else None,
        ),
        row(
            "4 end to end",
            f"GloVe n={r['n_rows']:,}: peak memory (RSS)",
            r["peak_rss_gib"],
            unit="GiB",
            target="<= 6 GiB" if not quick else "",
            met=r["peak_rss_gib"] <= TARGET_GIB if not quick else None,
        ),
        row("4 end to end", f"GloVe n={r['n_rows']:,}: store size", r["store_mib"], unit="MiB"),
    ]
    for name, t in r.get("trustworthiness", {}).items():
        table.append(row("4 end to end", f"GloVe n={r['n_rows']:,}: {name} trustworthiness (k=15, 20k sample)", t))
    for st, s in r["stages"].items():
        table.append(row("4 end to end", f"stage '{st}' (CPU {r['stages_cpu_s'].get(st, 0):.1f} s)", s, unit="s"))
    return dict(
        params=dict(n=n, repeats=1, sae="topk d_sae=4096 k=16" if not quick else "topk d_sae=128 k=16 steps=40"),
        figures=dict(run=r),
        table=table,
        notes=["one run (it takes minutes); repeats = 1"] + notes(),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    worker(args.n, args.quick, args.out)


if __name__ == "__main__":
    main()
