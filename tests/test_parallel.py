"""compute/parallel.py: a run's pieces in worker processes give the same store as in-process, errors come back,
and no worker outlives its run (an error, a cancelled job, a killed parent)."""

import json
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import psutil
import pytest

from compute import parallel, pipeline, projections
from compute.config import ProjectionConfig, RunConfig, VocabularyConfig
from compute.pipeline import LayerInput
from store.schema import ENHANCED, GEOMETRY


def _fail(message):
    raise ValueError(message)


def _sleep(seconds):
    time.sleep(seconds)
    return seconds


def _workers(pid=None) -> list:
    """The pool's worker processes (not multiprocessing's resource tracker, which outlives pools by design)."""
    return [c for c in psutil.Process(pid).children() if "resource_tracker" not in " ".join(c.cmdline())]


def test_a_piece_error_comes_back_and_the_workers_stop():
    with pytest.raises(ValueError, match="bad piece"), parallel.Pieces(2) as pieces:
        pending = pieces.submit(_fail, "bad piece")
        slow = pieces.submit(_sleep, 60)
        children = _workers()
        assert len(children) == 2
        pending.get()
    assert slow is not None
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "workers outlived the run"
    with parallel.Pieces(1) as here:
        with pytest.raises(ValueError, match="in-process"):
            here.submit(_fail, "in-process").get()
        assert here.submit(_sleep, 0).get() == 0


def test_this_process_takes_the_idle_cores_only_once_its_pieces_are_done():
    import torch

    threads = torch.get_num_threads()
    with parallel.Pieces(2) as pieces:
        slow, quick = pieces.submit(_sleep, 1.5), pieces.submit(_sleep, 0)
        widen = pieces.widen_when_done([slow, None])
        widen()
        assert torch.get_num_threads() == 1  # a worker still runs a piece: one thread here
        slow.get()
        widen()
        assert torch.get_num_threads() == 2  # both workers idle: as many threads as workers
        pieces.narrow()
        assert torch.get_num_threads() == 1
        assert quick.get() == 0
    assert torch.get_num_threads() == threads  # restored when the workers stop
    with parallel.Pieces(1) as here:  # no workers: nothing to widen or narrow
        here.widen_when_done([here.submit(_sleep, 0)])()
        here.narrow()
        assert torch.get_num_threads() == threads


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from compute import parallel
        from tests.test_parallel import _sleep
        with parallel.Pieces(2) as pieces:
            pending = [pieces.submit(_sleep, 300) for _ in range(2)]
            print("ready", flush=True)
            time.sleep(300)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        workers = _workers(parent.pid)
        assert len(workers) == 2
        parent.kill()
        parent.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, "a worker outlived its killed parent"
    finally:
        parent.kill()


