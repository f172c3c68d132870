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

from benchmarks.common import PeakMemory, bench_threads, row, ru_maxrss_bytes, work_dir
from benchmarks.end_to_end import INSTRUMENTED, _instrument

TARGET_S = 5 * 60
PLAN_CALLS = INSTRUMENTED + [  # the contextual stages and the parts of the feature statistics
    ("compute.contextual", "load_transformer"), ("compute.contextual", "extract"),
    ("compute.sts", "contextual_outputs"), ("compute.sts", "static_output"),
    ("compute.features", "concept_scores"), ("compute.features", "column_top"),
    ("compute.features", "quantile_groups"), ("compute.features", "decoder_neighbors"),
    ("compute.features", "correlated_features"), ("compute.features", "intrusion_scores"),
    ("compute.features", "feature_map"), ("compute.features", "match_features"),
]


def quick_plan() -> dict:
    """A small plan of the same shape (static run + two MiniLM layers, no STS) for --quick."""
    return {"runs": [
        {"name": "glove-2k", "model": "glove-6b-50d", "vocabulary": {"top_n": 2000},
         "projections": {"umap_epochs": 30}, "sae": {"arch": "topk", "d_sae": 128, "k": 8, "steps": 40}},
        {"name": "minilm-q", "model": "minilm-l6", "layers": [0, 6], "corpus": "lee",
         "vocabulary": {"top_n": 2000}, "geometry": {"token_sample": 1000},
         "projections": {"umap_epochs": 30}, "sae": {"arch": "topk", "d_sae": 128, "k": 8, "steps": 40}},
    ]}


def stage_name(label: str) -> str:
    """'minilm-l6 L3 projections' -> 'projections'; 'glove-20k vocabulary' -> 'vocabulary'."""
    parts = label.split()
    while parts and (re.fullmatch(r"L\d+", parts[0]) or not _is_stage_word(parts[0])):
        parts = parts[1:]
    return " ".join(parts) or label


_STAGES = ("vocabulary", "load", "extract", "sts", "geometry", "enhancement", "word", "projections", "sae",
           "features", "write")


def _is_stage_word(w: str) -> bool:
    return w in _STAGES


def worker(quick: bool, out: Path, profile: bool):
    import logging
    import warnings
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    t_start = time.perf_counter()
    from compute.config import load_plan, parse_plan
    from compute.pipeline import precompute
    from compute.progress import Progress

    root = work_dir() / ("plan-store-quick" if quick else "plan-store")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    plan = parse_plan(quick_plan(), "quick plan") if quick else load_plan()
    calls, labels = [], {}
    threads = bench_threads()
    limits = contextlib.nullcontext()
    if threads:
        import torch
        from threadpoolctl import threadpool_limits
        torch.set_num_threads(threads)
        limits = threadpool_limits(limits=threads)
    prof = cProfile.Profile() if profile else None
    with PeakMemory(0.05) as mem, limits:
        import benchmarks.end_to_end as e2e
        old, e2e.INSTRUMENTED = e2e.INSTRUMENTED, PLAN_CALLS
        try:
            _instrument(calls, mem)
        finally:
            e2e.INSTRUMENTED = old

        def on_progress(label: str, frac: float):
            t, c = time.perf_counter() - t_start, time.process_time()
            s = labels.setdefault(label, [t, t, c, c])
            s[1], s[3] = t, c

        t0 = time.perf_counter()
        if prof:
            prof.enable()
        ids = precompute(plan, store=root, device="cpu", force=True, progress=Progress(on_progress, show=False))
        if prof:
            prof.disable()
        total = time.perf_counter() - t0
    per_label = {k: round(v[1] - v[0], 2) for k, v in labels.items()}
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
    result = dict(quick=quick, run_ids=ids, total_s=round(total, 2), total_cpu_s=round(time.process_time(), 2),
                  stages=stages, stages_cpu_s=stages_cpu, labels=per_label, calls_by_name=by_call, calls=calls,
                  peak_rss_gib=round(mem.peak / 2**30, 3), ru_maxrss_gib=round(ru_maxrss_bytes() / 2**30, 3),
                  torch_blas_threads=threads or "library defaults",
                  numba_threads=os.environ.get("NUMBA_NUM_THREADS", "numba default"))
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(60)
        result["cprofile_top"] = s.getvalue()
    out.write_text(json.dumps(result, indent=1))


def result_file(quick: bool) -> Path:
    return work_dir() / f"plan-profile{'-quick' if quick else ''}.json"


def run(quick: bool = False) -> dict:
    out = result_file(quick)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.plan_profile", "--worker", "--out", str(out)]
    if quick:
        cmd.append("--quick")
    print(f"[plan_profile] default plan{' (quick)' if quick else ''} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise RuntimeError(f"plan worker failed (rc {proc.returncode}): {' | '.join(tail)}")
    r = json.loads(out.read_text())
    what = "quick plan (GloVe 2k + 2 MiniLM layers)" if quick else "default plan (GloVe 20k + 7 MiniLM layers)"
    table = [row("6 plan profile", f"{what}: total wall time (process CPU {r['total_cpu_s']:.0f} s)",
                 r["total_s"], unit="s", target="" if quick else "< 5 min",
                 met=None if quick else r["total_s"] < TARGET_S),
             row("6 plan profile", f"{what}: peak memory (RSS)", r["peak_rss_gib"], unit="GiB")]
    for st, s in sorted(r["stages"].items(), key=lambda kv: -kv[1]):
        table.append(row("6 plan profile", f"stage '{st}', all runs (CPU {r['stages_cpu_s'][st]:.1f} s)", s,
                         unit="s"))
    r.pop("cprofile_top", None)
    return dict(params=dict(plan="quick" if quick else "default", repeats=1), figures=dict(run=r), table=table,
                notes=["one run of the whole plan from a clean store; repeats = 1",
                       f"torch and BLAS threads = {bench_threads() or 'library defaults'}; numba threads: "
                       f"{os.environ.get('NUMBA_NUM_THREADS', 'numba default')} (NUMBA_NUM_THREADS)",
                       "stage rows sum each pipeline stage over every run and layer; the per-function times "
                       "are in figures.run.calls_by_name"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.worker:
        worker(args.quick, args.out or result_file(args.quick), args.cprofile)
    else:
        print(json.dumps(run(args.quick)["table"], indent=1))


if __name__ == "__main__":
    main()
