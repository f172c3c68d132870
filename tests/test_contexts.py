"""Features in context (compute/contexts.py): stored token activations checked against a direct forward pass,
the one-batch memory bound, planted word senses, the running top-k, and the corpus sources of a run."""

import gc
import weakref

import h5py
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from compute import contexts, contextual
from compute.config import ContextsConfig, PlanError, parse_plan, parse_run
from compute.contextual import BUNDLED
from compute.pipeline import prepare_corpus, train_on
from store import Catalog


@pytest.fixture(scope="module")
def runs(minilm_store):
    root, ids = minilm_store
    cat = Catalog(root)
    return root, {cat.open(i).layer: cat.open(i) for i in ids}


@pytest.fixture(scope="module")
def direct_model():
    tok = AutoTokenizer.from_pretrained(BUNDLED["minilm-l6"])
    return tok, AutoModel.from_pretrained(BUNDLED["minilm-l6"]).eval()


def _stored_topk_acts(run, x: np.ndarray) -> np.ndarray:
    """Independent TopK encoder from the stored arrays, as docs/store.md spells it."""
    W_enc, b_enc, b_dec = (run.array(f"sae/{n}") for n in ("W_enc", "b_enc", "b_dec"))
    mu, scale = run.array("sae/norm_mean"), float(run.array("sae/norm_scale")[0])
    pre = np.maximum(((x - mu) * scale - b_dec) @ W_enc + b_enc, 0)
    k = int(run.attrs_of("sae")["k"])
    out = np.zeros_like(pre)
    top = np.argsort(-pre, kind="stable")[:k]
    out[top] = pre[top]
    return out


def test_top_contexts_match_a_direct_forward_pass(runs, minilm_corpus, direct_model):
    root, by_layer = runs
    sentences, _ = minilm_corpus
    tok, model = direct_model
    checked = 0
    for layer in (1, 4, 6):
        run = by_layer[layer]
        acts, sent = run.array("contexts/top_act"), run.array("contexts/top_sentence")
        token, span = run.array("contexts/top_token"), run.array("contexts/top_span")
        feats = np.flatnonzero(acts[:, 0] > 0)[:7]
        for f in feats:
            s, t = int(sent[f, 0]), int(token[f, 0])
            enc = tok(sentences[s], return_tensors="pt", truncation=True, max_length=512, return_offsets_mapping=True)
            assert tuple(enc["offset_mapping"][0, t].tolist()) == tuple(span[f, 0])
            with torch.no_grad():
                hidden = model(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True
                ).hidden_states
            a = _stored_topk_acts(run, hidden[layer][0, t].double().numpy())
            assert abs(a[f] - acts[f, 0]) < 1e-4, (layer, f, a[f], acts[f, 0])
            assert f in np.flatnonzero(a > 0)  # among that token's top-k features
            checked += 1
    assert checked >= 20


def test_contexts_are_sorted_and_densities_are_shares(runs):
    _, by_layer = runs
    run = by_layer[3]
    a = run.attrs_of("contexts")
    acts = run.array("contexts/top_act")
    assert acts.shape[1] == a["top_k"] >= 20
    assert (np.diff(acts, axis=1) <= 0).all()
    dens = run.array("contexts/token_density")
    assert dens.shape == acts.shape[:1] and (dens >= 0).all() and (dens <= 1).all()
    # topk: every token has k active features, so the densities sum to k
    assert dens.sum() == pytest.approx(run.attrs_of("sae")["k"], rel=1e-4)
    assert a["token_l0"] == pytest.approx(run.attrs_of("sae")["k"])
    assert 0 < a["token_fvu"] < 1.5 and 0 <= a["token_dead_frac"] <= 1
    qa = run.array("contexts/quantile_act")
    max_act = acts[:, 0]
    for f in np.flatnonzero(max_act > 0)[:20]:
        edges = np.linspace(0, max_act[f], 6)
        for q in range(5):
            v = qa[f, q][qa[f, q] > 0]
            assert ((v > edges[4 - q] - 1e-6) & (v <= edges[5 - q] + 1e-6)).all()


