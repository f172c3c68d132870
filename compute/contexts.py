"""Features in context: every corpus token streamed through each layer's SAE, batch by batch.

One forward pass per batch gives every layer's hidden states (or they are read from those the extraction kept,
when they fit its budget: compute/contextual.py, STATES_BUDGET); each layer's SAE encodes that batch's tokens and
the batch is dropped, so at most one batch of hidden states per layer is added. Kept per feature: its top
contexts (a running top-k), a uniform sample of the tokens it fires on (bottom-k of a hash priority, so the
sample does not depend on batch order) cut into activation intervals as sae_vis does, its token density, and
the token-level FVU / L0 / dead share. Kept per word type: up to `per_word` of its corpus occurrences (chosen
by the same hash priority) and, for each, the top features of the occurrence vector (the mean of its
sub-token vectors, the vector averaged into the word-type vector).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

from compute.contextual import _WORD, _batches, _forward, _max_length, _pad, word_normalizer
from store.schema import CONTEXTS

N_INTERVALS = 5  # activation intervals of the quantile samples (as /sae/quantile_*)
PER_INTERVAL = 5


def _priority(ids: np.ndarray, salt: int) -> np.ndarray:
    """A seeded pseudo-random float in [0, 1) per id (splitmix64), the same whatever the batch order."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the hash intends
        z = np.asarray(ids, np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


class RunningTop:
    """Per feature, the K candidates with the largest key seen so far (ties: smaller id first); numpy only.
    A candidate is (feature, key, id, value); ids are global token ids. Candidates are buffered and merged into
    the (F, K) tables once the buffer holds about F x K of them: merging re-sorts the tables, which cost most of
    the token pass when done for every batch. Reading `key`, `id` or `val` merges what is buffered."""

    def __init__(self, n_features: int, k: int):
        self.k = k
        self._key = np.full((n_features, k), -np.inf)
        self._id = np.full((n_features, k), -1, np.int64)
        self._val = np.zeros((n_features, k), np.float32)
        self._buffer: list[tuple] = []
        self._buffered = 0

    def update(self, feat: np.ndarray, key: np.ndarray, ids: np.ndarray, val: np.ndarray) -> None:
        beat = key > self._key[feat, -1]  # only candidates that beat a feature's current K-th can enter
        if not beat.any():
            return
        self._buffer.append((feat[beat], key[beat], ids[beat], val[beat]))
        self._buffered += int(beat.sum())
        if self._buffered >= self._key.size:
            self._merge()

    def _merge(self) -> None:
        if not self._buffer:
            return
        feat, key, ids, val = (np.concatenate(parts) for parts in zip(*self._buffer))
        self._buffer, self._buffered = [], 0
        touched = np.unique(feat)
        f = np.concatenate([np.repeat(touched, self.k), feat])
        kk = np.concatenate([self._key[touched].ravel(), key])
        ii = np.concatenate([self._id[touched].ravel(), ids])
        vv = np.concatenate([self._val[touched].ravel(), val])
        order = np.lexsort((ii, -kk, f))
        f, kk, ii, vv = f[order], kk[order], ii[order], vv[order]
        rank = np.arange(len(f)) - np.searchsorted(f, f, side="left")
        keep = rank < self.k
        self._key[f[keep], rank[keep]] = kk[keep]
        self._id[f[keep], rank[keep]] = ii[keep]
        self._val[f[keep], rank[keep]] = vv[keep]

    @property
    def key(self) -> np.ndarray:
        self._merge()
        return self._key

    @property
    def id(self) -> np.ndarray:
        self._merge()
        return self._id

    @property
    def val(self) -> np.ndarray:
        self._merge()
        return self._val


@dataclass
class _LayerState:
    top: RunningTop
    sample: RunningTop
    fired: np.ndarray  # (F,) int64 tokens on which each feature fires
    err: float = 0.0  # sum ||x - x_hat||^2
    sum_x: np.ndarray | None = None
    sum_sq: float = 0.0
    nnz: int = 0


@dataclass
class _Tokens:
    """The corpus's tokens as flat arrays (sentence s is rows start[s]:start[s+1]; a row is a global token id):
    a few bytes per token, where the tokenizer's own output keeps Python lists and per-token strings."""

    ids: np.ndarray  # (T,) int32
    offsets: np.ndarray  # (T, 2) int32 character spans
    special: np.ndarray  # (T,) bool
    start: np.ndarray  # (n + 1,) int64

    def of(self, s: int) -> slice:
        return slice(int(self.start[s]), int(self.start[s + 1]))


def _tokenize(tokenizer, sentences, max_length: int, chunk: int = 4096) -> _Tokens:
    """Tokenize chunk by chunk, keeping only the flat arrays."""
    ids, offsets, special, lengths = [], [], [], []
    for a in range(0, len(sentences), chunk):
        enc = tokenizer(
            list(sentences[a : a + chunk]),
            add_special_tokens=True,
            truncation=True,
            max_length=max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        lengths += [len(x) for x in enc["input_ids"]]
        ids.append(np.fromiter(chain.from_iterable(enc["input_ids"]), np.int32))
        offsets.append(np.fromiter(chain.from_iterable(chain.from_iterable(enc["offset_mapping"])), np.int32))
        special.append(np.fromiter(chain.from_iterable(enc["special_tokens_mask"]), bool))
        del enc
    start = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    ids, offsets, special = (
        np.concatenate(p) if p else np.zeros(0, t) for p, t in zip((ids, offsets, special), (np.int32, np.int32, bool))
    )
    return _Tokens(ids, offsets.reshape(-1, 2), special, start)


def _occurrences(tokens: _Tokens, sentences, key, type_of):
    """Every corpus occurrence of a vocabulary type: (type, sentence, first token, char start, char end) and
    per token (global id) its occurrence number (-1 none)."""
    occ_rows = []
    tok_occ = np.full(len(tokens.ids), -1, np.int64)
    for s, text in enumerate(sentences):
        offs = tokens.offsets[tokens.of(s)].astype(np.int64)
        special = tokens.special[tokens.of(s)]
        occ_of = tok_occ[tokens.of(s)]  # a view: filled in place
        spans = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
        if spans:
            starts = np.array([a for a, _, _ in spans])
            ends = np.array([b for _, b, _ in spans])
            k = np.searchsorted(starts, offs[:, 0], side="right") - 1
            inside = (k >= 0) & ~special & (offs[:, 1] > offs[:, 0]) & (offs[:, 0] < ends[np.clip(k, 0, None)])
            for w in np.unique(k[inside]):
                t = type_of.get(key(spans[w][2]), -1)
                if t < 0:
                    continue
                occ_of[inside & (k == w)] = len(occ_rows)
                occ_rows.append((t, s, int(np.flatnonzero(inside & (k == w))[0]), spans[w][0], spans[w][1]))
    occ = np.array(occ_rows, np.int64).reshape(-1, 5)
    return occ, tok_occ


def _choose_contexts(occ: np.ndarray, per_word: int, seed: int) -> np.ndarray:
    """Indices of the occurrences kept: per type the `per_word` with the smallest hash priority, grouped by
    type, then in corpus order."""
    if not len(occ):
        return np.zeros(0, np.int64)
    prio = _priority(np.arange(len(occ)), seed + 7)
    order = np.lexsort((prio, occ[:, 0]))
    t = occ[order, 0]
    rank = np.arange(len(t)) - np.searchsorted(t, t, side="left")
    kept = order[rank < per_word]
    return kept[np.lexsort((kept, occ[kept, 0]))]


def token_pass(
    tokenizer,
    model,
    sentences: list[str],
    words: list[str],
    saes: dict,
    cfg,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
    progress=None,
    on_batch=None,
    states: dict | None = None,
) -> dict[int, dict]:
    """{layer: `/contexts` output} for every layer in `saes` ({layer: SAE}); `cfg` is a ContextsConfig.
    `states`: the hidden states the extraction kept (`Extraction.states`), read instead of a second forward pass.
    `on_batch(layer, n_rows)` is told the rows of each batch of hidden states a layer holds (for tests)."""
    layers = sorted(saes)
    key = word_normalizer(tokenizer)
    type_of: dict[str, int] = {}
    row_type = np.array([type_of.setdefault(key(w), len(type_of)) for w in words], np.int64)
    max_length = _max_length(tokenizer, model)
    tokens = _tokenize(tokenizer, sentences, max_length)
    lengths, sent_start = np.diff(tokens.start), tokens.start
    if states is not None and any(len(states[layer]) != len(tokens.ids) for layer in layers):
        raise ValueError("token_pass: the kept hidden states are not of this corpus's tokens")
    occ, tok_occ = _occurrences(tokens, sentences, key, type_of)
    chosen = _choose_contexts(occ, cfg.per_word, seed)
    slot_of = np.full(len(occ), -1, np.int64)
    slot_of[chosen] = np.arange(len(chosen))
    J = cfg.features_per_context
    ctx_feat = {layer: np.full((len(chosen), J), -1, np.int32) for layer in layers}
    ctx_act = {layer: np.zeros((len(chosen), J), np.float32) for layer in layers}

    d = model.config.hidden_size
    running = {}
    for layer in layers:
        F = saes[layer].d_sae
        running[layer] = _LayerState(
            RunningTop(F, cfg.top_k), RunningTop(F, cfg.sample_size), np.zeros(F, np.int64), sum_x=np.zeros(d)
        )
        saes[layer].to(device).eval()
    with_types = "token_type_ids" in tokenizer.model_input_names
    pad_id = tokenizer.pad_token_id or 0
    n_tokens, done = 0, 0
    total = max(1, int(lengths.sum()))
    with torch.inference_mode():
        for idx in _batches(lengths, batch_size):
            if states is None:
                inputs, T = _pad([tokens.ids[tokens.of(i)] for i in idx], pad_id, with_types, device)
                h_LND = _forward(model, inputs, layers, device).reshape(len(layers), len(idx) * T, d)
            else:
                h_LND, T = _kept(states, layers, tokens, idx, device)
            rows, gids, occ_rows = [], [], []
            for r, i in enumerate(idx):
                special = tokens.special[tokens.of(i)]
                t = np.flatnonzero(~special)
                rows.append(r * T + t)
                gids.append(sent_start[i] + t)
                o = tok_occ[tokens.of(i)]
                occ_rows.append(np.stack([r * T + np.flatnonzero(o >= 0), o[o >= 0]], 1))
            rows_t = torch.as_tensor(np.concatenate(rows), device=h_LND.device)
            gid = np.concatenate(gids)
            occ_rt = np.concatenate(occ_rows)
            occ_rt = occ_rt[slot_of[occ_rt[:, 1]] >= 0]  # the tokens of the chosen occurrences
            n_tokens += len(gid)
            for li, layer in enumerate(layers):
                x_ND = h_LND[li].index_select(0, rows_t)
                if on_batch is not None:
                    on_batch(layer, int(h_LND.shape[1]))
                _encode_batch(saes[layer], x_ND, gid, running[layer], seed)
                del x_ND  # a loop variable would keep the batch's last layer alive through the next forward pass
                if len(occ_rt):
                    _encode_contexts(saes[layer], h_LND[li], occ_rt, slot_of, ctx_feat[layer], ctx_act[layer], J)
            del h_LND
            done += int(lengths[idx].sum())
            if progress:
                progress("contexts", done / total)

    sent_of = np.searchsorted(sent_start, np.arange(sent_start[-1]), side="right") - 1 if n_tokens else None

    def locate(ids: np.ndarray):
        """(sentence, token, span (..., 2)) of global token ids; -1 where id is -1."""
        valid = ids >= 0
        s = np.where(valid, sent_of[np.where(valid, ids, 0)], -1) if sent_of is not None else np.full(ids.shape, -1)
        t = np.where(valid, ids - sent_start[np.clip(s, 0, None)], -1)
        if not len(tokens.offsets):  # an empty corpus: nothing to locate
            return s.astype(np.int32), t.astype(np.int32), np.full(ids.shape + (2,), -1, np.int32)
        span = np.where(valid[..., None], tokens.offsets[np.where(valid, ids, 0)], -1).astype(np.int32)
        return s.astype(np.int32), t.astype(np.int32), span

    # Per vocabulary row: the chosen contexts of its type (rows sharing a type share them).
    by_type = occ[chosen, 0] if len(chosen) else np.zeros(0, np.int64)
    type_start = np.searchsorted(by_type, np.arange(len(type_of) + 1))
    row_slots = [np.arange(type_start[t], type_start[t + 1]) for t in row_type]
    word_ptr = np.concatenate([[0], np.cumsum([len(x) for x in row_slots])]).astype(np.int64)
    slots = np.concatenate(row_slots) if row_slots else np.zeros(0, np.int64)
    word_sentence = occ[chosen[slots], 1].astype(np.int32) if len(slots) else np.zeros(0, np.int32)
    word_span = occ[chosen[slots]][:, 3:5].astype(np.int32) if len(slots) else np.zeros((0, 2), np.int32)

    outputs = {}
    for layer in layers:
        st = running[layer]
        top_s, top_t, top_span = locate(st.top.id)
        q_ids, q_act = _quantile_groups(st.sample, st.top)
        q_s, q_t, q_span = locate(q_ids)
        F = len(st.fired)
        mean = st.sum_x / max(n_tokens, 1)
        total_var = st.sum_sq - n_tokens * float(mean @ mean)
        outputs[layer] = {
            CONTEXTS.path: {
                "n_sentences": len(sentences),
                "n_tokens": int(n_tokens),
                "top_k": int(cfg.top_k),
                "per_word": int(cfg.per_word),
                "features_per_context": J,
                "token_fvu": float(st.err / total_var) if total_var > 0 else float("nan"),
                "token_l0": float(st.nnz / max(n_tokens, 1)),
                "token_dead_frac": float((st.fired == 0).mean()) if F else 0.0,
            },
            CONTEXTS.token_density: (st.fired / max(n_tokens, 1)).astype(np.float32),
            CONTEXTS.top_sentence: top_s,
            CONTEXTS.top_token: top_t,
            CONTEXTS.top_span: top_span,
            CONTEXTS.top_act: st.top.val.astype(np.float32),
            CONTEXTS.quantile_sentence: q_s,
            CONTEXTS.quantile_token: q_t,
            CONTEXTS.quantile_span: q_span,
            CONTEXTS.quantile_act: q_act,
            CONTEXTS.word_ptr: word_ptr,
            CONTEXTS.word_sentence: word_sentence,
            CONTEXTS.word_span: word_span,
            CONTEXTS.word_features: ctx_feat[layer][slots] if len(slots) else np.zeros((0, J), np.int32),
            CONTEXTS.word_acts: ctx_act[layer][slots] if len(slots) else np.zeros((0, J), np.float32),
        }
    return outputs


def _kept(states: dict, layers, tokens: _Tokens, idx, device) -> tuple[torch.Tensor, int]:
    """The kept hidden states of a batch of sentences, laid out as _forward's (len(layers), B * T, d), padded with
    zeros (padding rows are never read)."""
    T = int(max(tokens.start[i + 1] - tokens.start[i] for i in idx))
    d = states[layers[0]].shape[1]
    h = np.zeros((len(layers), len(idx) * T, d), np.float32)
    for r, i in enumerate(idx):
        a, b = tokens.start[i], tokens.start[i + 1]
        for li, layer in enumerate(layers):
            h[li, r * T : r * T + b - a] = states[layer][a:b]
    return torch.from_numpy(h).to(device), T


def _encode_batch(sae, x_ND: torch.Tensor, gid: np.ndarray, st: _LayerState, seed: int) -> None:
    """One layer's tokens of one batch: update the running tops, sample, density and reconstruction sums."""
    n_idx, f_idx, val, x_hat_ND = sae.active_codes(x_ND)
    st.err += float((x_hat_ND - x_ND).pow(2).sum())
    x64 = x_ND.double()
    st.sum_x += x64.sum(0).cpu().numpy()
    st.sum_sq += float(x64.pow(2).sum())
    val = val.float().cpu().numpy()
    n_idx, f_idx = n_idx.cpu().numpy(), f_idx.cpu().numpy()
    st.nnz += len(val)
    st.fired += np.bincount(f_idx, minlength=len(st.fired))
    ids = gid[n_idx]
    st.top.update(f_idx, val.astype(np.float64), ids, val)
    F = len(st.fired)
    st.sample.update(f_idx, _priority(ids * F + f_idx, seed), ids, val)


def _encode_contexts(sae, h_ND, occ_rt, slot_of, feat_out, act_out, J: int) -> None:
    """The chosen occurrences of one batch: mean of their sub-token vectors, encoded; top J features."""
    slots = slot_of[occ_rt[:, 1]]
    uniq, inv = np.unique(slots, return_inverse=True)
    dev = h_ND.device
    sums = torch.zeros((len(uniq), h_ND.shape[1]), device=dev)
    sums.index_add_(
        0, torch.as_tensor(inv, device=dev), h_ND.index_select(0, torch.as_tensor(occ_rt[:, 0], device=dev))
    )
    counts = torch.as_tensor(np.bincount(inv), device=dev, dtype=sums.dtype)[:, None]
    acts = sae.encode(sums / counts)
    val, feat = acts.topk(min(J, acts.shape[1]), dim=1)
    val, feat = val.cpu().numpy(), feat.cpu().numpy().astype(np.int32)
    feat[val <= 0] = -1
    feat_out[uniq, : feat.shape[1]] = feat
    act_out[uniq, : val.shape[1]] = np.maximum(val, 0)


def _quantile_groups(sample: RunningTop, top: RunningTop) -> tuple[np.ndarray, np.ndarray]:
    """(F, 5, 5) ids and activations: (0, max] cut into 5 equal intervals, highest first; per interval up to
    5 of the sampled tokens in it, by activation (sae_vis's interval groups, on a uniform sample)."""
    F = sample.id.shape[0]
    ids = np.full((F, N_INTERVALS, PER_INTERVAL), -1, np.int64)
    acts = np.zeros((F, N_INTERVALS, PER_INTERVAL), np.float32)
    max_act = top.val[:, 0]
    for f in np.flatnonzero(max_act > 0):
        have = sample.id[f] >= 0
        v, i = sample.val[f][have], sample.id[f][have]
        edges = np.linspace(0, max_act[f], N_INTERVALS + 1)
        for q in range(N_INTERVALS):
            lo, hi = edges[N_INTERVALS - 1 - q], edges[N_INTERVALS - q]
            inside = np.flatnonzero((v > lo) & (v <= hi))[:PER_INTERVAL]  # kept in priority order: random
            inside = inside[np.argsort(-v[inside], kind="stable")]
            ids[f, q, : len(inside)], acts[f, q, : len(inside)] = i[inside], v[inside]
    return ids, acts
