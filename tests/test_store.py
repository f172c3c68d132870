"""The store contract: atomic writes, lazy fork-safe reads, and a catalog that survives bad files."""

import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
    with RunWriter(
        root,
        run_id,
        model="test-model",
        layer=extra.get("layer", 0),
        n_layers=1,
        source="static",
        config={"model": "test-model", "seed": seed},
        config_hash=f"hash{seed}",
    ) as w:
        w.write_all(
            {
                "words/text": words,
                "words/zipf": np.linspace(1, 7, n).astype(np.float32),
                "words/group": np.full(n, -1, np.int16),
                "groups/names": ["animals"],
                "embeddings": X,
                "geometry": {"i_cos": 0.25, "top3_dims": [1, 2, 3]},
                "sae/acts": acts,
                "sae": {"arch": "topk", "d_sae": 16},
            }
        )
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
        with RunWriter(
            tmp_path, "bad", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="h"
        ) as w:
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
    table = cat.table()  # the dashboard's copy: changing it leaves the catalog's table as it was
    table.loc[0, "run_id"] = "changed"
    assert cat.run_ids() == ["second"]
    write_run(tmp_path, "second", n=60, seed=3)  # rewritten in place: its row is read again
    assert cat.table().loc[0, "n_words"] == 60


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


# -- the schema in code and docs/store.md ------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "store.md"


def _doc_tables() -> list[list[list[str]]]:
    """Rows (lists of cells) of every table in docs/store.md whose first header cell is `path`."""
    tables, rows, inside = [], None, False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not inside:
            inside, rows = True, []
            if cells[0] == "path":
                tables.append(rows)
            continue
        if not set(cells[0]) <= set("-: "):
            rows.append(cells)
    return tables


def _expand(path: str) -> list[str]:
    """`/sae/acts/{indptr,data}` -> ['sae/acts/indptr', 'sae/acts/data']; `/` stays `/`."""
    m = re.search(r"\{([^}]*)\}", path)
    if m:
        return [
            p for part in m.group(1).split(",") for p in _expand(path[: m.start()] + part.strip() + path[m.end() :])
        ]
    return ["/" if path == "/" else path.lstrip("/")]


def _doc_paths() -> set[str]:
    out = set()
    for rows in _doc_tables():
        for cells in rows:
            for token in re.findall(r"`([^`]+)`", cells[0]):
                if token.startswith("/"):
                    out.update(_expand(token))
    return out


def test_doc_and_schema_name_the_same_paths():
    from store import schema

    doc, code = _doc_paths(), set(schema.all_paths())
    assert len(code) == len(schema.all_paths()), "the schema names a path twice"
    assert sorted(code - doc) == [], "named in store/schema.py but not in docs/store.md's tables"
    assert sorted(doc - code) == [], "in docs/store.md's tables but not named in store/schema.py"
    # A sample of paths as the dashboard and older tests spell them, so a renamed constant cannot pass.
    assert {
        "sae/density",
        "sae/acts/indptr",
        "sae/history/step",
        "enhanced/neighbors/cos",
        "languages/<lang>",
        "geometry_tokens/outlier_dims",
        "sae/prev_layer_match",
        "words/text",
        "/",
    } <= code


def test_doc_lists_every_root_attribute():
    from store.schema import ROOT_ATTRS

    root_row = next(cells for rows in _doc_tables() for cells in rows if cells[0].startswith("`/` attrs"))
    named = set(re.findall(r"`([^`]+)`", root_row[1]))
    assert [a for a in ROOT_ATTRS if a not in named] == []


def test_writer_writes_the_root_attributes_of_the_schema(tmp_path):
    from store.schema import ROOT_ATTRS, family_of

    write_run(tmp_path, "old")  # no family given: readers derive it from the config
    with RunWriter(
        tmp_path,
        "new",
        model="m",
        layer=2,
        n_layers=3,
        source="contextual",
        config={"a": 1},
        config_hash="h",
        family="fam-1",
    ) as w:
        w.put("embeddings", np.zeros((3, 2), np.float32))
    with h5py.File(run_path(tmp_path, "new")) as f:
        assert set(f.attrs) == set(ROOT_ATTRS)
        assert f.attrs["family"] == "fam-1"
    with h5py.File(run_path(tmp_path, "old")) as f:
        assert set(ROOT_ATTRS) - set(f.attrs) == {"family"}
    cat = Catalog(tmp_path)
    rows = cat.table().set_index("run_id")
    assert rows.loc["new", "family"] == "fam-1"
    assert rows.loc["old", "family"] == family_of("test-model", {"model": "test-model", "seed": 0})
    # The legacy family ignores what differs between the layers of one plan entry, and nothing else.
    base = {"model": "m", "sae": {"k": 8}}
    assert family_of("m", {**base, "layers": "all", "name": "x", "batch_size": 8}) == family_of("m", base)
    assert family_of("m", {**base, "sae": {"k": 4}}) != family_of("m", base)
    assert family_of("other", base) != family_of("m", base)


def test_plain_h5py_example_of_the_doc_runs(tmp_path):
    """The doc's 'Read a run with plain h5py' example, on a real run file written by RunWriter."""
    X, words, _ = write_run(tmp_path, "example")
    code = re.search(r"Read a run with plain h5py:\s*```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(
        1
    )
    path = re.search(r'h5py\.File\("([^"]+)"\)', code).group(1)
    code = code.replace(path, str(run_path(tmp_path, "example")))
    env = {}
    exec(compile(code, "docs/store.md", "exec"), env)
    assert list(env["words"]) == words
    np.testing.assert_array_equal(env["X"], X)
    assert env["config"] == {"model": "test-model", "seed": 0}
