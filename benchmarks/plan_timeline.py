"""Where a run's wall time goes when its pieces run in worker processes (compute/parallel.py): every stage of
the run's own process and every piece a worker ran, with start, end and CPU seconds, on one clock. The stages
come from the progress callback (a stage lasts until the next one starts); the pieces from a wrapper around
Pieces.submit that each worker runs.

    python -m benchmarks.plan_timeline [--run minilm-l6] [--store DIR] --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import save_results

_LOG = "BENCH_TIMELINE_LOG"  # the JSON-lines file the workers append their pieces to


def timed(fn, *args, **kwargs):
    """In a worker: fn(*args, **kwargs), logged with its wall and CPU time."""
    t0, c0 = time.time(), time.process_time()
    try:
        return fn(*args, **kwargs)
    finally:
        with open(os.environ[_LOG], "a") as f:
            record = dict(piece=fn.__qualname__, pid=os.getpid(), t0=t0, t1=time.time(), cpu=time.process_time() - c0)
            f.write(json.dumps(record) + "\n")


def run(name: str, store: Path) -> dict:
    from compute import parallel, pipeline
    from compute.config import load_plan
    from compute.progress import Progress

    log = store / "timeline.jsonl"
    os.environ[_LOG] = str(log)  # inherited by the spawned workers
    submit = parallel.Pieces.submit
    parallel.Pieces.submit = lambda self, fn, *a, **k: submit(self, timed, fn, *a, **k)
    stages, current = [], {}

    def callback(label, _fraction):
        now = time.time()
        if current.get("label") != label:
            if current:
                stages.append(
                    dict(stage=current["label"], t0=current["t0"], t1=now, cpu=time.process_time() - current["c0"])
                )
            current.update(label=label, t0=now, c0=time.process_time())

    cfg = next(r for r in load_plan().runs if r.name == name)
    start = time.time()
    try:
        pipeline.precompute_run(cfg, store=store, device="cpu", progress=Progress(callback, show=False))
    finally:
        parallel.Pieces.submit = submit
    callback("end", 1.0)
    pieces = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    rows = sorted(
        [dict(what=s["stage"], where="run", **{k: s[k] for k in ("t0", "t1", "cpu")}) for s in stages]
        + [dict(what=p["piece"], where=f"worker {p['pid']}", **{k: p[k] for k in ("t0", "t1", "cpu")}) for p in pieces],
        key=lambda r: r["t0"],
    )
    for r in rows:
        r.update(
            start_s=round(r.pop("t0") - start, 1), end_s=round(r.pop("t1") - start, 1), cpu_s=round(r.pop("cpu"), 1)
        )
    cpu: dict[str, float] = {}
    for r in rows:
        key = "run's process" if r["where"] == "run" else r["what"]
        cpu[key] = round(cpu.get(key, 0.0) + r["cpu_s"], 1)
    return dict(
        run=name, wall_s=round(time.time() - start, 1), cpu_s=cpu, cpu_total_s=round(sum(cpu.values()), 1), rows=rows
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="minilm-l6", help="a run of the default plan, by name")
    ap.add_argument("--store", type=Path, default=None, help="an empty store folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="lexiscope-timeline-"))
    try:
        res = run(args.run, store)
    finally:
        if args.store is None:
            shutil.rmtree(store, ignore_errors=True)
    for r in res["rows"]:
        print(f"{r['start_s']:7.1f} {r['end_s']:7.1f}  cpu {r['cpu_s']:6.1f}  {r['where']:<14} {r['what']}")
    print(json.dumps(res["cpu_s"]), "total", res["cpu_total_s"], "wall", res["wall_s"])
    if args.out:
        save_results(args.out, res)


if __name__ == "__main__":
    main()
