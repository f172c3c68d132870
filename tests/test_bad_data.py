"""Bad data, clear errors (issue 16, item 7): a NaN in a vector file, a latin-1 corpus, error lines that lost
their closing quote, warnings printed twice, copied and incomplete run files, and `serve --host 0.0.0.0`
without auth."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from compute.embeddings import ModelError, load_static
from store import Catalog, RunWriter
from store.schema import SCHEMA_VERSION, run_path

REPO = Path(__file__).resolve().parents[1]
LEXISCOPE = [sys.executable, "-m", "lexiscope"]


def run_cli(*args, cwd=None):
    return subprocess.run(LEXISCOPE + list(args), capture_output=True, text=True, timeout=600, cwd=cwd or REPO)


def write_vectors(path, rows):
    path.write_text("".join(f"{w} {' '.join(v)}\n" for w, v in rows))


def test_a_non_finite_vector_is_named_by_file_and_word(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"w{i}", [f"{x:.4f}" for x in rng.normal(size=5)]) for i in range(30)]
    rows[17] = ("tiger", ["0.1", "nan", "0.3", "0.4", "0.5"])
    rows[21] = ("lion", ["inf", "0", "0", "0", "0"])
    path = tmp_path / "vecs.txt"
    write_vectors(path, rows)
    with pytest.raises(ModelError) as e:
        load_static(str(path))
    assert str(e.value) == f"file {path}, word 'tiger': non-finite value nan (2 words have one)"

    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"runs": [{"model": str(path), "vocabulary": {"top_n": 0, "words": ["w1"]}}]}))
    r = run_cli("precompute", str(plan), "--store", str(tmp_path / "store"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: file {path}, word 'tiger': non-finite value nan (2 words have one)"
    ]


def test_a_latin1_corpus_is_refused_with_file_and_byte_offset(tmp_path):
    from compute.contextual import read_corpus

    good = tmp_path / "a.txt"
    good.write_text("A first sentence here. Another one follows.\n", encoding="utf-8")
    bad = tmp_path / "b.txt"
    bad.write_bytes("Le café est noir. Il fait beau.\n".encode("latin-1"))
    for spec in (str(bad), str(tmp_path)):
        with pytest.raises(ValueError) as e:
            read_corpus(spec)
        assert str(e.value).startswith(f"corpus file {bad}: not UTF-8 at byte 6 (b'\\xe9 es')")
    assert read_corpus(str(good)) == ["A first sentence here.", "Another one follows."]


def test_cli_error_lines_keep_their_closing_quote(tmp_path):
    from lexiscope import app

    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"runs": [{"model": "glove-6b-50d", "vocabulary": {"languages": ["zz"]}}]}))
    res = CliRunner().invoke(app, ["precompute", str(plan), "--store", str(tmp_path / "store")])
    assert res.exit_code == 2
    assert "error: vocabulary.languages: wordfreq has no word list for 'zz'\n" in res.output

    from compute.cli import message_of

    assert message_of(KeyError("'word' is not in run r1")) == "'word' is not in run r1"
    assert message_of(KeyError("x")) == "x"
    assert message_of(ValueError("model 'glove-6b-50d'")) == "model 'glove-6b-50d'"


def _run(root, run_id, n=20):
    rng = np.random.default_rng(1)
    with RunWriter(root, run_id, model="m", layer=0, n_layers=1, source="static", config={}, config_hash="h") as w:
        w.write_all({"words/text": [f"w{i}" for i in range(n)], "embeddings": rng.normal(size=(n, 4)).astype("f4")})


def test_copied_and_incomplete_run_files_are_flagged_not_listed(tmp_path):
    _run(tmp_path, "orig")
    shutil.copy(run_path(tmp_path, "orig"), run_path(tmp_path, "orig-copy"))
    with h5py.File(run_path(tmp_path, "bare"), "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
    cat = Catalog(tmp_path)
    assert cat.run_ids() == ["orig"]
    assert cat.errors["orig-copy"] == (
        "run file orig-copy.h5 holds run 'orig': a copied or renamed run file (its links would open 'orig'); "
        "remove it, or rename it to orig.h5"
    )
    assert cat.errors["bare"].startswith("run file bare.h5 is incomplete (no run_id, model, layer,")
    assert sorted(cat.errors) == ["bare", "orig-copy"]


def test_runs_prints_each_warning_once(tmp_path):
    _run(tmp_path, "good")
    with h5py.File(run_path(tmp_path, "bare"), "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
    broken = run_path(tmp_path, "broken")
    broken.write_bytes(b"not an hdf5 file at all")
    r = run_cli("runs", "--store", str(tmp_path))
    assert r.returncode == 0 and "good" in r.stdout
    assert r.stderr.count("bare.h5") == 1 and r.stderr.count("broken.h5") == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "args, warned",
    [
        (["--host", "0.0.0.0"], True),
        (["--host", "10.1.2.3"], True),
        (["--host", "0.0.0.0", "--auth", "alice:a1"], False),
        ([], False),
    ],
)
def test_serve_on_a_public_interface_without_auth_warns_once(tmp_path, monkeypatch, args, warned):
    import dashboard.app
    from lexiscope import app

    monkeypatch.delenv("LEXISCOPE_AUTH", raising=False)  # restored after: `serve --auth` sets it
    monkeypatch.setattr(dashboard.app, "serve", lambda *a, **kw: None)
    res = CliRunner().invoke(app, ["serve", "--store", str(tmp_path), *args])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert lines == (
        [
            f"warning: --host {args[1]} without --auth: anyone who can reach this port can read every run and "
            "queue or cancel jobs (docs/jobs.md, Security)"
        ]
        if warned
        else []
    )
    os.environ.pop("LEXISCOPE_AUTH", None)
