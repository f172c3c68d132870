"""Shared harness pieces: timing statistics, interleaved repeats, peak-memory sampling, machine facts,
results files and the markdown table.

Timings on this shared machine are noisy, so every comparison is measured side by side in one process
with the repeats interleaved (baseline, pipeline, baseline, pipeline, ...) and reported as a ratio of
medians, with the min-max of each side."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import statistics
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from store.settings import settings

RESULTS_DIR = Path(__file__).parent / "results"
NO_GPU_NOTE = "no GPU machine was lent to this task; GPU figures not measured"


def bench_threads() -> int:
    """Threads for torch and BLAS/OpenMP pools in the benchmarks: LEXISCOPE_BENCH_THREADS, default 1. Other
    jobs share this machine's 2 cores; under oversubscription torch's 2 OpenMP threads were measured 9-35x
    slower than 1 thread (compute.sae.fit, 40 steps), so 1 thread gives steadier, fairer comparisons.
    0 = leave the libraries' defaults."""
    return settings().bench_threads


def work_dir() -> Path:
    """Scratch space for stores the benchmarks build (kept between runs: the dashboard benchmark reuses the
    400k end-to-end store). LEXISCOPE_BENCH_DIR overrides."""
    p = settings().bench_dir or Path.home() / ".cache" / "lexiscope-bench"
    p.mkdir(parents=True, exist_ok=True)
    return p


# ---------------------------------------------------------------- statistics


def stats(values, unit: str = "s") -> dict:
    """Median and min-max of repeated measurements, with the raw values."""
    values = [float(v) for v in values]
    if not values:
        return dict(median=None, min=None, max=None, n=0, unit=unit, values=[])
    return dict(
        median=statistics.median(values),
        min=min(values),
        max=max(values),
        n=len(values),
        unit=unit,
        values=[round(v, 6) for v in values],
    )


def ratio(numerator: dict, denominator: dict) -> float | None:
    """Ratio of two medians (e.g. baseline time / pipeline time)."""
    a, b = numerator.get("median"), denominator.get("median")
    if a is None or not b:
        return None
    return a / b


def interleaved(fns: dict, repeats: int, warmup: bool = True) -> dict:
    """Run each callable in turn, `repeats` rounds, alternating the order each round so neither side
    always runs second. Returns {name: [seconds, ...]}. Each fn may return extra info (kept in the last
    returned value under '_results'; process CPU seconds under '_cpu')."""
    names = list(fns)
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    results = {}
    if warmup:
        for n in names:
            results[n] = fns[n]()
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t0, c0 = time.perf_counter(), time.process_time()
            results[n] = fns[n]()
            times[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    times["_results"] = results
    times["_cpu"] = cpu  # process CPU time (all threads): steadier than wall time on a shared machine
    return times


# ---------------------------------------------------------------- memory


def rss_bytes() -> int:
    """Resident memory of this process and its children (a run's worker processes, compute/parallel.py)."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # ended between the listing and the reading
            pass
    return total


def ru_maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class PeakMemory:
    """Samples the RSS of this process and its children every `interval` s in a thread; `peak` is the largest seen, `mark()`
    starts a new window whose peak `window_peak()` returns (per-stage peaks)."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak = 0
        self._window = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self):
        r = rss_bytes()
        self.peak = max(self.peak, r)
        self._window = max(self._window, r)

    def mark(self) -> int:
        """End the current window; returns its peak and starts a new one."""
        self._sample()
        peak, self._window = self._window, rss_bytes()
        return peak

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


# ---------------------------------------------------------------- machine


def machine() -> dict:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(
        host=socket.gethostname(),
        cpu=cpu,
        cores_logical=os.cpu_count(),
        cores_physical=psutil.cpu_count(logical=False),
        cores_usable=len(os.sched_getaffinity(0)),
        ram_gib=round(psutil.virtual_memory().total / 2**30, 1),
        os=platform.platform(),
        load_avg_at_start=[round(x, 2) for x in os.getloadavg()],
    )


def gpu() -> dict:
    import torch

    if torch.cuda.is_available():
        return dict(available=True, name=torch.cuda.get_device_name(0))
    return dict(available=False, name=None, note=NO_GPU_NOTE)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "lexiscope",
        "torch",
        "numpy",
        "scipy",
        "scikit-learn",
        "transformers",
        "umap-learn",
        "pynndescent",
        "h5py",
        "dash",
        "selenium",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


# ---------------------------------------------------------------- results


