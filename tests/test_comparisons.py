"""Comparisons of stored runs (compute/comparison.py, store/comparisons.py, the Compare page's requests): the stored
file equals compare_runs on the same arrays read independently with h5py; a bad pair gets one line and leaves
nothing; the natural pairs after a precompute; compare jobs (forged ids refused, the job function writes the file);
the page's queue button and its wait for the result, as the browser sends them."""

import json
import shutil

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import linked_store
from typer.testing import CliRunner

from compute import compare
from compute.comparison import compare_natural_pairs, compare_stored, natural_pairs
from compute.config import PlanError
from jobs import client
from store import StoreError, comparisons
from store import jobs as jobstore
from store.writer import ComparisonWriter

ROUTE = "/_dash-update-component"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("LEXISCOPE_BROKER_URL", "LEXISCOPE_STORE", "LEXISCOPE_MAX_JOBS_PER_USER", "LEXISCOPE_AUTH"):
        monkeypatch.delenv(var, raising=False)


def _read(root, run_id):
    """A run's words, vectors, label masks and SAE activations, read with plain h5py (docs/store.md paths)."""
    with h5py.File(root / "runs" / f"{run_id}.h5", "r") as f:
        words = list(f["words/text"].asstr()[()])
        X = f["embeddings"][()]
        m = f["labels/member"]
        member = sp.csr_matrix((m["data"][()], m["indices"][()], m["indptr"][()]), shape=tuple(m.attrs["shape"]))
        names = list(f["labels/names"].asstr()[()])
        a = f["sae/acts"]
        acts = sp.csr_matrix((a["data"][()], a["indices"][()], a["indptr"][()]), shape=tuple(a.attrs["shape"]))
    masks = {name: member[:, j].toarray().ravel() > 0 for j, name in enumerate(names)}
    return words, X, masks, names, acts


def test_the_stored_comparison_equals_compare_runs_on_the_same_arrays(compare_store):
    root, glove, _, l6 = compare_store
    wa, Xa, masks, names, acts_a = _read(root, glove)
    wb, Xb, _, _, acts_b = _read(root, l6)
    c = compare.compare_runs(wa, Xa, wb, Xb, labels_a=masks, acts_a=acts_a, acts_b=acts_b)
    with h5py.File(root / "comparisons" / f"{glove}__{l6}.h5", "r") as f:
        at = f.attrs
        assert (at["run_a"], at["run_b"], int(at["n_shared"])) == (glove, l6, len(c.words))
        assert at["cka"] == pytest.approx(c.cka, rel=1e-12)
        np.testing.assert_allclose(at["cka_shuffled"], c.cka_shuffled, rtol=1e-12)
        assert at["jaccard_random"] == pytest.approx(c.jaccard_random)
        assert list(f["words"].asstr()[()]) == c.words
        np.testing.assert_array_equal(f["rows_a"][()], c.rows_a)
        np.testing.assert_array_equal(f["rows_b"][()], c.rows_b)
        np.testing.assert_allclose(f["jaccard"][()], c.jaccard, rtol=1e-6)
        np.testing.assert_array_equal(f["neighbours_a"][()], c.neighbours_a)
        np.testing.assert_array_equal(f["neighbours_b"][()], c.neighbours_b)
        most, least = compare.extremes(c.jaccard, 50)
        np.testing.assert_array_equal(f["most_agree"][()], most)
        np.testing.assert_array_equal(f["least_agree"][()], least)
        stored_labels = list(f["labels/names"].asstr()[()])
        assert stored_labels == [n for n in names if n in c.cka_labels] and len(stored_labels) == len(names)
        for i, name in enumerate(stored_labels):
            assert f["labels/n"][i] == c.cka_labels[name]["n"]
            np.testing.assert_allclose(f["labels/cka"][i], c.cka_labels[name]["cka"], rtol=1e-12)
            np.testing.assert_allclose(f["labels/shuffled"][i], c.cka_labels[name]["shuffled"], rtol=1e-12)
        np.testing.assert_array_equal(f["features/a_to_b"][()], c.features_a_to_b[0])
        np.testing.assert_allclose(f["features/b_to_a_r"][()], c.features_b_to_a[1], rtol=1e-6)
        assert at["feature_r_median"] == pytest.approx(np.nanmedian(c.features_a_to_b[1]), rel=1e-6)
        assert at["feature_r_median_ba"] == pytest.approx(np.nanmedian(c.features_b_to_a[1]), rel=1e-6)
        assert at["feature_r_shuffled"] < at["feature_r_median"]
        ab_ba = (at["feature_r_median"], at["feature_r_median_ba"], at["created_a"], at["created_b"])
    assert 0 < c.cka < 1 and np.mean(c.cka_shuffled) < c.cka
    # Asked the other way round, the reader swaps the sides.
    back = comparisons.load(root, l6, glove)
    assert back.swapped and back.attrs["run_a"] == l6
    swapped = back.attrs
    assert (
        swapped["feature_r_median_ba"],
        swapped["feature_r_median"],
        swapped["created_b"],
        swapped["created_a"],
    ) == ab_ba
    np.testing.assert_array_equal(back["rows_a"], c.rows_b)
    np.testing.assert_array_equal(back["features.a_to_b"], c.features_b_to_a[0])
    np.testing.assert_array_equal(back["neighbours_b"], c.neighbours_a)


