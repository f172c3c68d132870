"""Chains the stages (vocabulary -> embeddings -> geometry -> projections -> SAE) and writes one run
per (model, layer) through store/. Every stage is seeded from the plan, so a rerun reproduces it."""

import logging
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from compute import embeddings, geometry, labels, layer_stack, parallel, projections, similarity, sts, vocabulary
from compute.config import Plan, PlanError, RunConfig, corpus_sources
from compute.device import resolve_device
from compute.embeddings import ModelError
from compute.progress import Progress
from store import Catalog, RunWriter, default_root
from store.corpora import write_corpus
from store.schema import (
    CONTEXTS,
    EMBEDDINGS,
    ENHANCED,
    GEOMETRY,
    GEOMETRY_TOKENS,
    PROJECTIONS,
    SAE,
    TOKENS,
    WORDS,
    family_of,
)
from store.settings import settings

log = logging.getLogger("lexiscope.compute")


# The stage of analyse_layer that waits for (or computes) a layer's word_analysis.
WORD_STAGE = "geometry, enhancement, word similarity"

# What a contextual run's SAE trains on when the plan leaves `sae.train_on` unset (benchmarks/contexts.py).
DEFAULT_TRAIN_ON = "tokens"


@dataclass
class LayerInput:
    layer: int
    X: np.ndarray  # (n, d) word vectors analysed in this run
    extra: dict = field(default_factory=dict)  # more stage output, e.g. words/n_contexts, tokens/*
    tokens: np.ndarray | None = None  # (m, d) token sample for the token-level geometry
    train: np.ndarray | None = None  # (t, d) token vectors the SAE trains on (sae.train_on: tokens)
    sae_model: object | None = None  # the layer's SAE when it was trained before the token pass
    knn: tuple | None = None  # the word vectors' cosine k-NN graph (compute.projections.word_knn)
    baseline: object | None = None  # pending piece: the SAE's random-decoder baseline (_submit_baseline)
    sae_pending: object | None = None  # pending piece: the layer's SAE, trained by a worker
    feature_map: object | None = None  # pending piece: the 2-D map of the SAE's decoder directions
    analysis: object | None = None  # pending piece: the layer's word_analysis (several layers only)
    maps: list = field(default_factory=list)  # pending pieces whose results are {schema path: word map}


def prepare_corpus(cfg: RunConfig, sts_dir=None) -> RunConfig:
    """Before a run: drop its `stsb:` corpus sources (one log line) when no STS folder is configured, as the
    `sts` block is dropped; refuse `sae.train_on: tokens` for static models."""
    contextual = not embeddings.is_static(cfg.model)
    if cfg.sae is not None and not contextual and cfg.sae.train_on == "tokens":
        raise PlanError(f"sae.train_on: static model '{cfg.model}' has no tokens; use 'words'")
    if not contextual or cfg.corpus is None:
        return cfg
    sources = corpus_sources(cfg.corpus)
    if sts_dir or settings().sts_dir or not any(s.startswith("stsb:") for s in sources):
        return cfg
    kept = [s for s in sources if not s.startswith("stsb:")]
    if not kept:
        raise PlanError("corpus: every source is 'stsb:<lang>' and no STS folder is configured (LEXISCOPE_STS_DIR)")
    log.warning("corpus: no STS folder is configured, so %s is left out", ", ".join(set(sources) - set(kept)))
    return cfg.model_copy(update={"corpus": kept if len(kept) > 1 else kept[0]})


def train_on(cfg: RunConfig) -> str:
    """What the run's SAE trains on: `sae.train_on`, else DEFAULT_TRAIN_ON for transformers and words for static
    vectors (resolved here, not in the config, so that a run's config hash does not change with the default)."""
    if cfg.sae is not None and cfg.sae.train_on:
        return cfg.sae.train_on
    return "words" if embeddings.is_static(cfg.model) else DEFAULT_TRAIN_ON