def default_results_path(quick: bool) -> Path:
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    host = socket.gethostname().split(".")[0] or "host"
    return RESULTS_DIR / f"{day}-{host}{'-quick' if quick else ''}.json"


def load_results(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    return {}


def save_results(path: Path, results: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def row(
    benchmark: str,
    measure: str,
    pipeline,
    baseline=None,
    ratio_=None,
    target: str = "",
    met: bool | None = None,
    unit: str = "",
) -> dict:
    """One line of the summary table."""
    return dict(
        benchmark=benchmark,
        measure=measure,
        pipeline=pipeline,
        baseline=baseline,
        ratio=ratio_,
        target=target,
        met=met,
        unit=unit,
    )


TABLE_COLUMNS = ("benchmark", "measure", "pipeline", "baseline", "ratio", "target", "met")


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.01:
            return f"{v:.3g}"
        return f"{v:.2e}"
    return str(v)


def markdown_table(results: dict) -> str:
    """All benchmarks' rows as one markdown table (pipeline/baseline in the row's unit; ratio = the
    pipeline's advantage, > 1 is better)."""
    lines = [
        "| benchmark | measure | lexiscope | baseline | ratio | target | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name, bench in results.get("benchmarks", {}).items():
        if bench.get("status") != "ok":
            lines.append(f"| {name} | {bench.get('status')}: {bench.get('error', '')[:80]} | | | | | |")
            continue
        for r in bench.get("table", []):
            unit = f" {r['unit']}" if r.get("unit") else ""
            p = _fmt(r["pipeline"]) + (unit if r["pipeline"] is not None and not isinstance(r["pipeline"], str) else "")
            b = _fmt(r["baseline"]) + (unit if r["baseline"] is not None and not isinstance(r["baseline"], str) else "")
            ratio_s = _fmt(r["ratio"]) + ("×" if isinstance(r["ratio"], (int, float)) else "")
            lines.append(
                f"| {r['benchmark']} | {r['measure']} | {p} | {b} | {ratio_s} | {r['target']} | "
                f"{_fmt(r['met']) if r['met'] is not None else ''} |"
            )
    return "\n".join(lines)


def chromium(timeout_s: int = 300, performance_log: bool = False):
    """A headless Chromium (Debian's chromium and chromium-driver) for the browser benchmarks."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.remote.remote_connection import RemoteConnection

    RemoteConnection.set_timeout(timeout_s)
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for a in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        opts.add_argument(a)
    if performance_log:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(executable_path="/usr/bin/chromedriver", options=opts)


def bench_thread_limits():
    """A context that holds torch and BLAS/OpenMP to $LEXISCOPE_BENCH_THREADS threads (none set: as they are)."""
    import contextlib

    threads = bench_threads()
    if not threads:
        return contextlib.nullcontext()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    return threadpool_limits(limits=threads)


@contextmanager
def torch_threads(n: int | None):
    """Run a block with n torch intra-op threads (None: leave as is)."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def readme_section(results: dict, results_path: Path) -> str:
    """The README's "Performance" section for a results file: the command, the machine, the table."""
    m, v = results.get("machine", {}), results.get("versions", {})
    gpu = results.get("gpu", {})
    try:
        rel = results_path.resolve().relative_to(RESULTS_DIR.parent.parent.resolve())
    except ValueError:
        rel = results_path
    lines = [
        "## Performance",
        "",
        "Reproduce with `python -m benchmarks` (about an hour on these 2 shared cores; scaling sizes that would "
        "end after `--budget-min` minutes, default 55, are skipped and can be added later with "
        "`python -m benchmarks --only scaling`; `--quick` takes under 3 minutes; `--only NAME` runs one of "
        "end_to_end, dashboard, extraction, geometry, sae, sae_archs, first_light, scaling). Every figure, with the median and min–max "
        f"of its repeats, is in [`{rel}`]({rel}).",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores_logical')} logical cores, {m.get('ram_gib')} GiB RAM; "
        f"Python {v.get('python')}, torch {v.get('torch')}, numpy {v.get('numpy')}, "
        f"transformers {v.get('transformers')}, umap-learn {v.get('umap-learn')}; "
        f"{'GPU: ' + str(gpu.get('name')) if gpu.get('available') else gpu.get('note', 'no GPU')}.",
        "",
        "The machine was shared with other jobs while it ran, so absolute times are noisy; each comparison "
        "was measured side by side in one process with the repeats interleaved, and the ratio (lexiscope's "
        "advantage, > 1 is better) is the figure to read.",
        "",
        results.get("table_markdown") or markdown_table(results),
        "",
    ]
    return "\n".join(lines)
