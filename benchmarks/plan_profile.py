"""Benchmark 6: the default plan (compute/data/default_plan.yaml: GloVe 20k, then every MiniLM layer with SAEs,
STS and maps) from a clean store, stage by stage: where its minutes go.

The plan runs in its own process (`python -m benchmarks.plan_profile --worker ...`) so that its peak memory is
its own. Stage times come from the pipeline's progress stages (one row per stage name, summed over the runs
and layers); the functions inside the stages are timed too (UMAP 3D and 2D, the k-NN graphs, each part of
the feature statistics, extraction, STS), and `--cprofile` adds the top functions by cumulative time."""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import PeakMemory, bench_threads, row, ru_maxrss_bytes, work_dir
from benchmarks.end_to_end import INSTRUMENTED, _instrument

TARGET_S = 5 * 60
PLAN_CALLS = INSTRUMENTED + [  # the contextual stages and the parts of the feature statistics
    ("compute.contextual", "load_transformer"),
    ("compute.contextual", "extract"),
    ("compute.sts", "contextual_outputs"),
    ("compute.sts", "static_output"),
    ("compute.features", "concept_scores"),
    ("compute.features", "column_top"),
    ("compute.features", "quantile_groups"),
    ("compute.features", "decoder_neighbors"),
    ("compute.features", "correlated_features"),
    ("compute.features", "intrusion_scores"),
    ("compute.features", "feature_map"),
    ("compute.features", "match_features"),
]


def quick_plan() -> dict:
    """A small plan of the same shape (static run + two MiniLM layers, no STS) for --quick."""
    return {
        "runs": [
            {
                "name": "glove-2k",
                "model": "glove-6b-50d",
                "vocabulary": {"top_n": 2000},
                "projections": {"umap_epochs": 30},
                "sae": {"arch": "topk", "d_sae": 128, "k": 8, "steps": 40},
            },
            {
                "name": "minilm-q",
                "model": "minilm-l6",
                "layers": [0, 6],
                "corpus": "lee",
                "vocabulary": {"top_n": 2000},
                "geometry": {"token_sample": 1000},
                "projections": {"umap_epochs": 30},
                "sae": {"arch": "topk", "d_sae": 128, "k": 8, "steps": 40},
            },
        ]
    }


def stage_name(label: str) -> str:
    """'minilm-l6 L3 projections' -> 'projections'; 'glove-20k vocabulary' -> 'vocabulary'."""
    parts = label.split()
    while parts and (re.fullmatch(r"L\d+", parts[0]) or not _is_stage_word(parts[0])):
        parts = parts[1:]
    return " ".join(parts) or label


_STAGES = (
    "vocabulary",
    "load",
    "extract",
    "sts",
    "geometry",
    "enhancement",
    "word",
    "projections",
    "sae",
    "features",
    "write",
    "aligned",  # the cross-layer stage (compute/layer_stack.py)
    "lineage",
)


def _is_stage_word(w: str) -> bool:
    return w in _STAGES


# ---------------------------------------------------------------- variants


def variant_patches(name: str) -> dict:
    """{(module, attribute): value} that make the code run as `name`; "current" = the code as it is. (The map
    start variants of an earlier change no longer apply: the pipeline's maps are pieces of compute/parallel.py.)"""
    if name == "current":
        return {}
    raise ValueError(f"variant '{name}': expected current")


@contextlib.contextmanager
def patched(patches: dict):
    old = {key: getattr(*key) for key in patches}
    try:
        for (mod, attr), value in patches.items():
            setattr(mod, attr, value)
        yield
    finally:
        for (mod, attr), value in old.items():
            setattr(mod, attr, value)


