"""Benchmark 4: GloVe end to end through compute.pipeline.precompute_run (vocabulary, geometry, enhancement,
word similarity, neighbours, UMAP 3D and 2D, PCA, SAE with 4096 features, feature statistics, store write),
at n = 10k, 50k, 200k and all 400k words: wall time per stage, peak memory, store size, and how each stage
grows with n.

Each size runs in its own subprocess (`python -m benchmarks.end_to_end --worker ...`) so that its peak
memory is its own. Stage times come from the pipeline's progress stages; the functions inside them are
wrapped with timers too (e.g. UMAP 3D and 2D separately, the two k-NN graphs)."""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import PeakMemory, bench_threads, row, ru_maxrss_bytes, work_dir

FULL_SIZES = (10_000, 50_000, 200_000, 400_000)
QUICK_SIZES = (2_000,)
TARGET_S, TARGET_GIB = 15 * 60, 8.0


def store_dir(n: int, quick: bool) -> Path:
    return work_dir() / (f"quick-store-{n}" if quick else f"e2e-store-{n}")


def run_config(n: int, quick: bool, word_list: Path):
    from compute.config import ProjectionConfig, RunConfig, SAEConfig, VocabularyConfig
    sae = SAEConfig(arch="topk", d_sae=128, k=16, steps=40) if quick else SAEConfig(arch="topk", d_sae=4096, k=16)
    proj = ProjectionConfig(umap_epochs=30) if quick else ProjectionConfig()
    return RunConfig(name=f"glove-{n // 1000}k", model="glove-6b-50d",
                     vocabulary=VocabularyConfig(top_n=0, word_lists=[str(word_list)]), sae=sae, projections=proj)


# ---------------------------------------------------------------- worker (one size, own process)

