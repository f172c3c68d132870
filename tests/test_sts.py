"""STS: strict reading of STS-B, sentence vectors and scores checked against independent computations written
here (transformers directly, numpy, scipy), zero-shot enhancement, and the pipeline's /sts group."""

import csv
import json
import logging

import h5py
import numpy as np
import pytest
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from compute import sts
from compute.config import load_plan, parse_plan, parse_run
from compute.embeddings import StaticVectors, load_static
from compute.geometry import fit_enhancement
from compute.pipeline import precompute

N_ES = 150  # Spanish pairs used by the pipeline run (the English test split is used in full)
LAYERS = [0, 6]  # MiniLM: embedding output and last layer

TINY_CORPUS = "A man is playing a guitar.\nThe cat sat on the mat. Dogs run in the park.\n"


def _tiny_run(**over) -> dict:
    run = {
        "model": "glove-6b-50d",
        "vocabulary": {"top_n": 150, "concept_groups": None},
        "projections": {"umap3d": False, "umap2d": False, "pca2": True, "neighbors": 5},
        "sae": None,
    }
    run.update(over)
    return run


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _runs(root):
    folder = root / "runs"
    return sorted(p.name for p in folder.glob("*.h5")) if folder.exists() else []


# ---------------------------------------------------------------- reading