def _warm_up():
    """What the first variant would pay alone, done before anything is timed: numba compiling umap-learn's
    functions, torch's first steps, the GloVe file read into the process cache, the model files into the page
    cache."""
    from compute import contextual, embeddings, features, projections, sae
    from compute.config import ProjectionConfig, TopKConfig

    embeddings.load_static("glove-6b-50d")
    contextual.load_transformer("minilm-l6", "cpu")
    X = np.random.default_rng(0).normal(size=(300, 20)).astype(np.float32)
    sae.fit(X, TopKConfig(d_sae=32, k=4, steps=5), device="cpu")
    cfg = ProjectionConfig(umap_epochs=10)
    idx, dist = projections.knn_cosine(X, 15)
    for init in ("spectral", "shared-pca"):
        projections.umap_maps(X, idx, dist, cfg, (3, 2), init=init, n_epochs=10)
    features.feature_map(X[:100])


def _summary(labels: dict, calls: list) -> dict:
    stages, stages_cpu = {}, {}
    for k, v in labels.items():
        name = stage_name(k)
        stages[name] = round(stages.get(name, 0) + v[1] - v[0], 2)
        stages_cpu[name] = round(stages_cpu.get(name, 0) + v[3] - v[2], 2)
    by_call = {}
    for c in calls:
        b = by_call.setdefault(c["call"], dict(n=0, s=0.0, cpu_s=0.0, peak_rss_gib=0.0))
        b["n"] += 1
        b["s"] = round(b["s"] + c["s"], 2)
        b["cpu_s"] = round(b["cpu_s"] + c["cpu_s"], 2)
        b["peak_rss_gib"] = max(b["peak_rss_gib"], c["peak_rss_gib"])
    return dict(
        stages=stages,
        stages_cpu_s=stages_cpu,
        labels={k: round(v[1] - v[0], 2) for k, v in labels.items()},
        calls_by_name=by_call,
    )


def worker(quick: bool, out: Path, profile: bool, variants: list[str]):
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from compute.config import load_plan, parse_plan
    from compute.pipeline import precompute
    from compute.progress import Progress

    plan = parse_plan(quick_plan(), "quick plan") if quick else load_plan()
    threads = bench_threads()
    limits = contextlib.nullcontext()
    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        limits = threadpool_limits(limits=threads)
    prof = cProfile.Profile() if profile else None
    results = {}
    with PeakMemory(0.05) as mem, limits:
        import benchmarks.end_to_end as e2e

        calls = []
        old, e2e.INSTRUMENTED = e2e.INSTRUMENTED, PLAN_CALLS
        try:
            _instrument(calls, mem)
        finally:
            e2e.INSTRUMENTED = old
        _warm_up()
        for variant in variants:
            root = work_dir() / f"plan-store-{variant}{'-quick' if quick else ''}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            calls.clear()
            labels = {}

            def on_progress(label: str, frac: float, labels=labels):
                t, c = time.perf_counter(), time.process_time()
                s = labels.setdefault(label, [t, t, c, c])
                s[1], s[3] = t, c

            print(f"[plan_profile] {variant} ...", file=sys.stderr, flush=True)
            mem.mark()
            t0, c0 = time.perf_counter(), time.process_time()
            with patched(variant_patches(variant)):
                if prof:
                    prof.enable()
                ids = precompute(plan, store=root, device="cpu", force=True, progress=Progress(on_progress, show=False))
                if prof:
                    prof.disable()
            results[variant] = dict(
                run_ids=ids,
                total_s=round(time.perf_counter() - t0, 2),
                total_cpu_s=round(time.process_time() - c0, 2),
                peak_rss_gib=round(mem.mark() / 2**30, 3),
                **_summary(labels, calls),
                calls=list(calls),
            )
            print(
                f"[plan_profile] {variant}: {results[variant]['total_cpu_s']:.0f} s CPU, "
                f"{results[variant]['total_s']:.0f} s wall",
                file=sys.stderr,
                flush=True,
            )
    result = dict(
        quick=quick,
        variants=results,
        ru_maxrss_gib=round(ru_maxrss_bytes() / 2**30, 3),
        torch_blas_threads=threads or "library defaults",
        numba_threads=os.environ.get("NUMBA_NUM_THREADS", "numba default"),
    )
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(60)
        result["cprofile_top"] = s.getvalue()
    out.write_text(json.dumps(result, indent=1))