INSTRUMENTED = [  # (module, function): timed on every call
    ("compute.vocabulary", "build"), ("compute.embeddings", "load_static"), ("compute.geometry", "analyse"),
    ("compute.geometry", "fit_enhancement"), ("compute.geometry", "enhancement_output"),
    ("compute.similarity", "word_similarity"), ("compute.projections", "knn_cosine"),
    ("compute.projections", "umap_embed"), ("compute.sae", "fit"), ("compute.features", "sae_output"),
    ("compute.features", "sae_similarity_output"), ("store.writer", "RunWriter.write_all"),
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
            t0 = time.perf_counter()
            try:
                return __fn(*a, **kw)
            finally:
                label = __name
                if __name.endswith("umap_embed"):
                    label += f"[{a[3] if len(a) > 3 else kw.get('n_components')}d]"
                if __name.endswith("knn_cosine"):
                    label += f"[k={a[1] if len(a) > 1 else kw.get('k')}]"
                calls.append(dict(call=label, s=round(time.perf_counter() - t0, 3),
                                  peak_rss_gib=round(mem.mark() / 2**30, 3)))
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
    threads = bench_threads()
    limits = contextlib.nullcontext()
    if threads:
        import torch
        from threadpoolctl import threadpool_limits
        torch.set_num_threads(threads)
        limits = threadpool_limits(limits=threads)
    with PeakMemory(0.05) as mem, limits:
        _instrument(calls, mem)

        def on_progress(label: str, frac: float):
            t = time.perf_counter() - t_start
            stage = label.removeprefix(cfg.name).strip().removeprefix("L0").strip() or label
            s = stages.setdefault(stage, [t, t])
            s[1] = t

        t0 = time.perf_counter()
        ids = precompute_run(cfg, store=root, device="cpu", force=True,
                             progress=Progress(on_progress, show=False))
        total = time.perf_counter() - t0
    path = root / "runs" / f"{ids[0]}.h5"
    r = Run(path)
    rows = int(r.summary()["n_words"])
    r.close()
    result = dict(
        n_requested=n, n_rows=rows, run_id=ids[0], store=str(root), total_s=round(total, 2),
        stages={k: round(v[1] - v[0], 2) for k, v in stages.items()}, calls=calls,
        peak_rss_gib=round(mem.peak / 2**30, 3), ru_maxrss_gib=round(ru_maxrss_bytes() / 2**30, 3),
        store_mib=round(path.stat().st_size / 2**20, 1), cores=os.cpu_count(),
        torch_blas_threads=threads or "library defaults")
    out.write_text(json.dumps(result, indent=1))


# ---------------------------------------------------------------- the benchmark

def _slope(ns, ts):
    """Growth exponent between consecutive sizes: log(t2/t1) / log(n2/n1) (1 = linear)."""
    out = []
    for (n1, t1), (n2, t2) in zip(zip(ns, ts), list(zip(ns, ts))[1:]):
        out.append(round(math.log(t2 / t1) / math.log(n2 / n1), 2) if t1 and t2 and t1 > 0 and t2 > 0 else None)
    return out


def run(quick: bool = False, sizes=None, timeout_s: int = 2400) -> dict:
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    runs = []
    for n in sizes:
        out = work_dir() / f"e2e-{n}{'-quick' if quick else ''}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "benchmarks.end_to_end", "--worker", "--n", str(n), "--out", str(out)]
        if quick:
            cmd.append("--quick")
        print(f"[end_to_end] n={n:,} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                              timeout=timeout_s)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise RuntimeError(f"end-to-end worker n={n} failed (rc {proc.returncode}): {' | '.join(tail)}")
        r = json.loads(out.read_text())
        r["process_s"] = round(time.perf_counter() - t0, 2)
        runs.append(r)
        print(f"[end_to_end] n={n:,}: {r['total_s']:.0f} s, peak {r['peak_rss_gib']:.2f} GiB", file=sys.stderr)

    ns = [r["n_rows"] for r in runs]
    stage_names = list(dict.fromkeys(k for r in runs for k in r["stages"]))
    scaling = {}
    for st in stage_names:
        ts = [r["stages"].get(st) for r in runs]
        scaling[st] = dict(seconds=ts, growth_exponent=_slope(ns, ts) if None not in ts else None)
    scaling["total"] = dict(seconds=[r["total_s"] for r in runs], growth_exponent=_slope(ns, [r["total_s"]
                                                                                             for r in runs]))
    scaling["peak_rss_gib"] = dict(values=[r["peak_rss_gib"] for r in runs])
    biggest = runs[-1]
    table = [row("4 end to end", f"GloVe n={biggest['n_rows']:,}: total wall time", biggest["total_s"], unit="s",
                 target="< 15 min" if not quick else "", met=biggest["total_s"] < TARGET_S if not quick else None),
             row("4 end to end", f"GloVe n={biggest['n_rows']:,}: peak memory (RSS)", biggest["peak_rss_gib"],
                 unit="GiB", target="<= 8 GiB" if not quick else "",
                 met=biggest["peak_rss_gib"] <= TARGET_GIB if not quick else None),
             row("4 end to end", f"GloVe n={biggest['n_rows']:,}: store size", biggest["store_mib"], unit="MiB")]
    for st, s in biggest["stages"].items():
        g = scaling.get(st, {}).get("growth_exponent")
        table.append(row("4 end to end", f"stage '{st}'" + (f" (growth exponent {g[-1]})" if g else ""), s,
                         unit="s"))
    notes = ["one run per size (each is minutes long); repeats = 1",
             f"torch and BLAS/OpenMP threads = {bench_threads() or 'library defaults'} (LEXISCOPE_BENCH_THREADS); "
             "numba (UMAP, pynndescent) keeps its default",
             "growth exponent = log(t2/t1)/log(n2/n1) between consecutive sizes: 1 = linear, 2 = quadratic",
             "per-call figures (calls) time the functions inside the stages; peak_rss_gib per call is the "
             "largest RSS sampled (every 50 ms) during that call"]
    return dict(params=dict(sizes=list(sizes), repeats=1, sae="topk d_sae=4096 k=16" if not quick else
                            "topk d_sae=128 k=16 steps=40"),
                figures=dict(runs=runs, scaling=scaling), table=table, notes=notes)


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
