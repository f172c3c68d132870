"""Benchmark 4b: how each end-to-end stage grows with n = 10k, 50k, 200k and 400k GloVe words.

The 400k point is the end_to_end benchmark's run (left in the work dir); the smaller sizes run here, each in
its own process. A size whose estimated time would pass the run's deadline (python -m benchmarks
--budget-min) is skipped and listed as such."""

from __future__ import annotations

import json
import math
import time

from benchmarks.common import row
from benchmarks.end_to_end import FULL_SIZES, QUICK_SIZES, notes, result_file, run_size
from store.settings import settings


def growth(ns, ts) -> list:
    """Growth exponent between consecutive sizes: log(t2/t1) / log(n2/n1) (1 = linear, 2 = quadratic)."""
    out = []
    for (n1, t1), (n2, t2) in zip(list(zip(ns, ts)), list(zip(ns, ts))[1:]):
        ok = all(isinstance(x, (int, float)) and x > 0 for x in (t1, t2)) and n2 != n1
        out.append(round(math.log(t2 / t1) / math.log(n2 / n1), 2) if ok else None)
    return out


def run(quick: bool = False) -> dict:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    biggest = sizes[-1]
    only = settings().bench_scaling_sizes  # e.g. "10000,50000": run only these smaller sizes
    wanted = {int(x) for x in only.split(",")} if only else set(sizes)
    deadline = settings().bench_deadline or float("inf")
    big = result_file(biggest, quick)
    runs, skipped = {}, []
    if big.is_file():
        runs[biggest] = json.loads(big.read_text())
    per_row_s = runs[biggest]["total_s"] / runs[biggest]["n_rows"] if runs else None
    for n in sizes[:-1]:
        if n not in wanted and not (settings().bench_reuse and result_file(n, quick).is_file()):
            skipped.append(n)
            continue
        # Fixed costs (SAE steps, UMAP compilation) do not shrink with n: estimate generously.
        estimate = 1.5 * (per_row_s * n + 0.3 * runs[biggest]["total_s"]) if per_row_s else 0
        if time.time() + estimate > deadline:
            skipped.append(n)
            continue
        runs[n] = run_size(n, quick)
    if not big.is_file() or biggest not in runs:
        skipped.append(biggest)
    order = sorted(runs)
    rs = [runs[n] for n in order]
    ns = [r["n_rows"] for r in rs]
    stage_names = list(dict.fromkeys(k for r in rs for k in r["stages"]))
    table_ = {}
    for st in stage_names + ["total"]:
        wall = [r["total_s"] if st == "total" else r["stages"].get(st) for r in rs]
        cpu = [r["total_cpu_s"] if st == "total" else r["stages_cpu_s"].get(st) for r in rs]
        table_[st] = dict(wall_s=wall, cpu_s=cpu, growth_wall=growth(ns, wall), growth_cpu=growth(ns, cpu))
    peak = [r["peak_rss_gib"] for r in rs]
    store = [r["store_mib"] for r in rs]
    sizes_s = ", ".join(f"{n // 1000}k" for n in order)
    rows = []
    for st, t in table_.items():
        g = ", ".join("–" if x is None else str(x) for x in t["growth_cpu"])
        rows.append(
            row(
                "4 scaling",
                f"'{st}' CPU s at n = {sizes_s} (growth exponents {g})",
                " / ".join(f"{x:.0f}" if x is not None else "–" for x in t["cpu_s"]),
            )
        )
    rows.append(
        row(
            "4 scaling",
            f"peak memory GiB at n = {sizes_s} (growth {', '.join(str(x) for x in growth(ns, peak))})",
            " / ".join(f"{x:.2f}" for x in peak),
        )
    )
    rows.append(row("4 scaling", f"store MiB at n = {sizes_s}", " / ".join(f"{x:.0f}" for x in store)))
    return dict(
        params=dict(sizes=list(sizes), measured=order, skipped=skipped, repeats=1),
        figures=dict(
            n_rows=ns,
            stages=table_,
            peak_rss_gib=peak,
            store_mib=store,
            runs={str(n): runs[n] for n in order if n != biggest},
        ),
        table=rows,
        notes=[
            "one run per size; repeats = 1; the largest size is the end_to_end benchmark's run",
            "growth exponent = log(t2/t1)/log(n2/n1) between consecutive sizes, of process CPU time "
            "(wall times, noisier on the shared machine, are in the figures): 1 = linear, "
            "2 = quadratic; fixed costs (SAE steps do not depend on n, numba compilation) pull "
            "exponents below 1 at small n",
        ]
        + ([f"skipped (would pass the run's time budget): {skipped}"] if skipped else [])
        + notes(),
    )