def _layers(n=400, d=16, n_layers=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    out = []
    for _ in range(n_layers):
        X = 0.9 * X + 0.3 * rng.normal(size=X.shape)
        out.append(X.astype(np.float32))
    return out


def _maps(processes: int, monkeypatch) -> dict:
    monkeypatch.setenv("LEXISCOPE_PROCESSES", str(processes))
    cfg = RunConfig(
        model="minilm-l6",
        vocabulary=VocabularyConfig(top_n=400),
        projections=ProjectionConfig(n_neighbors=10, umap_epochs=20),
        sae=None,
    )
    inputs = [LayerInput(layer, X) for layer, X in enumerate(_layers())]
    n = len(inputs[0].X)
    vocab = SimpleNamespace(words=[f"w{i}" for i in range(n)], zipf=np.linspace(7, 2, n), langs=["en"] * n)
    out = {}
    with parallel.Pieces() as pieces:
        assert pieces.processes == processes
        aligned = pipeline.submit_pieces(cfg, inputs, pieces)
        pipeline.submit_analyses(cfg, inputs, pieces, "cpu", vocab)
        for item in inputs:
            for pending in item.maps + [item.analysis]:
                out.update({(item.layer, k): v for k, v in pending.get().items()})
        for pending in aligned:
            for layer, maps in pending.get().items():
                out.update({(layer, k): v for k, v in maps.items()})
        if processes > 1:
            assert len(_workers()) == processes
    return out


def _close(a, b) -> bool:
    """Attribute values (nested dicts, lists, JSON strings, numbers) equal up to float rounding."""
    if isinstance(a, str) and a[:1] in "[{":
        a, b = json.loads(a), json.loads(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return b == pytest.approx(a, rel=1e-5, abs=1e-6, nan_ok=True)
    return a == b


def test_word_maps_from_workers_equal_the_in_process_maps(monkeypatch):
    """Every per-layer and aligned map and every layer's geometry, enhancement and word-similarity output of a
    3-layer run, computed in 2 workers and in-process: the same (the maps bit for bit)."""
    here, workers = _maps(1, monkeypatch), _maps(2, monkeypatch)
    assert set(here) == set(workers)
    assert {
        "projections/umap3d",
        "projections/umap2d",
        "projections/aligned/umap3d",
        "projections/aligned/umap2d",
        GEOMETRY.mean,
        ENHANCED.neighbors.indices,
    } <= {k for _, k in here}
    for key in here:
        a, b = here[key], workers[key]
        if key[1].startswith("projections/") or (isinstance(a, np.ndarray) and a.dtype.kind in "iub"):
            np.testing.assert_array_equal(a, b, err_msg=str(key))
        elif isinstance(a, np.ndarray):  # k-means' sums differ in the last bits with the thread count
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(key))
        else:
            assert _close(a, b), key
    # ... and each layer's own maps equal those compute.projections makes in one call for all the dims
    cfg = ProjectionConfig(n_neighbors=10, umap_epochs=20)
    for layer, X in enumerate(_layers()):
        ref = projections.projections_output(X, cfg)
        for path in ("projections/umap3d", "projections/umap2d"):
            np.testing.assert_array_equal(workers[(layer, path)], ref[path], err_msg=f"{layer} {path}")


def test_a_cancel_while_a_piece_runs_stops_its_workers():
    """parallel.result keeps calling the progress tick while it waits, so a cancelled job's callback raises there,
    within about a second, and leaving Pieces ends the worker in the middle of its piece."""
    from compute.progress import Cancelled

    ticks = []

    def tick():
        ticks.append(time.monotonic())
        if len(ticks) == 3:
            raise Cancelled("job x was cancelled")

    start = time.monotonic()
    with pytest.raises(Cancelled), parallel.Pieces(2) as pieces:
        pending = pieces.submit(_sleep, 120)
        children = _workers()
        parallel.result(pending, tick, every=0.5)
    assert time.monotonic() - start < 30
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "a worker outlived its cancelled run"
    assert parallel.result(parallel.Pieces(1).submit(_sleep, 0), tick) == 0


def test_sts_scored_by_a_worker_equals_the_in_process_scores(sts_dir, tmp_path):
    """A contextual run's STS is a piece that loads the model in the worker (during the extraction): the same
    stored scores as in the run's own process."""
    import csv

    from compute import contextual, sts
    from compute.config import STSConfig

    with open(sts_dir / "stsb-en-test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[:40]
    with open(tmp_path / "stsb-en-test.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    cfg = RunConfig(model="minilm-l6", sts=STSConfig(path=str(tmp_path), languages=["en"], split="test"))
    with parallel.Pieces(2) as pieces:
        pending = pieces.submit(sts.contextual_piece, cfg, [0, 6])
        tokenizer, model = contextual.load_transformer(cfg.model, "cpu")
        here = sts.contextual_outputs(tokenizer, model, cfg, [0, 6])
        worker = pending.get()
    assert set(here) == set(worker) == {0, 6}
    for layer in here:
        assert set(here[layer]) == set(worker[layer])
        for key, value in here[layer].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_allclose(worker[layer][key], value, rtol=1e-5, err_msg=key)
            else:
                assert worker[layer][key] == value, key
