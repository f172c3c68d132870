"""Contextual extraction against hand computations with transformers, one sentence at a time."""

import numpy as np
import pytest
import torch

from compute import contextual
from compute.contextual import (
    BUNDLED,
    ModelError,
    extract,
    is_transformer,
    load_transformer,
    read_corpus,
    split_sentences,
)

CORPUS = [
    "A huge bushfire pushed towards the town of Hill Top.",
    "Bushfire crews fought the fire all night, and the bushfire was contained.",
    "Rain fell.",
    "Embeddings of words are vectors; fire is not an embedding.",
    "The firefighters said the bushfires were under control.",
]


@pytest.fixture(scope="session")
def minilm():
    return load_transformer("minilm-l6")


_HIDDEN = {}


def _hidden(tok, model, text):
    """All hidden states of one sentence on its own: (n_layers, T, d), and its tokens."""
    if text not in _HIDDEN:
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            hs = model(**enc, output_hidden_states=True).hidden_states
        _HIDDEN[text] = torch.stack([h[0] for h in hs]).numpy(), tok.convert_ids_to_tokens(enc["input_ids"][0])
    return _HIDDEN[text]


def _hand_word_vector(tok, model, sentences, word):
    """Mean over occurrences of the mean of the word's pieces, finding the piece sequence in each sentence."""
    pieces = tok.tokenize(word)
    occurrences = []
    for s in sentences:
        h, toks = _hidden(tok, model, s)
        for i in range(len(toks) - len(pieces) + 1):
            nxt = toks[i + len(pieces)] if i + len(pieces) < len(toks) else "[SEP]"
            if toks[i : i + len(pieces)] == pieces and not nxt.startswith("##"):
                occurrences.append(h[:, i : i + len(pieces)].mean(1))
    return np.mean(occurrences, 0), len(occurrences)


def test_multi_piece_word_matches_hand_computation(minilm):
    tok, model = minilm
    assert tok.tokenize("bushfire") == ["bush", "##fire"]
    assert len(tok.tokenize("embeddings")) > 2
    words = ["bushfire", "embeddings", "fire", "Bushfire", "the"]
    ex = extract(tok, model, CORPUS, words, layers=None, token_sample=0, batch_size=2)
    assert ex.layers == list(range(7)) and ex.n_layers == 7
    assert ex.word_vectors.shape == (7, len(words), 384) and ex.word_vectors.dtype == np.float32
    for row, w in enumerate(["bushfire", "embeddings", "fire", "bushfire", "the"]):
        ref, n = _hand_word_vector(tok, model, CORPUS, w)
        assert ex.n_contexts[row] == n
        np.testing.assert_allclose(ex.word_vectors[:, row], ref, atol=1e-5)
    # bushfire x2 + Bushfire; fire only standing alone (not in bushfire, firefighters); the x4 + The.
    assert ex.n_contexts.tolist() == [3, 1, 2, 3, 5]
    np.testing.assert_array_equal(ex.word_vectors[:, 0], ex.word_vectors[:, 3])


def test_layer_subset_equals_all_layers(minilm):
    tok, model = minilm
    full = extract(tok, model, CORPUS, ["bushfire", "rain"], layers=None, token_sample=20, batch_size=8)
    sub = extract(tok, model, CORPUS, ["bushfire", "rain"], layers=[6, 2], token_sample=20, batch_size=8)
    assert sub.layers == [6, 2]
    np.testing.assert_allclose(sub.word_vectors, full.word_vectors[[6, 2]], atol=1e-6)
    np.testing.assert_array_equal(sub.token_positions, full.token_positions)
    with pytest.raises(ValueError, match="layers: 7 is out of range"):
        extract(tok, model, CORPUS, ["rain"], layers=[7])


def test_token_sample_matches_direct_forward(minilm):
    tok, model = minilm
    layers = [0, 3, 6]
    ex = extract(tok, model, CORPUS, ["rain"], layers=layers, token_sample=25, seed=3, batch_size=2)
    assert ex.token_vectors.shape == (3, 25, 384)
    assert len({tuple(p) for p in ex.token_positions.tolist()}) == 25
    for r, (s, t) in enumerate(ex.token_positions.tolist()):
        h, toks = _hidden(tok, model, CORPUS[s])
        assert toks[t] == ex.token_text[r] and toks[t] not in ("[CLS]", "[SEP]")
        np.testing.assert_allclose(ex.token_vectors[:, r], h[layers, t], atol=1e-5)
    again = extract(tok, model, CORPUS, ["rain"], layers=[1], token_sample=25, seed=3)
    np.testing.assert_array_equal(again.token_positions, ex.token_positions)
    other = extract(tok, model, CORPUS, ["rain"], layers=[1], token_sample=25, seed=4)
    assert not np.array_equal(other.token_positions, ex.token_positions)
    n_real = sum(len(tok.tokenize(s)) for s in CORPUS)
    everything = extract(tok, model, CORPUS, ["rain"], layers=[1], token_sample=10**6)
    assert len(everything.token_text) == n_real