def test_read_real_file_matches_csv(sts_dir):
    data = sts.read_sts(sts_dir, "en", "test")
    with open(sts_dir / "stsb-en-test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(data) == len(rows) == 1379
    assert data.sentences1[3] == rows[3][0].strip() and data.sentences2[3] == rows[3][1].strip()
    np.testing.assert_array_equal(data.gold, [float(r[2]) for r in rows])
    assert len(data.sentences) == len({s.strip() for r in rows for s in r[:2]})
    i1, i2 = data.pair_rows()
    assert [data.sentences[i] for i in i2[:5]] == data.sentences2[:5]


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("A cat.,A dog.,1.0\nA cat.,A dog.\n", 2, "expected 3 columns"),
        ("A cat.,A dog.,1.0\nA cat.,A dog.,5.5\n", 2, r"outside \[0, 5\]"),
        ("A cat.,A dog.,-0.1\n", 1, r"outside \[0, 5\]"),
        ("A cat.,A dog.,1.0\n\nA bird.,A fish.,high\n", 3, "'high' is not a number"),
        ("A cat.,A dog.,nan\n", 1, "is not a number"),
        ("A cat.,A dog.,1.0\nA cat.,A dog.,1.0,extra\n", 2, "expected 3 columns"),
        ("A cat.,,1.0\n", 1, "empty sentence2"),
        ("A cat.,A dog.,1.0\nsentence1,sentence2,score\n", 2, "'score' is not a number"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, body, line, message):
    (tmp_path / "stsb-xx-test.csv").write_text(body, encoding="utf-8")
    with pytest.raises(sts.STSError, match=rf"stsb-xx-test\.csv, line {line}: .*{message}"):
        sts.read_sts(tmp_path, "xx", "test", min_pairs=1)
    # The language corpus reads the same files just as strictly.
    from compute.contextual import read_corpus

    with pytest.raises(ValueError, match=rf"stsb-xx-test\.csv, line {line}"):
        read_corpus("stsb:xx", sts_dir=tmp_path)


def test_header_missing_files_and_bad_names(tmp_path):
    (tmp_path / "stsb-xx-test.csv").write_text(
        "sentence1,sentence2,score\nA cat.,A dog.,1\nA b.,C d.,2\nE f.,G h.,4.5\n", encoding="utf-8"
    )
    data = sts.read_sts(tmp_path, "xx")
    assert data.sentences1 == ["A cat.", "A b.", "E f."] and data.gold.tolist() == [1.0, 2.0, 4.5]
    with pytest.raises(sts.STSError, match=r"no file stsb-yy-test\.csv .*languages there: xx"):
        sts.read_sts(tmp_path, "yy")
    with pytest.raises(sts.STSError, match="sts.languages: '../en'"):
        sts.read_sts(tmp_path, "../en")
    with pytest.raises(sts.STSError, match="does not exist"):
        sts.read_sts(tmp_path / "nowhere", "xx")
    (tmp_path / "stsb-zz-test.csv").write_bytes(b"A cat.,A \xff dog.,1\n")
    with pytest.raises(sts.STSError, match="not UTF-8"):
        sts.read_sts(tmp_path, "zz", min_pairs=1)


# ---------------------------------------------------------------- static vectors and scores


def test_static_sentence_vectors_and_scores():
    words = ["a", "cat", "dog", "sat", "woman", "s"]
    vecs = np.arange(len(words) * 3, dtype=np.float32).reshape(-1, 3) ** 1.5
    sv = StaticVectors(words, vecs, {w: i for i, w in enumerate(words)})
    x = sts.static_sentence_vectors(["A cat sat.", "The WOMAN's dog!", "Unknown words only"], sv)
    np.testing.assert_allclose(x[0], vecs[[0, 1, 3]].mean(0), rtol=1e-6)
    np.testing.assert_allclose(x[1], vecs[[4, 5, 2]].mean(0), rtol=1e-6)
    assert not x[2].any()
    cos = sts.cosine_pairs(x[[0, 0, 2]], x[[1, 0, 1]])
    np.testing.assert_allclose(cos, [_cos(x[0], x[1]), 1.0, 0.0], atol=1e-12)
    pred, gold = np.array([0.1, 0.5, 0.3, 0.9]), np.array([1.0, 3.0, 4.0, 5.0])
    assert sts.spearman100(pred, gold) == pytest.approx(100 * spearmanr(pred, gold).statistic)
    assert np.isnan(sts.spearman100(np.ones(4), gold))


def test_static_glove_output_matches_independent_score(sts_dir):
    glove = load_static("glove-6b-50d")
    cfg = parse_run(_tiny_run(sts={"path": str(sts_dir), "languages": ["en"], "split": "dev"}))
    out = sts.static_output(cfg, glove)
    data = sts.read_sts(sts_dir, "en", "dev")

    def mean_vector(s):  # independent tokenizer: every non-alphanumeric character separates words
        words = "".join(c if c.isalnum() else " " for c in s.lower()).split()
        rows = [glove.index[w] for w in words if w in glove.index]
        return glove.vectors[rows].astype(np.float64).mean(0) if rows else np.zeros(50)

    cos = [_cos(mean_vector(a), mean_vector(b)) for a, b in zip(data.sentences1, data.sentences2)]
    reference = 100 * spearmanr(cos, data.gold).statistic
    assert out["sts/en"]["raw"] == pytest.approx(reference, abs=1e-4)
    assert 30 < out["sts/en"]["raw"] < 80 and out["sts/en"]["coverage"] > 0.99
    assert out["sts"]["languages"] == ["en"] and out["sts/scores"].shape == (1, 3)


def test_evaluate_individual_and_zero_shot_match_direct_fits():
    rng = np.random.default_rng(0)
    data, vectors = {}, {}
    for lang in ("en", "es"):
        s1 = [f"{lang} a{i}" for i in range(60)]
        s2 = [f"{lang} b{i}" for i in range(60)]
        data[lang] = sts.STSData(lang, "test", None, s1, s2, rng.uniform(0, 5, 60))
        vectors[lang] = (rng.normal(size=(120, 16)) + 4 * rng.normal(size=16)).astype(np.float32)
    res = sts.evaluate(vectors, data, clusters=3, pcs_removed=2, seed=1, languages=["es"])
    assert list(res) == ["es"]

    def score(x, d):
        c = [_cos(x[i], x[i + 60]) for i in range(60)]
        return 100 * spearmanr(c, d.gold).statistic

    en_fit = fit_enhancement(vectors["en"], 3, 2, 1)
    es_fit = fit_enhancement(vectors["es"], 3, 2, 1)
    assert res["es"]["raw"] == pytest.approx(score(vectors["es"], data["es"]), abs=1e-9)
    assert res["es"]["individual"] == pytest.approx(score(es_fit.apply(vectors["es"]), data["es"]), abs=1e-9)
    assert res["es"]["zero_shot"] == pytest.approx(score(en_fit.apply(vectors["es"]), data["es"]), abs=1e-9)


# ---------------------------------------------------------------- plans


def test_default_plan_sts_and_skip_line(monkeypatch, caplog, sts_dir):
    plan = load_plan()
    minilm = [r for r in plan.runs if r.model == "minilm-l6"][0]
    assert minilm.layers == "all" and minilm.sts.languages == ["en", "es", "de"] and minilm.sts.split == "test"
    monkeypatch.setenv("LEXISCOPE_STS_DIR", str(sts_dir))
    with caplog.at_level(logging.INFO, logger="lexiscope.compute"):
        kept = sts.prepare_runs(plan.runs, plan.sts_dir)
    assert [r.sts for r in kept] == [r.sts for r in plan.runs] and not caplog.records
    monkeypatch.delenv("LEXISCOPE_STS_DIR")
    two = parse_plan({"runs": [{**minilm.model_dump(), "name": "a"}, {**minilm.model_dump(), "name": "b"}]})
    with caplog.at_level(logging.INFO, logger="lexiscope.compute"):
        dropped = sts.prepare_runs(two.runs, None)
    assert all(r.sts is None for r in dropped)
    lines = [r.getMessage() for r in caplog.records]
    assert (
        len(lines) == 1 and "stsb_multi_mt" in lines[0] and "LEXISCOPE_STS_DIR" in lines[0] and "sts.path" in lines[0]
    )
    # The plan's sts_dir fills sts.path.
    filled = sts.prepare_runs(two.runs, str(sts_dir))
    assert filled[0].sts.path == str(sts_dir)


def test_no_folder_skips_sts_with_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("LEXISCOPE_STS_DIR", raising=False)
    plan = parse_plan(
        {
            "runs": [
                _tiny_run(name="g1", sts={"languages": ["en"]}),
                _tiny_run(
                    name="g2", vocabulary={"top_n": 120, "concept_groups": None}, sts={"languages": ["en", "es"]}
                ),
            ]
        }
    )
    with caplog.at_level(logging.INFO, logger="lexiscope.compute"):
        ids = precompute(plan, store=tmp_path, device="cpu")
    skipped = [r for r in caplog.records if "STS skipped" in r.getMessage()]
    assert len(skipped) == 1 and len(ids) == 2
    for run_id in ids:
        with h5py.File(tmp_path / "runs" / f"{run_id}.h5") as f:
            assert "sts" not in f and "geometry" in f
            assert json.loads(f.attrs["config"])["sts"] is None


def test_bad_data_fails_before_anything_is_written(tmp_path, sts_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "stsb-en-test.csv").symlink_to(sts_dir / "stsb-en-test.csv")
    (bad / "stsb-es-test.csv").write_text("Un gato.,Un perro.,1.0\nUn gato.,Un perro.,7\n", encoding="utf-8")
    store = tmp_path / "store"
    plan = parse_plan(
        {
            "runs": [
                _tiny_run(name="written-first-otherwise"),
                {
                    "model": "minilm-l6",
                    "layers": [6],
                    "sae": None,
                    "sts": {"path": str(bad), "languages": ["en", "es"]},
                },
            ]
        }
    )
    with pytest.raises(sts.STSError, match=r"stsb-es-test\.csv, line 2: score 7 is outside"):
        precompute(plan, store=store, device="cpu")
    assert _runs(store) == []


# ---------------------------------------------------------------- MiniLM through the pipeline


@pytest.fixture(scope="module")
def minilm_sts(sts_dir, tmp_path_factory):
    """One pipeline run: MiniLM layers 0 and 6, STS on the full English test split and the first N_ES Spanish
    pairs. The sentence vectors the pipeline computes are captured for the checks below."""
    folder = tmp_path_factory.mktemp("sts-data")
    (folder / "stsb-en-test.csv").symlink_to(sts_dir / "stsb-en-test.csv")
    with open(sts_dir / "stsb-es-test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[:N_ES]
    with open(folder / "stsb-es-test.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    corpus = folder / "corpus.txt"
    corpus.write_text(TINY_CORPUS, encoding="utf-8")
    root = tmp_path_factory.mktemp("sts-store")
    run = {
        "name": "minilm-sts",
        "model": "minilm-l6",
        "layers": LAYERS,
        "corpus": str(corpus),
        "vocabulary": {"top_n": 60, "concept_groups": None},
        "geometry": {"token_sample": 50},
        "projections": {"umap3d": False, "umap2d": False, "pca2": True, "neighbors": 5},
        "sae": None,
        "sts": {"path": str(folder), "languages": ["en", "es"], "split": "test"},
    }
    captured = {}
    real = sts.encode_sentences

    def spy(tokenizer, model, sentences, layers, *args, **kw):
        x = real(tokenizer, model, sentences, layers, *args, **kw)
        captured.update(sentences=list(sentences), layers=list(layers), x=x)
        return x

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sts, "encode_sentences", spy)
        ids = precompute(parse_plan({"runs": [run]}), store=root, device="cpu")
    data = {lang: sts.read_sts(folder, lang) for lang in ("en", "es")}
    row = {s: i for i, s in enumerate(captured["sentences"])}
    files = {h5py.File(root / "runs" / f"{i}.h5").attrs["layer"]: root / "runs" / f"{i}.h5" for i in ids}

    def vectors(lang, layer, sentences=None):
        rows = [row[s] for s in (sentences or data[lang].sentences)]
        return captured["x"][captured["layers"].index(layer)][rows]

    return dict(files=files, data=data, vectors=vectors, folder=folder)


def _stored(path):
    with h5py.File(path) as f:
        attrs = {k: dict(f[f"sts/{k}"].attrs) for k in ("en", "es")}
        return attrs, dict(f["sts"].attrs), f["sts/scores"][:]


def test_published_minilm_value_reproduced(minilm_sts):
    assert sorted(minilm_sts["files"]) == LAYERS
    rows, top, scores = _stored(minilm_sts["files"][6])
    assert rows["en"]["raw"] == pytest.approx(82.0, abs=1.5)  # all-MiniLM-L6-v2, STS-B test, mean pooling
    assert rows["en"]["n_pairs"] == 1379 and rows["es"]["n_pairs"] == N_ES
    # Layer 0 (embedding output) is far below the trained last layer.
    assert _stored(minilm_sts["files"][0])[0]["en"]["raw"] < rows["en"]["raw"] - 10
    assert json.loads(top["languages"]) == ["en", "es"] and top["split"] == "test" and top["source"] == "en"
    # pcs_removed "auto" for 384-d MiniLM: round(384 / 128) = 3
    assert top["clusters"] == 7 and top["pcs_removed"] == 3 and top["fit_on"] == "sentence vectors"
    assert scores.dtype == np.float32 and scores.shape == (2, 3)
    np.testing.assert_allclose(scores[1], [rows["es"][c] for c in sts.COLUMNS], rtol=1e-6)
    table = json.loads(top["table"])
    assert table[0]["language"] == "en" and table[0]["raw"] == pytest.approx(rows["en"]["raw"])


def test_fifty_pairs_equal_independent_transformers(minilm_sts):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from compute.contextual import BUNDLED

    tokenizer = AutoTokenizer.from_pretrained(BUNDLED["minilm-l6"], local_files_only=True)
    model = AutoModel.from_pretrained(BUNDLED["minilm-l6"], local_files_only=True).eval()
    data = minilm_sts["data"]["en"].head(50)

    def encode(text):  # one sentence, no padding; [CLS] and [SEP] are the first and last token
        with torch.no_grad():
            out = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
        return {layer: out.hidden_states[layer][0, 1:-1].mean(0).numpy() for layer in LAYERS}

    mine = {s: encode(s) for s in data.sentences}
    for layer in LAYERS:
        x = minilm_sts["vectors"]("en", layer, data.sentences)
        ref = np.stack([mine[s][layer] for s in data.sentences])
        np.testing.assert_allclose(x, ref, atol=2e-5, rtol=1e-4)
        cos = [_cos(mine[a][layer], mine[b][layer]) for a, b in zip(data.sentences1, data.sentences2)]
        assert sts.sts_score(x, data) == pytest.approx(100 * spearmanr(cos, data.gold).statistic, abs=1e-6)


def test_zero_shot_english_directions_change_spanish(minilm_sts):
    data_en, data_es = minilm_sts["data"]["en"], minilm_sts["data"]["es"]
    with threadpool_limits(limits=1):  # as in the pipeline: k-means sums in the same order
        _check_zero_shot(minilm_sts, data_en, data_es)


def _check_zero_shot(minilm_sts, data_en, data_es):
    for layer in LAYERS:
        en, es = minilm_sts["vectors"]("en", layer), minilm_sts["vectors"]("es", layer)
        rows, top, _ = _stored(minilm_sts["files"][layer])
        removed = int(top["pcs_removed"])
        en_fit = fit_enhancement(en, 7, removed, 0)
        es_zero_shot = en_fit.apply(es)
        # Inside its English cluster, each Spanish vector loses its part along that cluster's English directions.
        labels = en_fit.assign(es)
        centred = es - en_fit.means[labels]
        along_NP = np.einsum("nd,npd->np", centred, en_fit.directions[labels])
        assert np.linalg.norm(along_NP, axis=1).mean() > 0.1 * np.linalg.norm(centred, axis=1).mean()
        np.testing.assert_allclose(
            es_zero_shot, centred - np.einsum("np,npd->nd", along_NP, en_fit.directions[labels]), atol=1e-4
        )
        assert np.abs(np.einsum("nd,npd->np", es_zero_shot, en_fit.directions[labels])).max() < 1e-3

        def score(x, d):
            i1, i2 = d.pair_rows()
            return 100 * spearmanr([_cos(x[a], x[b]) for a, b in zip(i1, i2)], d.gold).statistic

        assert rows["es"]["raw"] == pytest.approx(score(es, data_es), abs=1e-4)
        assert rows["es"]["zero_shot"] == pytest.approx(score(es_zero_shot, data_es), abs=1e-4)
        assert rows["es"]["individual"] == pytest.approx(
            score(fit_enhancement(es, 7, removed, 0).apply(es), data_es), abs=1e-4
        )
        assert abs(rows["es"]["zero_shot"] - rows["es"]["raw"]) > 0.05
        assert rows["en"]["zero_shot"] == rows["en"]["individual"]
        assert rows["en"]["individual"] == pytest.approx(score(en_fit.apply(en), data_en), abs=1e-4)
