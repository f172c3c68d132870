"""Benchmark 8: peak memory of the SAE feature statistics (compute.features.sae_output) on all 400k GloVe words,
part by part, and compute.features.decoder_neighbors today beside a blocked torch.topk version (same result,
a fraction of the memory), side by side in one process.

Memory is the process RSS sampled every 20 ms (benchmarks.common.PeakMemory); each part's figure is its peak
above the RSS just before it started. The SAE is the end-to-end benchmark's (topk, 4096 features, k=16) but
trained for few steps: the statistics' memory depends on n, F and k, not on how well the SAE has learnt."""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import time

import numpy as np

from benchmarks import before_after
from benchmarks.common import PeakMemory, bench_thread_limits, bench_threads, row

PARTS = (
    "encode_numpy",
    "concept_scores",
    "column_top",
    "quantile_groups",
    "decoder_neighbors",
    "correlated_features",
    "intrusion_scores",
    "feature_map",
)


def _peak_above(mem: PeakMemory, fn, *a, **kw):
    gc.collect()
    base = mem.mark()
    base = mem.mark()  # a fresh window that starts now
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a, **kw)
    s, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, dict(peak_above_gib=round((mem.mark() - base) / 2**30, 3), s=round(s, 2), cpu_s=round(cpu, 2))


def run(quick: bool = False, steps: int | None = None) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    from compute import features, sae
    from compute.config import SAEConfig
    from compute.embeddings import load_static

    limits = bench_thread_limits()
    n = 20_000 if quick else None
    X = np.ascontiguousarray(load_static("glove-6b-50d").vectors[:n], dtype=np.float32)
    cfg = SAEConfig(arch="topk", d_sae=128 if quick else 4096, k=16, steps=steps or (20 if quick else 300))
    parts = {}
    with PeakMemory(0.02) as mem, limits:
        print(f"[feature_memory] n={len(X):,}: SAE ...", file=sys.stderr, flush=True)
        model = sae.fit(X, cfg, device="cpu")
        features.feature_map(np.random.default_rng(0).normal(size=(64, 8)))  # numba compiles umap-learn first
        wrapped = {}
        for name in PARTS:  # record each part as sae_output calls it
            owner = sae if name == "encode_numpy" else features
            fn = getattr(owner, name)

            def timed(*a, __fn=fn, __name=name, **kw):
                out, fig = _peak_above(mem, __fn, *a, **kw)
                parts[__name] = fig
                return out

            wrapped[name] = (owner, fn)
            setattr(features, name, functools.wraps(fn)(timed))
        try:
            gc.collect()
            with PeakMemory(0.02) as outer:  # its own sampler: the parts' windows nest inside this call
                base_rss = outer.mark()
                t0, c0 = time.perf_counter(), time.process_time()
                features.sae_output(
                    model,
                    X,
                    [str(i) for i in range(len(X))],
                    np.full(len(X), -1, np.int16),
                    [],
                    cfg,
                    model.history,
                    seed=0,
                )
                whole = dict(s=round(time.perf_counter() - t0, 2), cpu_s=round(time.process_time() - c0, 2))
            whole.update(
                peak_gib=round(outer.peak / 2**30, 3), peak_above_gib=round((outer.peak - base_rss) / 2**30, 3)
            )
        finally:
            for name, (_owner, fn) in wrapped.items():
                setattr(features, name, fn)
        print(f"[feature_memory] sae_output: {whole}", file=sys.stderr, flush=True)
        # decoder_neighbors today vs blocked, interleaved, twice
        today, blocked = [], []
        for r in range(2):
            for which in (0, 1) if r == 0 else (1, 0):
                fn = before_after.decoder_neighbors_before if which == 0 else before_after.decoder_neighbors_blocked
                out, fig = _peak_above(mem, fn, model, X)
                (today if which == 0 else blocked).append((out, fig))
        (i_a, c_a), (i_b, c_b) = today[0][0], blocked[0][0]
        same_cos = float(np.abs(c_a - c_b).max())
        same_idx = float((i_a == i_b).mean())
    fig_today = [f for _, f in today]
    fig_blocked = [f for _, f in blocked]
    label = f"GloVe n={len(X):,}, F={cfg.d_sae}"

    def med(figs, key):
        return float(np.median([f[key] for f in figs]))

    table = [
        row(
            "8 feature memory",
            f"{label}: sae_output peak RSS (above its start: {whole['peak_above_gib']:.2f} "
            f"GiB; {whole['cpu_s']:.0f} s CPU)",
            whole["peak_gib"],
            unit="GiB",
        )
    ]
    for name, f in sorted(parts.items(), key=lambda kv: -kv[1]["peak_above_gib"]):
        table.append(
            row(
                "8 feature memory",
                f"{label}: part {name}: peak above start ({f['cpu_s']:.1f} s CPU)",
                f["peak_above_gib"],
                unit="GiB",
            )
        )
    table.append(
        row(
            "8 feature memory",
            f"{label}: decoder_neighbors blocked torch.topk vs today: peak above "
            f"start (max abs cos difference {same_cos:.1e}, same indices {same_idx:.4f})",
            med(fig_blocked, "peak_above_gib"),
            med(fig_today, "peak_above_gib"),
            med(fig_today, "peak_above_gib") / max(med(fig_blocked, "peak_above_gib"), 1e-3),
            unit="GiB",
        )
    )
    table.append(
        row(
            "8 feature memory",
            f"{label}: decoder_neighbors blocked torch.topk vs today: CPU s",
            med(fig_blocked, "cpu_s"),
            med(fig_today, "cpu_s"),
            med(fig_today, "cpu_s") / max(med(fig_blocked, "cpu_s"), 1e-3),
            unit="s",
        )
    )
    return dict(
        params=dict(n=len(X), d_sae=cfg.d_sae, k=cfg.k, steps=cfg.steps, repeats=2),
        figures=dict(
            rss_before_gib=round(base_rss / 2**30, 3),
            sae_output=whole,
            parts=parts,
            decoder_neighbors_today=fig_today,
            decoder_neighbors_blocked=fig_blocked,
            max_abs_cos_diff=same_cos,
            same_index_frac=same_idx,
        ),
        table=table,
        notes=[
            f"torch/BLAS threads = {bench_threads() or 'library defaults'}",
            "peak = largest RSS sampled every 20 ms during the call, above the RSS at its "
            "start; the machine was shared with other jobs",
        ],
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    res = run(args.quick, args.steps)
    from benchmarks.common import markdown_table

    print(markdown_table({"benchmarks": {"feature_memory": dict(status="ok", **res)}}))


if __name__ == "__main__":
    main()
