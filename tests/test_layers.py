"""Every layer of a transformer as its own run: files, shared token positions, the per-layer
geometry profile and the cross-layer feature map, each checked against a direct computation."""

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from compute.contextual import BUNDLED
from store import Catalog


@pytest.fixture(scope="module")
def layer_runs(minilm_store):
    root, ids = minilm_store
    cat = Catalog(root)
    runs = {cat.open(i).layer: cat.open(i) for i in ids}
    return runs


def test_one_run_per_layer(layer_runs):
    assert sorted(layer_runs) == list(range(7))
    for _layer, run in layer_runs.items():
        assert run.attrs["n_layers"] == 7 and run.attrs["source"] == "contextual"
        assert run.array("embeddings").shape[1] == 384
        assert run.has("geometry_tokens") and run.has("words/n_contexts")


def test_token_positions_are_the_same_in_every_layer(layer_runs):
    pos0 = layer_runs[0].array("tokens/positions")
    text0 = list(layer_runs[0].array("tokens/text"))
    assert len(pos0) == 600
    for run in layer_runs.values():
        np.testing.assert_array_equal(run.array("tokens/positions"), pos0)
        assert list(run.array("tokens/text")) == text0


def _direct_token_vectors(sentences, positions):
    """Independent: one sentence per forward pass, hidden states read at the stored positions."""
    tok = AutoTokenizer.from_pretrained(BUNDLED["minilm-l6"])
    model = AutoModel.from_pretrained(BUNDLED["minilm-l6"]).eval()
    out = np.zeros((7, len(positions), 384), dtype=np.float64)
    by_sentence = {}
    for row, (s, t) in enumerate(positions):
        by_sentence.setdefault(int(s), []).append((row, int(t)))
    with torch.no_grad():
        for s, items in by_sentence.items():
            enc = tok(sentences[s], return_tensors="pt", truncation=True, max_length=512)
            hidden = model(**enc, output_hidden_states=True).hidden_states
            for row, t in items:
                for layer in range(7):
                    out[layer, row] = hidden[layer][0, t].double().numpy()
    return out


def test_per_layer_token_profile_matches_direct_computation(layer_runs, minilm_corpus):
    sentences, _ = minilm_corpus
    vectors = _direct_token_vectors(sentences, layer_runs[0].array("tokens/positions"))
    for layer, run in layer_runs.items():
        T = vectors[layer]
        U = T / np.linalg.norm(T, axis=1, keepdims=True)
        C = U @ U.T
        n = len(U)
        brute_i_cos = (C.sum() - np.trace(C)) / (n * (n - 1))
        g = run.attrs_of("geometry_tokens")
        assert g["i_cos"] == pytest.approx(brute_i_cos, abs=1e-4), layer
        m = T.mean(axis=0)
        expected = np.flatnonzero(np.abs(m - m.mean()) > 3 * m.std())
        np.testing.assert_array_equal(np.sort(run.array("geometry_tokens/outlier_dims")), expected)


def test_features_are_matched_to_the_next_layer(layer_runs):
    for layer in range(6):
        here, above = layer_runs[layer], layer_runs[layer + 1]
        W = here.array("sae/W_dec").astype(np.float64)
        V = above.array("sae/W_dec").astype(np.float64)
        cos = (W / np.linalg.norm(W, axis=1, keepdims=True)) @ (V / np.linalg.norm(V, axis=1, keepdims=True)).T
        np.testing.assert_array_equal(here.array("sae/next_layer_match"), cos.argmax(axis=1))
        np.testing.assert_allclose(here.array("sae/next_layer_cos"), cos.max(axis=1), atol=1e-5)
    assert not layer_runs[6].has("sae/next_layer_match")
