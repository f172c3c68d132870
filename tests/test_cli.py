"""The CLI a newcomer meets: clear one-line errors, an idempotent precompute, the catalog table."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import SMALL_GLOVE_RUN

from compute.config import PlanError, load_plan, parse_plan
from compute.pipeline import precompute
from store import Catalog

LEXISCOPE = [sys.executable, "-m", "lexiscope"]


def run_cli(*args, env=None):
    return subprocess.run(
        LEXISCOPE + list(args), capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )


def test_bundled_plan_and_groups_are_valid():
    plan = load_plan()
    glove = plan.runs[0]
    assert glove.model == "glove-6b-50d" and glove.vocabulary.top_n == 20000
    groups = yaml.safe_load((Path(__file__).parents[1] / "compute/data/concept_groups.yaml").read_text())
    assert len(groups) >= 10 and all(len(words) >= 20 for words in groups.values())


@pytest.mark.parametrize(
    "body, field",
    [
        ({"runs": [{"model": "glove-6b-50d", "geometry": {"pairs": -5}}]}, "plan.yaml.runs[0].geometry.pairs"),
        ({"runs": [{"model": "glove-6b-50d", "sae": {"arch": "topk", "d_sae": 4, "k": 9}}]}, "plan.yaml.runs[0].sae"),
        ({"runs": [{"model": "glove-6b-50d", "sae": {"l1": -1.0, "arch": "relu_l1"}}]}, "plan.yaml.runs[0].sae.l1"),
        ({"runs": [{"model": "glove-6b-50d", "colour": "red"}]}, "plan.yaml.runs[0].colour"),
        ({"runs": []}, "plan.yaml.runs"),
    ],
)
def test_malformed_plan_is_one_line_naming_the_field(tmp_path, body, field):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(body))
    r = run_cli("precompute", str(plan), "--store", str(tmp_path / "store"))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and field in lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "store" / "runs").exists() or not os.listdir(tmp_path / "store" / "runs")


def test_yaml_syntax_error_names_the_line(tmp_path):
    plan = tmp_path / "broken.yaml"
    plan.write_text("runs:\n  - model: glove-6b-50d\n    vocabulary: {top_n: 10\n")
    with pytest.raises(PlanError, match=r"broken.yaml: not valid YAML at line \d"):
        load_plan(plan)


def test_unknown_model_is_a_clear_message(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"runs": [{"model": "no-such-model.txt", "sae": None}]}))
    r = run_cli("precompute", str(plan), "--store", str(tmp_path / "store"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: model 'no-such-model.txt': no such word-vector file (bundled static models: glove-6b-50d)"
    ]


def test_precompute_is_idempotent(glove_store):
    root, run_id = glove_store
    path = Catalog(root).open(run_id).path
    stamp = path.stat().st_mtime_ns
    again = precompute(parse_plan({"runs": [SMALL_GLOVE_RUN]}), store=root, device="cpu")
    assert again == [run_id] and path.stat().st_mtime_ns == stamp


def test_runs_prints_the_catalog(glove_store):
    root, run_id = glove_store
    r = run_cli("runs", "--store", str(root))
    assert r.returncode == 0 and run_id in r.stdout and "glove-6b-50d" in r.stdout


def test_word2vec_text_file_loads_through_gensim(tmp_path):
    """Any word2vec/GloVe file goes through the same code as the bundled vectors."""
    from compute.embeddings import load_static

    rng = np.random.default_rng(0)
    words = ["cat", "dog", "tiger", "red", "blue", "green", "one", "two", "three", "four", "five", "six"]
    V = rng.normal(size=(len(words), 6)).astype(np.float32)
    glove_style = tmp_path / "vecs.txt"
    glove_style.write_text("".join(f"{w} {' '.join(f'{v:.6f}' for v in row)}\n" for w, row in zip(words, V)))
    w2v_style = tmp_path / "vecs.vec"
    w2v_style.write_text(f"{len(words)} 6\n" + glove_style.read_text())
    for path in (glove_style, w2v_style):
        sv = load_static(str(path))
        assert sv.words == words
        np.testing.assert_allclose(sv.vectors, V, atol=1e-6)