def test_a_bad_pair_gets_one_line_and_leaves_nothing(compare_store, tmp_path, monkeypatch):
    src, glove, _, l6 = compare_store
    root = linked_store(tmp_path / "store", {src: [glove, l6]})
    with pytest.raises(StoreError, match="run nope is not in the store"):
        compare_stored(root, glove, "nope")
    with pytest.raises(ValueError, match="against itself"):
        compare_stored(root, glove, glove)

    from lexiscope import app

    result = CliRunner().invoke(app, ["compare", glove, "nope", "--store", str(root)])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"error: run nope is not in the store at {root}"
    ]

    # A failure half way through writing leaves neither the file nor its temporary file.
    def half_then_fail(self, output):
        self.put("words", ["half"])
        raise RuntimeError("disk full")

    monkeypatch.setattr(ComparisonWriter, "write_all", half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        compare_stored(root, glove, l6)
    assert list((root / "comparisons").iterdir()) == []
    assert comparisons.load(root, glove, l6) is None


def _row(run_id, layer, n_layers, source, family, vocabulary):
    return dict(run_id=run_id, layer=layer, n_layers=n_layers, source=source, family=family, vocabulary=vocabulary)


def test_the_natural_pairs_of_the_default_plan_and_others():
    vocab = {"top_n": 20000, "concept_groups": "default"}
    glove = _row("glove", 0, 1, "static", "g", vocab)
    minilm = [_row(f"m{i}", i, 7, "contextual", "m", vocab) for i in range(7)]
    runs = [glove, *minilm]
    assert natural_pairs(runs, ["glove", *[r["run_id"] for r in minilm]]) == [("m0", "m6"), ("glove", "m6")]
    assert natural_pairs(runs, ["glove"]) == [("glove", "m6")]  # GloVe recomputed: only its pair
    assert natural_pairs(runs, ["m3"]) == []  # a middle layer belongs to no natural pair
    other = {**glove, "vocabulary": {"top_n": 500}}
    assert natural_pairs([other, *minilm], ["glove", "m6"]) == [("m0", "m6")]  # another vocabulary
    assert natural_pairs([glove, *minilm[:4]], ["glove", "m0"]) == []  # the last layer is not stored


def test_natural_pairs_are_compared_once(compare_store, tmp_path):
    src, _, l0, l6 = compare_store
    root = linked_store(tmp_path / "store", {src: [l0, l6]})
    written = compare_natural_pairs(root, [l6])
    assert [p.rsplit("/", 1)[-1] for p in written] == [f"{l0}__{l6}.h5"]
    assert compare_natural_pairs(root, [l6]) == []  # already stored
    c = comparisons.load(root, l0, l6)
    assert c.attrs["n_shared"] == len(c["words"]) and c.attrs["cka"] > np.mean(c.attrs["cka_shuffled"])
    # L0 recomputed (a copy of its file with a new `created`, the shared file untouched): compared again.
    path = root / "runs" / f"{l0}.h5"
    path.unlink()
    shutil.copy(src / "runs" / f"{l0}.h5", path)
    with h5py.File(path, "r+") as f:
        f.attrs["created"] = "2099-01-01T00:00:00+00:00"
    assert comparisons.is_stale(comparisons.read_attrs(root, l0, l6), "2099-01-01T00:00:00+00:00", c.attrs["created_b"])
    assert len(compare_natural_pairs(root, [l6])) == 1
    assert comparisons.read_attrs(root, l6, l0)["created_b"] == "2099-01-01T00:00:00+00:00"  # either order


def test_compare_jobs_refuse_forged_ids_and_the_job_writes_the_comparison(compare_store, tmp_path):
    from jobs.worker import run_job

    src, glove, l0, _ = compare_store
    root = linked_store(tmp_path / "store", {src: [glove, l0]})
    for a, b, message in (
        (glove, "../../etc/passwd", "'../../etc/passwd' is not in the store"),
        (glove, "nope-L0-12345678", "is not in the store"),
        (glove, glove, "against itself"),
        (glove, 7, "not a run id"),
    ):
        with pytest.raises(PlanError, match=message) as e:
            client.submit_compare(a, b, root, user="ann")
        assert "\n" not in str(e.value)
    assert jobstore.list_jobs(root) == []

    job = client.submit_compare(glove, l0, root, user="ann")
    assert (job["kind"], job["status"], job["config"]) == ("compare", "queued", {"run_a": glove, "run_b": l0})
    assert client.submit_compare(l0, glove, root, user="ann")["id"] == job["id"]  # the same pair: the same job
    done = run_job(job["id"], root, device="cpu")
    assert done["status"] == "done", done["error"]
    assert done["run_ids"] == [glove, l0]
    c = comparisons.load(root, glove, l0)
    wa, Xa, *_ = _read(root, glove)
    wb, Xb, *_ = _read(root, l0)
    ra, rb = compare.shared_rows(wa, wb)
    assert c.attrs["cka"] == pytest.approx(compare.linear_cka(Xa[ra], Xb[rb]), rel=1e-12)
    assert [p.name for p in (root / "comparisons").iterdir()] == [f"{glove}__{l0}.h5"]


def _post(http, output, outputs, inputs, states, changed):
    body = dict(output=output, outputs=outputs, inputs=inputs, state=states, changedPropIds=[changed])
    r = http.post(ROUTE, json=body)
    assert r.status_code in (200, 204), r.status_code
    return r.get_data(as_text=True)


def test_the_page_button_queues_a_compare_job_and_then_links_to_its_result(compare_store, tmp_path, monkeypatch):
    from dashboard.app import app
    from dashboard.lib import store
    from jobs.worker import run_job

    src, glove, l0, _ = compare_store
    root = linked_store(tmp_path / "store", {src: [glove, l0]})
    monkeypatch.setattr(client, "ensure_embedded_worker", lambda *a, **k: None)  # the job is run here, below
    store.configure(root)
    try:
        http = app.server.test_client()
        deps = {d["output"]: d for d in http.get("/_dash-dependencies").get_json()}
        queue = next(o for o in deps if o.startswith("..compare-message.children...compare-wait.disabled"))
        wait = next(o for o in deps if "compare-message.children@" in o)
        outputs = [{"id": "compare-message", "property": "children"}, {"id": "compare-wait", "property": "disabled"}]

        def press(a, b):
            states = [
                {"id": "compare-a", "property": "value", "value": a},
                {"id": "compare-b", "property": "value", "value": b},
            ]
            inputs = [{"id": "compare-queue", "property": "n_clicks", "value": 1}]
            return _post(http, queue, outputs, inputs, states, "compare-queue.n_clicks")

        forged = press(glove, "../runs/x")
        assert "compare-queue-error" in forged and "is not in the store" in forged
        assert jobstore.list_jobs(root) == []
        queued = json.loads(press(glove, l0))
        job_id = queued["response"]["compare-message"]["children"]["props"]["data-job"]
        assert jobstore.read_job(job_id, root)["kind"] == "compare"

        states = [
            {"id": "compare-a", "property": "value", "value": glove},
            {"id": "compare-b", "property": "value", "value": l0},
        ]
        inputs = [{"id": "compare-wait", "property": "n_intervals", "value": 1}]
        outs = [dict(zip(("id", "property"), p.split("@")[0].rsplit(".", 1))) for p in wait[2:-2].split("...")]
        assert _post(http, wait, outs, inputs, states, "compare-wait.n_intervals") == ""  # not yet: no update
        assert run_job(job_id, root, device="cpu")["status"] == "done"
        ready = json.loads(_post(http, wait, outs, inputs, states, "compare-wait.n_intervals"))["response"]
        link = ready["compare-message"]["children"]["props"]["children"][1]["props"]
        assert (link["id"], link["href"]) == ("compare-ready", f"/compare?a={glove}&b={l0}")
    finally:
        store.configure(None)


def test_docs_name_every_path_of_a_comparison_file():
    """docs/store.md's "path (comparison file)" table and store/schema.py name the same datasets and attributes."""
    import re
    from pathlib import Path

    from store.schema import COMPARISON, COMPARISON_ROOT_ATTRS

    text = (Path(__file__).resolve().parents[1] / "docs" / "store.md").read_text(encoding="utf-8")
    table = text.split("| path (comparison file) |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    documented = set()
    for first, _ in rows:
        for token in re.findall(r"`(/[^`]*)`", first):
            m = re.search(r"\{([^}]*)\}", token)
            parts = [token[: m.start()] + p.strip() + token[m.end() :] for p in m.group(1).split(",")] if m else [token]
            documented.update(p for p in parts if p != "/")
    assert documented == set(COMPARISON.paths())
    root_row = next(second for first, second in rows if first.strip().startswith("`/` attrs"))
    assert set(re.findall(r"`([a-z_]+)`", root_row)) >= set(COMPARISON_ROOT_ATTRS)
