"""The store contract: atomic writes, lazy fork-safe reads, and a catalog that survives bad files."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from store import SCHEMA_VERSION, Catalog, Run, RunWriter, StoreError
from store.schema import run_path, runs_dir


def write_run(root, run_id, n=50, d=8, seed=0, **extra):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    words = [f"w{i}é" for i in range(n)]
    acts = sp.random(n, 16, density=0.1, format="csr", random_state=seed, dtype=np.float32)
    with RunWriter(root, run_id, model="test-model", layer=extra.get("layer", 0), n_layers=1, source="static",
                   config={"model": "test-model", "seed": seed}, config_hash=f"hash{seed}") as w:
        w.write_all({"words/text": words, "words/zipf": np.linspace(1, 7, n).astype(np.float32),
                     "words/group": np.full(n, -1, np.int16), "groups/names": ["animals"],
                     "embeddings": X, "geometry": {"i_cos": 0.25, "top3_dims": [1, 2, 3]},
                     "sae/acts": acts, "sae": {"arch": "topk", "d_sae": 16}})
    return X, words, acts


def test_roundtrip_matches_what_was_written(tmp_path):
    X, words, acts = write_run(tmp_path, "r1", n=3000, d=32)
    run = Run(run_path(tmp_path, "r1"))
    assert run.attrs["schema_version"] == SCHEMA_VERSION and run.config == {"model": "test-model", "seed": 0}
    np.testing.assert_array_equal(run.array("embeddings"), X)
    assert list(run.words["text"]) == words
    assert run.index_of("w7é") == 7
    with pytest.raises(KeyError, match="not in the vocabulary"):
        run.index_of("nope")
    np.testing.assert_array_equal(run.rows("embeddings", [5, 2, 5, 2999]), X[[5, 2, 5, 2999]])
    assert (run.csr("sae/acts") != acts).nnz == 0
    np.testing.assert_allclose(run.csc("sae/acts")[:, 3].toarray(), acts[:, 3].toarray())
    assert run.attrs_of("geometry") == {"i_cos": 0.25, "top3_dims": [1, 2, 3]}
    # Large arrays are chunked and compressed; small ones are not.
    with h5py.File(run.path) as f:
        assert f["embeddings"].compression == "gzip" and f["embeddings"].chunks[1] == 32
        assert f["words/group"].compression is None


def test_failed_writer_leaves_nothing(tmp_path):
    write_run(tmp_path, "good")
    with pytest.raises(RuntimeError):
        with RunWriter(tmp_path, "bad", model="m", layer=0, n_layers=1, source="static", config={},
                       config_hash="h") as w:
            w.put("embeddings", np.zeros((4, 4), np.float32))
            raise RuntimeError("stage crashed")
    assert sorted(os.listdir(runs_dir(tmp_path))) == ["good.h5"]
    assert Catalog(tmp_path).run_ids() == ["good"]


def test_killed_writer_leaves_catalog_unchanged(tmp_path):
    write_run(tmp_path, "good")
    before = Catalog(tmp_path).table()
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import time, numpy as np
        from store import RunWriter
        with RunWriter({str(tmp_path)!r}, "half", model="m", layer=0, n_layers=1, source="static",
                       config={{}}, config_hash="h") as w:
            w.put("embeddings", np.ones((20000, 64), np.float32))
            w.f.flush()
            open({str(ready)!r}, "w").close()
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not ready.exists():
        assert time.time() < deadline and proc.poll() is None, "writer did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in os.listdir(runs_dir(tmp_path)) if p.startswith(".tmp-")]
    assert leftovers, "the killed writer's temporary file should still be on disk"
    after = Catalog(tmp_path).table()
    assert list(after["run_id"]) == list(before["run_id"]) == ["good"]


def test_truncated_file_is_skipped_and_named(tmp_path, caplog):
    write_run(tmp_path, "good")
    write_run(tmp_path, "broken", n=4000, d=64, seed=1)
    path = run_path(tmp_path, "broken")
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    cat = Catalog(tmp_path)
    assert cat.run_ids() == ["good"]
    assert "broken.h5" in cat.errors["broken"]
    assert "broken.h5" in caplog.text
    with pytest.raises(StoreError, match="broken.h5"):
        cat.open("broken")
    assert cat.open("good").array("embeddings").shape == (50, 8)


def test_unknown_schema_version_is_a_clear_error(tmp_path):
    write_run(tmp_path, "future")
    with h5py.File(run_path(tmp_path, "future"), "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema_version 99"):
        Run(run_path(tmp_path, "future")).attrs
    cat = Catalog(tmp_path)
    assert cat.run_ids() == [] and "schema_version 99" in cat.errors["future"]


def test_catalog_sees_runs_that_land_later(tmp_path):
    cat = Catalog(tmp_path)
    assert cat.table().empty
    write_run(tmp_path, "first")
    assert cat.run_ids() == ["first"]
    write_run(tmp_path, "second", seed=2)
    assert sorted(cat.run_ids()) == ["first", "second"]
    assert cat.find_hash("hash2") == "second"
    os.remove(run_path(tmp_path, "first"))
    assert cat.run_ids() == ["second"]


def _child_reads(run, q):
    q.put(float(run.array("embeddings", cache=False).sum()))


def test_reader_reopens_after_fork(tmp_path):
    X, _, _ = write_run(tmp_path, "r")
    run = Run(run_path(tmp_path, "r"))
    parent_handle = run.file
    assert run.array("embeddings").shape == X.shape
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_reads, args=(run, q))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert q.get(timeout=5) == pytest.approx(float(X.sum()), rel=1e-5)
    assert run.file is parent_handle  # the parent's handle was not replaced
