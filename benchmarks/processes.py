"""One run of the default plan computed in one process and with worker processes (compute/parallel.py), side by
side: each from a clean store, in its own subprocess, alternating, `--repeats` times each. Reports wall time and
the per-stage waits of the main process. The results are the same both ways (tests/test_parallel.py).

    python -m benchmarks.processes [--run glove-20k] [--words N] [--repeats 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import save_results


def _one(run_name: str, words: int | None, out: Path):
    from compute.config import load_plan
    from compute.pipeline import precompute_run
    from compute.progress import Progress

    cfg = next(r for r in load_plan().runs if r.name == run_name)
    if words:
        cfg = cfg.model_copy(update={"vocabulary": cfg.vocabulary.model_copy(update={"top_n": words})})
    stages = {}

    def on(label, frac):
        t = time.perf_counter()
        s = stages.setdefault(label, [t, t])
        s[1] = t

    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as store:
        precompute_run(cfg, store=store, device="cpu", force=True, progress=Progress(on, show=False))
    out.write_text(
        json.dumps(
            dict(
                wall_s=round(time.perf_counter() - t0, 1),
                main_cpu_s=round(time.process_time() - c0, 1),
                stages_s={k: round(v[1] - v[0], 1) for k, v in stages.items() if v[1] - v[0] >= 0.5},
            )
        )
    )


def run(run_name: str = "glove-20k", words: int | None = None, repeats: int = 1, processes: int = 0) -> dict:
    from compute.parallel import usable_cores

    n = processes or usable_cores()
    res = {"run": run_name, "words": words, "repeats": repeats, "1 process": [], f"{n} processes": []}
    for _ in range(repeats):
        for label, p in (("1 process", 1), (f"{n} processes", n)):
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                cmd = [sys.executable, "-m", "benchmarks.processes", "--worker", f.name, "--run", run_name]
                if words:
                    cmd += ["--words", str(words)]
                env = {**os.environ, "LEXISCOPE_PROCESSES": str(p)}
                subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
                res[label].append(json.loads(Path(f.name).read_text()))
            print(f"[processes] {label}: {res[label][-1]['wall_s']} s", file=sys.stderr, flush=True)
    one = min(r["wall_s"] for r in res["1 process"])
    many = min(r["wall_s"] for r in res[f"{n} processes"])
    res["speedup_best_of_each"] = round(one / many, 2)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", type=Path, default=None)
    ap.add_argument("--run", default="glove-20k", help="a run name of the default plan")
    ap.add_argument("--words", type=int, default=None, help="vocabulary top_n instead of the plan's")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.worker:
        _one(args.run, args.words, args.worker)
        return
    res = run(args.run, args.words, args.repeats)
    if args.out:
        save_results(args.out, res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