def test_corpus_is_stored_once_for_every_layer(runs, minilm_corpus):
    root, by_layer = runs
    sentences, _ = minilm_corpus
    keys = {run.attrs_of("contexts")["corpus"] for run in by_layer.values()}
    assert len(keys) == 1
    with h5py.File(root / "corpora" / f"{keys.pop()}.h5") as f:
        assert list(f["sentences"].asstr()[()]) == sentences
    assert not list((root / "corpora").glob(".tmp-*"))


def test_word_contexts_hold_the_word(runs, minilm_corpus):
    _, by_layer = runs
    sentences, _ = minilm_corpus
    run = by_layer[5]
    words = list(run.array("words/text"))
    ptr, sent, span = (run.array(f"contexts/word_{n}") for n in ("ptr", "sentence", "span"))
    n_ctx = run.array("words/n_contexts")
    per_word = run.attrs_of("contexts")["per_word"]
    feats = run.array("contexts/word_features")
    for i, w in enumerate(words):
        c = slice(ptr[i], ptr[i + 1])
        assert ptr[i + 1] - ptr[i] == min(per_word, n_ctx[i])
        for s, (a, b) in zip(sent[c], span[c]):
            assert sentences[s][a:b].lower() == w.lower()
    assert (feats[:, 0] >= 0).all()


def _activation_rows(d: int, weights: set[int]) -> int:
    """Rows of every live torch tensor whose last dimension is the hidden size d, model and SAE weights
    excluded: a census of the hidden states (and any copy or slice of them) the process holds."""
    gc.collect()
    rows = 0
    for obj in gc.get_objects():
        if isinstance(obj, weakref.ProxyTypes):  # a dead proxy raises on any look; a live one is counted direct
            continue
        if torch.is_tensor(obj) and obj.dim() >= 2 and obj.shape[-1] == d and id(obj) not in weights:
            rows += obj.numel() // d
    return rows


def test_token_pass_holds_one_batch_of_hidden_states(monkeypatch, minilm_corpus, direct_model):
    """A census of every live tensor of width d: before each forward pass no hidden state (nor copy, slice or
    per-layer input of one) is left from the batch before; while a layer is encoded, what is alive is at
    most that batch's hidden states of each SAE layer and one layer's token rows; no batch is larger than the
    configured padded-token bound."""
    from compute import sae as sae_pkg

    sentences, _ = minilm_corpus
    tok, model = direct_model
    d = model.config.hidden_size
    rng = np.random.default_rng(0)
    saes = {}
    for layer in (2, 5):
        X = rng.standard_normal((300, d)).astype(np.float32)
        saes[layer] = sae_pkg.fit(X, parse_run({"model": "x", "sae": {"d_sae": 32, "k": 2, "steps": 5}}).sae)
    weights = {id(t) for m in (model, *saes.values()) for t in (*m.parameters(), *m.buffers())}
    before, during, batch_rows = [], [], []
    forward = contexts._forward

    def tracked(*a, **kw):
        before.append(_activation_rows(d, weights))
        h = forward(*a, **kw)
        batch_rows.append(h.shape[1] * h.shape[2])
        return h

    def on_batch(layer, n):
        assert n == batch_rows[-1]
        if layer == 2:  # the first layer of each batch: its hidden states are alive, and nothing more
            during.append(_activation_rows(d, weights))

    monkeypatch.setattr(contexts, "_forward", tracked)
    base = _activation_rows(d, weights)  # whatever other tests left alive
    contexts.token_pass(
        tok, model, sentences[:32], ["the", "of"], saes, ContextsConfig(), batch_size=8, on_batch=on_batch
    )
    before, during = np.array(before) - base, np.array(during) - base
    assert len(before) >= 4 and (before == 0).all(), before
    # alive while a layer is encoded: the batch's hidden states of the SAEs' 2 layers, and that layer's
    # non-special token rows (fewer than the batch's padded rows): one batch per layer, nothing more
    assert all(2 * b <= n < 3 * b for n, b in zip(during, batch_rows)), (during, batch_rows)
    assert max(batch_rows) <= 8 * 128