def result_file(quick: bool) -> Path:
    return work_dir() / f"plan-profile{'-quick' if quick else ''}.json"


def run(quick: bool = False, variants=("current",)) -> dict:
    out = result_file(quick)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.plan_profile", "--worker", "--out", str(out), "--variants", *variants]
    if quick:
        cmd.append("--quick")
    print(
        f"[plan_profile] {'quick' if quick else 'default'} plan: {', '.join(variants)} ...", file=sys.stderr, flush=True
    )
    proc = subprocess.run(
        cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=7200, check=False
    )
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise RuntimeError(f"plan worker failed (rc {proc.returncode}): {' | '.join(tail)}")
    r = json.loads(out.read_text())
    r.pop("cprofile_top", None)
    return dict(
        params=dict(plan="quick" if quick else "default", variants=list(variants), repeats=1),
        figures=r,
        table=table_rows(r, quick),
        notes=[
            "each variant runs the whole plan once from a clean store, one after the other in one "
            "process, after numba has compiled umap-learn's functions (a fresh process pays that "
            "once, a few seconds); repeats = 1",
            "current: the code as it is, with LEXISCOPE_PROCESSES worker processes (default: the usable "
            "cores); a stage's time in the main process includes waiting for the pieces it needs",
            "CPU s = process CPU time, steadier than wall time on this shared machine; the ratio is before / after",
            f"torch and BLAS threads = {bench_threads() or 'library defaults'}; numba threads: "
            f"{os.environ.get('NUMBA_NUM_THREADS', 'numba default')} (NUMBA_NUM_THREADS)",
            "stage rows sum each pipeline stage over every run and layer; the per-function times "
            "are in figures.variants.<variant>.calls_by_name",
        ],
    )


def table_rows(r: dict, quick: bool) -> list:
    what = "quick plan (GloVe 2k + 2 MiniLM layers)" if quick else "default plan (GloVe 20k + 7 MiniLM layers)"
    v = r["variants"]
    after = v.get("after") or next(iter(v.values()))
    before = v.get("before") if "after" in v else None

    def ratio(a, b):
        return a / b if a and b else None

    rows = [
        row(
            "6 plan profile",
            f"{what}: total CPU s (wall {after['total_s']:.0f} s"
            + (f", before {before['total_s']:.0f} s" if before else "")
            + ")",
            after["total_cpu_s"],
            before and before["total_cpu_s"],
            before and ratio(before["total_cpu_s"], after["total_cpu_s"]),
            unit="s",
            target="" if quick else "< 5 min wall",
            met=None if quick else after["total_s"] < TARGET_S,
        ),
        row(
            "6 plan profile",
            f"{what}: peak memory (RSS)",
            after["peak_rss_gib"],
            before and before["peak_rss_gib"],
            unit="GiB",
        ),
    ]
    for st, c in sorted(after["stages_cpu_s"].items(), key=lambda kv: -kv[1]):
        b = before["stages_cpu_s"].get(st) if before else None
        rows.append(
            row(
                "6 plan profile",
                f"stage '{st}', all runs: CPU s (wall {after['stages'][st]:.0f} s)",
                c,
                b,
                ratio(b, c),
                unit="s",
            )
        )
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--variants", nargs="+", default=["current"], choices=["current"])
    args = ap.parse_args()
    if args.worker:
        worker(args.quick, args.out or result_file(args.quick), args.cprofile, args.variants)
    else:
        from benchmarks.common import markdown_table

        res = run(args.quick, args.variants)
        print(markdown_table({"benchmarks": {"plan_profile": dict(status="ok", **res)}}))


if __name__ == "__main__":
    main()
