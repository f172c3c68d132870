"""python -m benchmarks [--quick] [--only NAME ...] [--out PATH]

Runs the benchmarks, prints a markdown table and writes benchmarks/results/<date>-<host>.json (the quick
run writes <date>-<host>-quick.json). With --only, the other benchmarks' entries already in that file are
kept, so a results file can be completed one benchmark at a time. `browser` (the word map in headless Chromium,
beside a baseline worktree) runs only when named: `python -m benchmarks --only browser`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from benchmarks import common

BENCHMARKS = {  # name -> module, in run order: the long 400k run first (the dashboard needs its store),
    "end_to_end": "benchmarks.end_to_end",  # the scaling sizes last, within the time budget
    "dashboard": "benchmarks.dashboard",
    "extraction": "benchmarks.extraction",
    "geometry": "benchmarks.geometry",
    "sae": "benchmarks.sae",
    "sae_archs": "benchmarks.sae_archs",
    "layers": "benchmarks.layers",
    "layer_stack": "benchmarks.layer_stack",  # issue 14 in the pipeline: steadiness, stage share, Layers page
    "contexts": "benchmarks.contexts",
    "first_light": "benchmarks.first_light",  # `lexiscope demo` on a clean store (issue 17, target 1)
    "scaling": "benchmarks.scaling",
    "plan_profile": "benchmarks.plan_profile",  # the default plan stage by stage, before / after
    "map_quality": "benchmarks.map_quality",  # UMAP settings: time and trustworthiness
    "feature_memory": "benchmarks.feature_memory",  # SAE feature statistics' peak memory at 400k
    "browser": "benchmarks.browser",
}
ON_REQUEST = {"browser"}  # run only when named with --only (it needs a baseline worktree and ~1 h)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes; finishes in under 3 minutes")
    ap.add_argument(
        "--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME", help=f"run only these ({', '.join(BENCHMARKS)})"
    )
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/...)")
    ap.add_argument("--fresh", action="store_true", help="do not keep other benchmarks' entries from --out")
    ap.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="scaling skips sizes that would end after this many minutes (default: 55, quick: none)",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=[],
        metavar="JSON",
        help="take these results files' benchmark entries into --out (runs nothing unless --only)",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="end_to_end/scaling: take a size's figures from a worker's result file in the work dir "
        "when there is one, instead of running it again",
    )
    args = ap.parse_args(argv)
    if args.reuse:
        os.environ["LEXISCOPE_BENCH_REUSE"] = "1"

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    budget = args.budget_min if args.budget_min is not None else (None if args.quick else 55.0)
    if budget:
        os.environ["LEXISCOPE_BENCH_DEADLINE"] = str(time.time() + 60 * budget)
    out = args.out or common.default_results_path(args.quick)
    results = {} if args.fresh else common.load_results(out)
    results.update(
        schema=1,
        quick=args.quick,
        updated=common.now_iso(),
        command="python -m benchmarks" + (" --quick" if args.quick else ""),
        machine=common.machine(),
        gpu=common.gpu(),
        versions=common.versions(),
    )
    benches = results.setdefault("benchmarks", {})
    for other in args.merge:
        merged = common.load_results(other).get("benchmarks", {})
        if not merged:
            print(f"[benchmarks] {other}: no benchmarks to merge", file=sys.stderr)
        benches.update(merged)
    results["benchmarks"] = {k: benches[k] for k in BENCHMARKS if k in benches}
    benches = results["benchmarks"]
    names = args.only or ([] if args.merge else [n for n in BENCHMARKS if n not in ON_REQUEST])
    failed = False
    for name in names:
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            entry = dict(status="ok", **module.run(quick=args.quick))
        except Exception as e:  # one failing benchmark must not lose the others' figures
            failed = True
            entry = dict(
                status="error",
                error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                traceback=traceback.format_exc(limit=6),
            )
            print(entry["traceback"], file=sys.stderr)
        entry.update(wall_s=round(time.perf_counter() - t0, 2), measured=common.now_iso(), quick=args.quick)
        benches[name] = entry
        results["benchmarks"] = {k: benches[k] for k in BENCHMARKS if k in benches}
        common.save_results(out, results)
        print(f"[benchmarks] {name}: {entry['status']} in {entry['wall_s']:.1f} s", file=sys.stderr, flush=True)
    results["table_markdown"] = common.markdown_table(results)
    common.save_results(out, results)
    if not args.quick and args.out is None:
        section = Path(__file__).parent / "README_SECTION.md"
        section.write_text(common.readme_section(results, out))
        print(f"README section: {section}", file=sys.stderr)
    print(results["table_markdown"])
    print(f"\n{common.NO_GPU_NOTE if not results['gpu']['available'] else 'GPU: ' + results['gpu']['name']}")
    print(f"results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