def test_kept_hidden_states_give_the_second_forward_pass_outputs(monkeypatch, minilm_corpus, direct_model):
    # the extraction keeps every token's states for the token pass, which then gives what its own forward
    # pass gives, bit for bit; above the budget nothing is kept
    from compute import sae as sae_pkg

    sentences, _ = minilm_corpus
    sentences = sentences[:48]
    tok, model = direct_model
    rng = np.random.default_rng(1)
    saes = {
        layer: sae_pkg.fit(
            rng.standard_normal((300, 384)).astype(np.float32),
            parse_run({"model": "x", "sae": {"d_sae": 32, "k": 3, "steps": 5}}).sae,
        )
        for layer in (1, 4)
    }
    ext = contextual.extract(tok, model, sentences, ["the", "bank"], [1, 4], batch_size=8, keep_states=True)
    n_tokens = sum(len(x) for x in tok(sentences, truncation=True, max_length=512)["input_ids"])
    assert {k: v.shape for k, v in ext.states.items()} == {1: (n_tokens, 384), 4: (n_tokens, 384)}
    words, cfg = ["the", "bank", "of"], ContextsConfig()
    direct = contexts.token_pass(tok, model, sentences, words, saes, cfg, batch_size=8)
    kept = contexts.token_pass(tok, model, sentences, words, saes, cfg, batch_size=8, states=ext.states)
    for layer in saes:
        assert direct[layer].keys() == kept[layer].keys()
        for key, value in direct[layer].items():
            if isinstance(value, dict):
                assert value == kept[layer][key]
            else:
                np.testing.assert_array_equal(value, kept[layer][key], err_msg=f"L{layer} {key}")
    with pytest.raises(ValueError, match="not of this corpus"):
        contexts.token_pass(tok, model, sentences[:40], words, saes, cfg, batch_size=8, states=ext.states)
    monkeypatch.setattr(contextual, "STATES_BUDGET", 2 * 384 * 4 * n_tokens - 1)
    assert contextual.extract(tok, model, sentences, ["the"], [1, 4], batch_size=8, keep_states=True).states is None


def test_two_planted_senses_split_by_dominant_feature(direct_model):
    """'bank' by a river and 'bank' with money: an SAE whose two features are the two senses' directions
    (found here, from a direct forward pass) puts each context's dominant feature on its own sense."""
    from compute import sae as sae_pkg
    from dashboard.lib.contexts import senses

    river = [
        f"We sat on the {a} bank of the river and watched the {b}."
        for a in ("grassy", "muddy", "steep", "east", "west")
        for b in ("ducks", "water", "boats", "fish")
    ]
    money = [
        f"She paid the {a} into her bank account to cover the {b}."
        for a in ("cheque", "cash", "salary", "loan", "rent")
        for b in ("bill", "mortgage", "fees", "debt")
    ]
    sentences = [s for pair in zip(river, money) for s in pair]
    tok, model = direct_model
    layer = 4

    def bank_vector(s):
        enc = tok(s, return_tensors="pt")
        t = tok.convert_ids_to_tokens(enc["input_ids"][0]).index("bank")
        with torch.no_grad():
            return model(**enc, output_hidden_states=True).hidden_states[layer][0, t].numpy()

    r = np.mean([bank_vector(s) for s in river[:3]], 0)
    m = np.mean([bank_vector(s) for s in money[:3]], 0)
    u = (r - m) / np.linalg.norm(r - m)
    centre = (r + m) / 2
    W_enc = np.zeros((384, 4), np.float32)
    W_enc[:, 0], W_enc[:, 1] = u, -u
    cfg = parse_run({"model": "x", "sae": {"d_sae": 4, "k": 1}}).sae
    planted = sae_pkg.from_arrays(
        {
            "W_enc": W_enc,
            "b_enc": np.zeros(4),
            "W_dec": W_enc.T.copy(),
            "b_dec": np.zeros(384),
            "norm_mean": centre,
            "norm_scale": np.ones(1),
        },
        cfg.model_dump(),
    )
    tok2, model2 = contextual.load_transformer("minilm-l6")
    out = contexts.token_pass(tok2, model2, sentences, ["bank"], {layer: planted}, ContextsConfig(per_word=100))
    o = out[layer]
    ptr = o["contexts/word_ptr"]
    assert ptr[1] == len(sentences)
    sent, feats = o["contexts/word_sentence"][: ptr[1]], o["contexts/word_features"][: ptr[1]]
    groups = senses(feats, o["contexts/word_acts"][: ptr[1]])
    assert len(groups) == 2
    for g in groups:
        kinds = {("river" in sentences[sent[i]]) for i in g["rows"]}
        assert len(kinds) == 1  # each sense group is one planted sense
    assert sorted(len(g["rows"]) for g in groups) == [20, 20]


