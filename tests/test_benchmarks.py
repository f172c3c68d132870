"""The benchmark harness must not rot: run `python -m benchmarks --quick` once and check the results file
and the printed table (structure and internal consistency only; no timing assertions)."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compute import pipeline

REPO = Path(__file__).resolve().parents[1]
# The harness check runs these in quick mode (their figures are cross-checked below); every other registered
# benchmark is checked to import and to take `quick`, so the suite stays short.
NAMES = ["end_to_end", "dashboard", "extraction", "geometry", "sae", "scaling"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "quick.json"
    env = dict(os.environ, LEXISCOPE_BENCH_DIR=str(tmp / "work"), TQDM_DISABLE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", *NAMES, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def _is_stats(s):
    return isinstance(s, dict) and {"median", "min", "max", "n", "values"} <= set(s)


@pytest.mark.slow
def test_results_file_describes_the_machine(quick_run):
    res, _ = quick_run
    assert res["quick"] is True
    assert res["machine"]["cores_logical"] >= 1 and res["machine"]["ram_gib"] > 0 and res["machine"]["cpu"]
    assert res["gpu"]["available"] in (True, False)
    if not res["gpu"]["available"]:
        assert "not measured" in res["gpu"]["note"]
    for pkg in ("python", "torch", "numpy", "transformers", "umap-learn", "lexiscope"):
        assert res["versions"][pkg], pkg
    assert list(res["benchmarks"]) == NAMES
    for name, b in res["benchmarks"].items():
        assert b["status"] == "ok", (name, b.get("error"))
        assert b["table"], name


@pytest.mark.slow
def test_every_timing_is_a_median_within_its_range(quick_run):
    res, _ = quick_run

    def walk(node):
        if _is_stats(node):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from walk(v)

    found = list(walk(res["benchmarks"]))
    assert len(found) >= 10
    for s in found:
        assert s["n"] == len(s["values"]) >= 1
        assert s["min"] <= s["median"] <= s["max"]
        assert math.isclose(s["median"], statistics.median(s["values"]), rel_tol=1e-4)


@pytest.mark.slow
def test_ratios_follow_from_the_figures(quick_run):
    res, _ = quick_run
    ex = res["benchmarks"]["extraction"]
    f, p = ex["figures"], ex["params"]
    assert math.isclose(f["speedup"], f["naive_s"]["median"] / f["pipeline_s"]["median"], rel_tol=1e-9)
    tps = [p["tokens"] / t for t in f["pipeline_s"]["values"]]
    assert math.isclose(f["pipeline_tokens_per_s"]["median"], statistics.median(tps), rel_tol=1e-3)
    assert f["max_abs_diff_vs_naive"] < 1e-3  # both sides computed the same word vectors

    geo = res["benchmarks"]["geometry"]["figures"]
    for part in ("glove", "tokens"):
        g = geo[part]
        assert math.isclose(g["i_pc_speedup_vs_paper"], g["paper_i_pc_s"]["median"] / g["i_pc_s"]["median"])
        assert g["i_pc_finite"] and 0 < g["i_pc"] <= 1
    # Ours takes min/max over u and -u, so it can only be smaller than (or equal to) the paper's value.
    assert geo["glove"]["i_pc"] <= geo["glove"]["paper_i_pc"] + 1e-9

    sae = res["benchmarks"]["sae"]["figures"]
    full = sae["full_training"]
    assert full["pipeline_time_to_target_s"] <= full["pipeline_s"] + 1e-6
    assert 0 <= full["pipeline_eval_fvu"] < 1.5 and 0 <= sae["sklearn"]["fvu"] < 1.5
    assert sae["sklearn"]["l0"] <= res["benchmarks"]["sae"]["params"]["k"]

    e2e = res["benchmarks"]["end_to_end"]["figures"]["run"]
    assert e2e["n_rows"] >= e2e["n_requested"] * 0.9
    assert e2e["peak_rss_gib"] > 0 and e2e["store_mib"] > 0
    assert sum(e2e["stages"].values()) <= e2e["total_s"] * 1.05 + 1
    assert {pipeline.WORD_STAGE, "projections", "sae", "write"} <= set(e2e["stages"])

    sc = res["benchmarks"]["scaling"]["figures"]
    assert len(sc["n_rows"]) == 2 and sc["n_rows"][-1] == e2e["n_rows"]
    total = sc["stages"]["total"]
    (n1, n2), (c1, c2) = sc["n_rows"], total["cpu_s"]
    assert math.isclose(total["growth_cpu"][0], math.log(c2 / c1) / math.log(n2 / n1), abs_tol=0.01)

    dash = res["benchmarks"]["dashboard"]["figures"]["server"]["callbacks"]
    assert any(k.startswith("page /words") for k in dash)
    for name, c in dash.items():
        assert c["status"] in (200, 204) and not c["errors"], name
        assert c["p50_ms"] <= c["p95_ms"] <= c["max_ms"]


def test_paper_i_pc_matches_a_direct_computation():
    from benchmarks.geometry import paper_i_pc

    rng = np.random.default_rng(0)
    half = rng.normal(size=(150, 4)) * [3, 1, 0.5, 0.2]
    W = np.vstack([half, -half])  # symmetric cloud: F(u) = F(-u), so eigenvector signs do not matter
    evals, vecs = np.linalg.eigh(W.T @ W)
    F = [np.exp(W @ vecs[:, i]).sum() for i in range(4)]
    assert math.isclose(float(np.real(paper_i_pc(W))), min(F) / max(F), rel_tol=1e-9)


@pytest.mark.slow
def test_printed_table_lists_every_row(quick_run):
    res, stdout = quick_run
    lines = [l for l in stdout.splitlines() if l.startswith("| ")]
    n_rows = sum(len(b["table"]) for b in res["benchmarks"].values())
    assert lines[0].startswith("| benchmark | measure |")
    assert len(lines) == n_rows + 1  # header + rows (the separator starts with "|---")
    assert res["table_markdown"].count("\n") == n_rows + 1


def test_every_registered_benchmark_imports_and_takes_quick():
    import importlib
    import inspect

    from benchmarks.__main__ import BENCHMARKS

    assert set(NAMES) <= set(BENCHMARKS)
    for name, module in BENCHMARKS.items():
        run = importlib.import_module(module).run
        assert "quick" in inspect.signature(run).parameters, name