def test_absent_words_are_encoded_in_isolation(minilm):
    tok, model = minilm
    words = ["zyxwvut", "rain", "quantumly", "zyxwvut", "bushfires"]
    seen = []
    ex = extract(
        tok, model, CORPUS, words, layers=[0, 4], token_sample=0, batch_size=2, progress=lambda stage, f: seen.append(f)
    )
    assert ex.n_contexts.tolist() == [0, 1, 0, 0, 1]
    for row in (0, 2, 3):
        h, toks = _hidden(tok, model, words[row])
        assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
        np.testing.assert_allclose(ex.word_vectors[:, row], h[[0, 4], 1:-1].mean(1), atol=1e-5)
    assert seen == sorted(seen) and seen[-1] == 1.0
    # No corpus at all: every word is encoded alone.
    alone = extract(tok, model, [], words, layers=[0, 4], token_sample=10)
    assert alone.n_contexts.tolist() == [0] * 5 and alone.token_vectors.shape == (2, 0, 384)
    np.testing.assert_allclose(alone.word_vectors[:, 0], ex.word_vectors[:, 0], atol=1e-5)
    with pytest.raises(ValueError, match="words: empty word"):
        extract(tok, model, CORPUS, ["rain", " "], layers=[0])


def test_unknown_model_id_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as e:
        load_transformer("lexiscope-test/no-such-model")
    msg = str(e.value)
    assert "\n" not in msg and "lexiscope-test/no-such-model" in msg
    assert "huggingface-cli download lexiscope-test/no-such-model" in msg


def test_unreachable_hub_fails_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(contextual, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelError, match="hub is unreachable; download it"):
        load_transformer("lexiscope-test/no-such-model")


def test_empty_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n")
    with pytest.raises(ValueError, match="corpus '.*empty.txt' contains no sentences"):
        read_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="contains no sentences"):
        read_corpus(str(tmp_path / "folder"))
    with pytest.raises(ValueError, match="is not 'lee'"):
        read_corpus(str(tmp_path / "missing.txt"))


def test_read_corpus_sources(tmp_path, monkeypatch):
    lee = read_corpus("lee")
    assert len(lee) > 1000 and lee[1].startswith("A new blaze near Goulburn")
    (tmp_path / "a.txt").write_text("One sentence. Two sentences!\n\nThird one?\n")
    (tmp_path / "b.txt").write_text("Last line\n")
    (tmp_path / "skip.md").write_text("Not read.\n")
    assert read_corpus(str(tmp_path / "a.txt")) == ["One sentence.", "Two sentences!", "Third one?"]
    assert read_corpus(str(tmp_path)) == ["One sentence.", "Two sentences!", "Third one?", "Last line"]
    sts = tmp_path / "sts"
    sts.mkdir()
    (sts / "stsb-xx-train.csv").write_text('sentence1,sentence2,score\nA cat.,"A dog, barking.",1.0\n')
    (sts / "stsb-xx-test.csv").write_text("A cat.,A bird.,2.0\n")
    monkeypatch.setenv("LEXISCOPE_STS_DIR", str(sts))
    assert read_corpus("stsb:xx") == ["A cat.", "A dog, barking.", "A bird."]
    assert split_sentences("Done. 你好。再见") == ["Done.", "你好。", "再见"]


def test_is_transformer(tmp_path):
    assert is_transformer("minilm-l6") and "minilm-l6" in BUNDLED
    assert is_transformer("bert-base-uncased") and is_transformer("sentence-transformers/all-MiniLM-L6-v2")
    assert is_transformer(BUNDLED["minilm-l6"])
    assert not is_transformer("glove-6b-50d")
    for name in ("vectors.txt", "w2v.bin", "wiki.vec", "model.kv", "glove.txt.gz"):
        assert not is_transformer(str(tmp_path / name))
    (tmp_path / "vec.txt").write_text("a 1 2\n")
    assert not is_transformer(str(tmp_path / "vec.txt"))
    assert not is_transformer(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert is_transformer(str(tmp_path))