def test_running_top_matches_a_full_sort():
    rng = np.random.default_rng(1)
    F, K = 7, 5
    top = contexts.RunningTop(F, K)
    all_f, all_v, all_i = [], [], []
    next_id = 0
    for _ in range(30):
        n = int(rng.integers(0, 40))
        f = rng.integers(0, F, n)
        v = rng.random(n).astype(np.float32)
        ids = np.arange(next_id, next_id + n)
        next_id += n
        top.update(f, v.astype(np.float64), ids, v)
        all_f += list(f)
        all_v += list(v)
        all_i += list(ids)
    all_f, all_v, all_i = map(np.asarray, (all_f, all_v, all_i))
    for f in range(F):
        sel = np.flatnonzero(all_f == f)
        best = sel[np.lexsort((all_i[sel], -all_v[sel]))][:K]
        np.testing.assert_array_equal(top.id[f, : len(best)], all_i[best])
        np.testing.assert_allclose(top.val[f, : len(best)], all_v[best])


def test_corpus_sources_validate_and_combine(tmp_path, monkeypatch, sts_dir):
    base = {"model": "minilm-l6"}
    for bad, msg in [
        ([], "empty list"),
        (["lee", "lee"], "listed twice"),
        (["stsb:"], "names no language"),
        ([""], "empty corpus source"),
    ]:
        with pytest.raises(PlanError, match=msg) as e:
            parse_run({**base, "corpus": bad})
        assert "\n" not in str(e.value) and "run.corpus" in str(e.value)
    (tmp_path / "a.txt").write_text("One sentence here. The bank is open.\n", encoding="utf-8")
    got = contextual.read_corpora(["lee", str(tmp_path / "a.txt"), "stsb:en"], sts_dir=sts_dir)
    lee = list(dict.fromkeys(contextual.read_corpus("lee")))
    assert got[: len(lee)] == lee and "The bank is open." in got
    assert len(got) == len(set(got)) > 15000  # Lee + every English STS-B split
    # No STS folder configured: the stsb source is left out, and the stored config says so.

    monkeypatch.delenv("LEXISCOPE_STS_DIR", raising=False)
    cfg = prepare_corpus(parse_run({**base, "corpus": ["lee", "stsb:en"]}), None)
    assert cfg.corpus == "lee" and train_on(cfg) == "tokens"
    with pytest.raises(PlanError, match="no STS folder"):
        prepare_corpus(parse_run({**base, "corpus": "stsb:en"}), None)
    with pytest.raises(PlanError, match="train_on"):
        prepare_corpus(parse_run({"model": "glove-6b-50d", "sae": {"train_on": "tokens"}}), None)
    assert train_on(prepare_corpus(parse_run({"model": "glove-6b-50d"}), None)) == "words"
    parse_plan({"runs": [{**base, "corpus": ["lee", "stsb:en"]}]})


def test_jobs_name_corpus_sources_and_train_on_within_the_policy():
    from dashboard.components.jobs_form import config_form, form_config
    from jobs.policy import Policy, check_run

    values = {"model": "minilm-l6", "corpus": "lee, stsb:en", "train_on": "words", "top_n": 500}
    cfg = form_config(values)
    assert cfg["corpus"] == ["lee", "stsb:en"] and cfg["sae"]["train_on"] == "words"
    run = check_run(cfg, Policy())
    assert run.corpus == ["lee", "stsb:en"] and run.sae.train_on == "words"
    back = config_form(run.model_dump(mode="json"))
    assert back["corpus"] == "lee, stsb:en" and back["train_on"] == "words"
    with pytest.raises(PlanError, match=r"run\.corpus: '/etc/passwd'"):
        check_run({**cfg, "corpus": ["lee", "/etc/passwd"]}, Policy())
    assert "corpus" not in form_config({"model": "minilm-l6", "corpus": " "})
    assert "train_on" not in form_config({"model": "minilm-l6", "train_on": "default"})["sae"]