def run_id_for(cfg: RunConfig, layer: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", cfg.name or cfg.model.rsplit("/", 1)[-1]).strip("-").lower()
    return f"{slug or 'run'}-L{layer}-{cfg.config_hash(layer)[:8]}"


def precompute(
    plan: Plan, store=None, device: str = "auto", force: bool = False, progress: Progress | None = None
) -> list[str]:
    """Run every run of the plan; returns the run ids written or already present."""
    progress = progress or Progress()
    ids = []
    wordnet = WordNet()
    # STS data of every run is read (and checked) before any run is computed or written.
    for cfg in sts.prepare_runs(plan.runs, plan.sts_dir):
        cfg = prepare_corpus(cfg, sts.folder_of(cfg.sts, plan.sts_dir))
        ids += _precompute_prepared(cfg, store, device, force, progress, wordnet, sts_dir=plan.sts_dir)
    compare_new_runs(store, ids, progress)
    return ids


def precompute_run(
    cfg: RunConfig, store=None, device: str = "auto", force: bool = False, progress: Progress | None = None
) -> list[str]:
    """All layers of one run config. Layers whose config hash is already stored are skipped."""
    cfg = sts.prepare_runs([cfg])[0]
    ids = _precompute_prepared(prepare_corpus(cfg, sts.folder_of(cfg.sts)), store, device, force, progress, WordNet())
    compare_new_runs(store, ids, progress)
    return ids


def compare_new_runs(store, ids: list[str], progress: Progress | None = None):
    """After runs are written: compare the natural pairs they belong to (compute/comparison.py), e.g. the default
    plan's GloVe vs MiniLM L6 and MiniLM L0 vs L6, when both runs are stored and the pair is not yet compared."""
    from compute import comparison

    comparison.compare_natural_pairs(store, ids, progress=progress or Progress())


class WordNet:
    """WordNet for the labels of a plan's runs: when it is absent the one line of compute/labels.py is logged once,
    and runs are labelled by their concept groups and top words. The labels of a run are a piece
    (compute.parallel) that opens WordNet where it runs."""

    def __init__(self):
        self._checked, self._present = False, False

    def submit(self, vocab, pieces: parallel.Pieces):
        if not self._checked:
            self._checked, self._present = True, not labels.missing_files(labels.wordnet_dir())
            if not self._present:
                labels.log_wordnet_missing()
        absent = {} if self._present else {"reader": None}  # None: known absent, nothing more is logged
        return pieces.submit_for(len(vocab.words))(
            labels.run_labels, list(vocab.words), vocab.groups, list(vocab.group_names), **absent
        )


def _precompute_prepared(cfg: RunConfig, store, device, force, progress, wordnet: WordNet, sts_dir=None) -> list[str]:
    """precompute_run for a config whose STS data sts.prepare_runs has already checked."""
    root = default_root(store)
    catalog = Catalog(root)
    device = resolve_device(device)
    progress = progress or Progress()
    name = cfg.name or cfg.model

    if embeddings.is_static(cfg.model):
        kind = "static"
    else:
        from compute import contextual

        if not contextual.is_transformer(cfg.model):
            raise ModelError(
                f"unknown model '{cfg.model}': not a bundled model (glove-6b-50d, minilm-l6), "
                f"not a word-vector file and not a transformer directory or Hugging Face id"
            )
        kind = "contextual"

    with parallel.Pieces() as pieces:
        if kind == "static":
            if cfg.layers != "all" and cfg.layers != [0]:
                raise PlanError(f"layers: static model '{cfg.model}' has only layer 0")
            if not force and (found := catalog.find_hash(cfg.config_hash(0))):
                log.info("%s: already in the store as %s", name, found)
                return [found]
            with progress.child(name).stage("vocabulary"):
                vocab = vocabulary.build(cfg.vocabulary)
                source = embeddings.load_static(cfg.model)
                rows = source.lookup(vocab.words)
                keep = np.flatnonzero(rows >= 0)
                if len(keep) < 10:
                    raise PlanError(f"vocabulary: only {len(keep)} words are in model '{cfg.model}'")
                vocab = vocab.subset(keep)
                X = source.vectors[rows[keep]]
            inputs, n_layers = [LayerInput(0, X, sts.static_output(cfg, source) if cfg.sts else {})], 1
            labs = wordnet.submit(vocab, pieces)
            aligned = submit_pieces(cfg, inputs, pieces, device)
            full_words, full_X = source.words, source.vectors
        else:
            inputs, n_layers, vocab, labs, aligned = _contextual_inputs(
                cfg, catalog, device, force, progress.child(name), pieces, wordnet, sts_dir
            )
            if not inputs:
                return [catalog.find_hash(cfg.config_hash(layer)) for layer in _requested_layers(cfg, n_layers)]
            full_words = full_X = None

        config = cfg.model_dump(mode="json")
        family = family_of(cfg.model, config)

        def write(layer: int, out: dict) -> str:
            run_id = run_id_for(cfg, layer)
            with progress.child(f"{name} L{layer}").stage("write"):
                with RunWriter(
                    root,
                    run_id,
                    model=cfg.model,
                    layer=layer,
                    n_layers=n_layers,
                    source=kind,
                    config=config,
                    config_hash=cfg.config_hash(layer),
                    family=family,
                ) as w:
                    w.write_all(out)
            return run_id

        across = (
            across_layers(cfg, inputs, device, progress.child(name), aligned, pieces) if kind == "contextual" else {}
        )
        written, next_decoder, pending = [], None, None
        # Last layer first, so each layer's SAE features can be matched to those of the layer above. A layer
        # is written once the layer below it is analysed, so that its match into layer L-1 can go in too.
        for item in sorted(inputs, key=lambda i: -i.layer):
            p = progress.child(f"{name} L{item.layer}")
            out, decoder = analyse_layer(cfg, item, vocab, labs, full_words, full_X, device, p, next_decoder, pieces)
            out.update(across.get(item.layer, {}))
            next_decoder = decoder
            if pending is not None:
                above, above_out = pending
                if above == item.layer + 1:
                    above_out.update(previous_layer_output(above_out, decoder))
                if across:
                    above_out.update(layer_stack.word_shift(above_out, out, item.layer))
                written.append(write(above, above_out))
            pending = (item.layer, out)
        if pending is not None:
            written.append(write(*pending))
        return written


def across_layers(
    cfg: RunConfig, inputs: list[LayerInput], device, progress: Progress, aligned: list, pieces: parallel.Pieces
) -> dict[int, dict]:
    """The cross-layer outputs of the layers of one call ({layer: {path: value}}; compute/layer_stack.py): the
    aligned word maps (`aligned`: the pending pieces submit_pieces started) and, with an SAE, the feature lineage.
    Trains each layer's SAE here when the token pass did not (analyse_layer then uses it), since the lineage needs
    every layer's decoder before any layer is written."""
    items = sorted(inputs, key=lambda i: i.layer)
    if len(items) < 2:
        return {}
    layers = [i.layer for i in items]
    out: dict[int, dict] = {layer: {} for layer in layers}
    if cfg.sae is not None:
        out = _lineage(cfg, items, device, progress, pieces)
    with progress.stage("aligned maps") as update:
        for pending in aligned:
            for layer, o in parallel.result(pending, lambda: update(0.0)).items():
                out[layer].update(o)
    return out


def submit_pieces(cfg: RunConfig, inputs: list[LayerInput], pieces: parallel.Pieces, device: str = "cpu") -> list:
    """Starts the single-threaded pieces of every layer (compute.parallel), those needed first first: on the CPU
    each layer's SAE (`item.sae_pending`), then the aligned word maps across the layers (returned, pending), each
    layer's own maps (`item.maps`) and, for a single layer, its SAE random-decoder baseline before them (see
    submit_analyses for several layers). Computes each layer's k-NN graph here, once, for its maps, its aligned
    maps and its stored neighbours."""
    p = cfg.projections
    items = sorted(inputs, key=lambda i: i.layer)
    for item in items:
        item.X = np.ascontiguousarray(item.X, dtype=np.float32)
    submit = pieces.submit_for(max(len(i.X) for i in items))
    from compute import sae

    if cfg.sae is not None and device == "cpu":
        for item in items[::-1]:  # first in the queue: the token pass, the lineage and the features wait for them
            X = item.train if item.train is not None else item.X
            item.sae_pending = submit(sae.fit, np.ascontiguousarray(X, np.float32), cfg.sae, device)
            item.train = None
    if len(items) == 1:  # a static run: its baseline is needed before its maps
        _submit_baseline(cfg, items[0], submit, device)
    for item in items:  # while the workers train the SAEs
        item.knn = projections.word_knn(item.X, p)
    layers, vectors, knns = [i.layer for i in items], [i.X for i in items], [i.knn for i in items]
    aligned = []
    if p.aligned and len(items) > 1:
        for dim in projections.map_dims(p, min(len(X) for X in vectors)):
            aligned.append(submit(layer_stack.aligned_word_maps, cfg, layers, vectors, None, knns, (dim,)))
    for item in items:
        dims = projections.map_dims(p, len(item.X))
        start = projections.map_start(item.X, *item.knn, p, dims) if dims else None  # shared by the dims' pieces
        item.maps = [submit(projections.word_maps, item.X, item.knn, p, (d,), start) for d in dims]
    return aligned


def submit_analyses(cfg: RunConfig, inputs: list[LayerInput], pieces: parallel.Pieces, device: str, vocab) -> None:
    """For several layers, after submit_pieces and after the decoder maps layer_sae starts when it can (analyse_layer
    waits for a layer's decoder map, its baseline and its analysis together): last layer first, as analyse_layer
    takes them, each layer's SAE random-decoder baseline (`item.baseline`, on the CPU) and word_analysis
    (`item.analysis`)."""
    if len(inputs) < 2:
        return
    submit = pieces.submit_for(max(len(i.X) for i in inputs))
    for item in sorted(inputs, key=lambda i: -i.layer):
        _submit_baseline(cfg, item, submit, device)
        item.analysis = submit(word_analysis, cfg, item.X, item.tokens, vocab.zipf, vocab.langs, vocab.words)


def _submit_baseline(cfg: RunConfig, item: LayerInput, submit, device: str) -> None:
    # On the word vectors, where the scores it is the baseline of are measured. Seeded, one thread: the same
    # weights in a worker. On a GPU it trains in analyse_layer.
    if cfg.sae is not None and cfg.sae.random_baseline and device == "cpu":
        from compute import sae

        item.baseline = submit(sae.fit, item.X, cfg.sae, device, None, True)


def layer_sae(cfg: RunConfig, item: LayerInput, device, progress: Progress, pieces: parallel.Pieces):
    """The layer's SAE (`item.sae_model`): trained by a worker (`item.sae_pending`) or here, on the token sample
    (`item.train`) or the word vectors; then its decoder map is started as a piece (`item.feature_map`)."""
    from compute import features, sae

    if item.sae_model is None:
        with progress.stage("sae") as update:
            if item.sae_pending is not None:
                item.sae_model, item.sae_pending = parallel.result(item.sae_pending, lambda: update(0.0)), None
            else:
                X = item.train if item.train is not None else item.X
                item.sae_model = sae.fit(np.ascontiguousarray(X, np.float32), cfg.sae, device=device, progress=update)
        item.train = None
    if item.feature_map is None:
        item.feature_map = pieces.submit_for(len(item.X))(features.feature_map, _decoder(item.sae_model), cfg.sae.seed)
    return item.sae_model


def _decoder(model) -> np.ndarray:
    """An SAE's decoder directions as a (d_sae, d) float32 array."""
    return model.W_dec.detach().cpu().numpy().astype(np.float32)


def _lineage(
    cfg: RunConfig, items: list[LayerInput], device, progress: Progress, pieces: parallel.Pieces
) -> dict[int, dict]:
    out: dict[int, dict] = {i.layer: {} for i in items}
    layers = [i.layer for i in items]
    from compute import sae

    for item in items[::-1]:  # their decoder maps queued last layer first
        layer_sae(cfg, item, device, progress.child(f"L{item.layer}"), pieces)
    with progress.stage("lineage") as update, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoders = [_decoder(i.sae_model) for i in items]
        acts = [sae.encode_numpy(i.sae_model, np.ascontiguousarray(i.X, np.float32)) for i in items]
        for layer, o in layer_stack.feature_lineage(cfg, layers, decoders, acts, update).items():
            out[layer].update(o)
    return out


def previous_layer_output(out: dict, decoder_below: np.ndarray | None) -> dict:
    """`sae/prev_layer_match` and `sae/prev_layer_cos` of a layer's output: for each of its features, the
    feature of layer L-1 whose decoder direction has the highest cosine (empty without both SAEs)."""
    if decoder_below is None or SAE.W_dec not in out:
        return {}
    from compute import features

    match, cos = features.match_features(out[SAE.W_dec], decoder_below)
    return {SAE.prev_layer_match: match, SAE.prev_layer_cos: cos}


def _requested_layers(cfg: RunConfig, n_layers: int) -> list[int]:
    if cfg.layers == "all":
        return list(range(n_layers))
    bad = [layer for layer in cfg.layers if layer >= n_layers]
    if bad:
        raise PlanError(f"layers: model '{cfg.model}' has layers 0..{n_layers - 1}, not {bad}")
    return sorted(set(cfg.layers))


def _contextual_inputs(cfg, catalog, device, force, progress, pieces, wordnet, sts_dir=None):
    """The layers' inputs, the vocabulary, its pending labels and the pending aligned maps of a contextual run."""
    from compute import contexts, contextual

    with progress.stage("load model"):
        tokenizer, model = contextual.load_transformer(cfg.model, device)
    n_layers = model.config.num_hidden_layers + 1
    layers = _requested_layers(cfg, n_layers)
    todo = [layer for layer in layers if force or not catalog.find_hash(cfg.config_hash(layer))]
    if not todo:
        return [], n_layers, None, None, []
    with progress.stage("vocabulary"):
        vocab = vocabulary.build(cfg.vocabulary)
        labs = wordnet.submit(vocab, pieces)  # computed by a worker during the extraction
        sentences = contextual.read_corpora(cfg.corpus, sts_dir=sts.folder_of(cfg.sts, sts_dir))
        corpus_key = write_corpus(catalog.root, sentences, corpus_sources(cfg.corpus))
    sts_pending = None
    if cfg.sts is not None and device == "cpu":  # a worker scores STS during the extraction
        sts_pending = pieces.submit_for(len(vocab.words))(sts.contextual_piece, cfg, todo, device)
    on_tokens = cfg.sae is not None and train_on(cfg) == "tokens"
    n_sample = max(cfg.geometry.token_sample, cfg.sae.train_tokens if on_tokens else 0)
    with progress.stage("extract") as update:
        ext = contextual.extract(
            tokenizer,
            model,
            sentences,
            vocab.words,
            todo,
            token_sample=n_sample,
            seed=cfg.geometry.seed,
            batch_size=cfg.batch_size,
            device=device,
            progress=update,
            keep_states=cfg.sae is not None and cfg.contexts is not None,  # for the token pass
            # the workers idle once the labels and STS are done: the rest of the corpus gets every core
            between_batches=pieces.widen_when_done([labs, sts_pending]) if device == "cpu" else None,
        )
    pieces.narrow()
    states, ext.states = ext.states, None
    sts_out = {}
    if cfg.sts is not None:
        with progress.stage("sts") as update:
            if sts_pending is not None:
                sts_out = parallel.result(sts_pending, lambda: update(0.0))
            else:
                sts_out = sts.contextual_outputs(tokenizer, model, cfg, ext.layers, device, progress=update)
    # The geometry's token sample: a seeded subset when more tokens were drawn for SAE training.
    geo = np.arange(len(ext.token_positions))
    if len(geo) > cfg.geometry.token_sample:
        geo = np.sort(np.random.default_rng(cfg.geometry.seed).choice(geo, cfg.geometry.token_sample, replace=False))
    inputs = []
    for i, layer in enumerate(ext.layers):
        extra = {
            **sts_out.get(layer, {}),
            WORDS.n_contexts: ext.n_contexts.astype(np.int32),
            TOKENS.text: list(ext.token_text[geo]),
            TOKENS.positions: ext.token_positions[geo].astype(np.int32),
        }
        train = ext.token_vectors[i] if on_tokens else None
        inputs.append(LayerInput(layer, ext.word_vectors[i], extra, ext.token_vectors[i][geo], train))
    del ext
    aligned = submit_pieces(cfg, inputs, pieces, device)
    if cfg.sae is not None and cfg.contexts is not None:
        # SAEs first, then one more pass over the corpus streams every token through every layer's SAE.
        for item in sorted(inputs, key=lambda i: -i.layer):  # their decoder maps queued last layer first
            layer_sae(cfg, item, device, progress.child(f"L{item.layer}"), pieces)
    submit_analyses(cfg, inputs, pieces, device, vocab)
    if cfg.sae is not None and cfg.contexts is not None:
        with progress.stage("contexts") as update:
            outs = contexts.token_pass(
                tokenizer,
                model,
                sentences,
                vocab.words,
                {item.layer: item.sae_model for item in inputs},
                cfg.contexts,
                batch_size=cfg.batch_size,
                device=device,
                seed=cfg.sae.seed,
                progress=update,
                states=states,
            )
        del states
        for item in inputs:
            outs[item.layer][CONTEXTS.path]["corpus"] = corpus_key
            item.extra.update(outs[item.layer])
    return inputs, n_layers, vocab, labs, aligned


def word_analysis(cfg: RunConfig, X, tokens, zipf, langs, sim_words, sim_X=None, progress=None) -> dict:
    """The stages of a layer that need only its vectors: geometry (of the words, of the token sample and per
    language), the isotropy enhancement and the neighbours after it, and word similarity before and after it,
    on `sim_words` and their vectors `sim_X` (default: X). A piece (compute.parallel) for runs of several layers."""
    X, g = np.ascontiguousarray(X, dtype=np.float32), cfg.geometry
    out = geometry.analyse(X, g, zipf)
    if tokens is not None and len(tokens) > 1:
        out.update(geometry.analyse(tokens, g, None, group=GEOMETRY_TOKENS))
    if len(set(langs)) > 1:
        out.update(geometry.per_language(X, np.asarray(langs), g))
    enh = geometry.fit_enhancement(X, g.clusters, g.removed(X.shape[1]), g.seed)
    out.update(geometry.enhancement_output(X, enh, g))
    idx, dist = projections.knn_cosine(enh.apply(X), cfg.projections.neighbors, g.seed, progress=progress)
    out.update(projections.neighbors_output(idx, dist, cfg.projections.neighbors, group=ENHANCED.neighbors))
    sim_X = X if sim_X is None else sim_X
    before = similarity.word_similarity(sim_words, sim_X)
    after = similarity.word_similarity(sim_words, sim_X, transform=enh.apply)
    out.update(similarity.similarity_output(before, after))
    return out


def _labels(labs, progress: Progress):
    """The run's labels, waiting (stage "labels") while a worker still computes them."""
    if not hasattr(labs, "get"):
        return labs
    with progress.stage("labels") as update:
        return parallel.result(labs, lambda: update(0.0))


def analyse_layer(
    cfg: RunConfig,
    item: LayerInput,
    vocab,
    labs,
    full_words,
    full_X,
    device,
    progress,
    next_decoder,
    pieces: parallel.Pieces,
) -> tuple[dict, np.ndarray | None]:
    """Every stage for one layer (`labs`: the words' labels, compute/labels.py, or a pending piece of them); returns
    the run's output dict and its SAE decoder (or None). What workers compute (compute.parallel) is collected as
    late as it can be, so that this process works meanwhile."""
    X = np.ascontiguousarray(item.X, dtype=np.float32)
    out = {**vocab.output(), EMBEDDINGS: X, **item.extra}
    sim_words, sim_X = (full_words, full_X) if full_words is not None else (vocab.words, X)
    with progress.stage(WORD_STAGE) as update:
        if item.analysis is not None:
            out.update(parallel.result(item.analysis, lambda: update(0.0)))
        else:
            out.update(word_analysis(cfg, X, item.tokens, vocab.zipf, vocab.langs, sim_words, sim_X, update))
    labs = _labels(labs, progress)
    decoder = None
    if cfg.sae is not None:
        from compute import features, sae

        model = layer_sae(cfg, item, device, progress, pieces)
        baseline = None
        if cfg.sae.random_baseline:  # on the word vectors, where the scores it is the baseline of are measured
            with progress.stage("sae random-decoder baseline") as update:
                if item.baseline is not None:
                    baseline = parallel.result(item.baseline, lambda: update(0.0))
                else:
                    baseline = sae.fit(X, cfg.sae, device=device, progress=update, freeze_decoder=True)
        with progress.stage("features") as update:
            out.update(
                features.sae_output(
                    model,
                    X,
                    vocab.words,
                    labs,
                    cfg.sae,
                    model.history,
                    seed=cfg.sae.seed,
                    baseline=baseline,
                    progress=update,
                    pending_map=item.feature_map,
                )
            )
            out.update(features.sae_similarity_output(model, sim_words, sim_X))
            out[SAE.path] = {**out.get(SAE.path, {}), "train_on": train_on(cfg)}
            decoder = out[SAE.W_dec]
            if next_decoder is not None:
                match, cos = features.match_features(decoder, next_decoder)
                out[SAE.next_layer_match], out[SAE.next_layer_cos] = match, cos
    out.update(labels.labels_output(labs))
    with progress.stage("projections") as update:  # the maps submit_pieces started
        out.update(projections.neighbors_output(*item.knn, cfg.projections.neighbors))
        for pending in item.maps:
            out.update(parallel.result(pending, lambda: update(0.0)))
        if cfg.projections.pca2:  # the word-map PCA is the frequency-bias PCA the geometry stage computed
            out[PROJECTIONS.pca2] = out[GEOMETRY.pca2]
    return out, decoder
