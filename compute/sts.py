"""Semantic textual similarity (STS-B), the downstream test of the isotropy study.

Rajaee & Pilehvar (2022), "An Isotropy Analysis in the Multilingual BERT Embedding Space", judge the
cluster-based isotropy enhancement by STS, per language ("individual") and zero-shot (clusters and
directions fitted on English, applied to another language). Here, as the papers apply it (also Rajaee &
Pilehvar 2021, "A Cluster-based Approach for Improving Isotropy in Contextual Embedding Space"), the
enhancement is fitted on the representations being evaluated: the sentence vectors of the STS split (each
unique sentence once), not the run's word vectors.

- Sentence vector: the mean of a sentence's token vectors at a layer, special tokens excluded; for static
  vectors, the mean of the vectors of its known (lowercased) words.
- Score: cosine of the two sentence vectors of each pair, then Spearman x 100 against the gold scores.

Data: the stsb_multi_mt files `stsb-<lang>-<split>.csv` (`sentence1,sentence2,score`, score in [0, 5]),
read from a folder given by the plan (`sts.path`, `sts_dir`) or `$LEXISCOPE_STS_DIR`; never bundled.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from store.schema import STS

log = logging.getLogger("lexiscope.compute")

SPLITS = ("train", "dev", "test")
SOURCE_LANGUAGE = "en"
SCORE_RANGE = (0.0, 5.0)
HOW_TO_GET = (
    "STS skipped: no STS-B folder is configured. Get STS-B from the stsb_multi_mt dataset "
    "(https://github.com/PhilipMay/stsb-multi-mt, folder data/: stsb-<lang>-<split>.csv) and point "
    "Lexiscope at that folder with LEXISCOPE_STS_DIR=<folder> or the plan's sts.path (or sts_dir)."
)
_LANG = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]+)*$")
_HEADER_SCORE = {"score", "similarity_score", "similarity", "label", "gold"}


class STSError(ValueError):
    """STS data that cannot be used; the message is one line naming the file (and line)."""


# ---------------------------------------------------------------- data


@dataclass
class STSData:
    """One language's split: pairs of sentences with gold scores in [0, 5]."""

    language: str
    split: str
    path: Path
    sentences1: list[str]
    sentences2: list[str]
    gold: np.ndarray  # (n_pairs,) float64

    def __len__(self) -> int:
        return len(self.gold)

    @property
    def sentences(self) -> list[str]:
        """Unique sentences of both columns, first-seen order; each is encoded once."""
        return list(dict.fromkeys(self.sentences1 + self.sentences2))

    def pair_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of each pair's two sentences in `sentences`."""
        row = {s: i for i, s in enumerate(self.sentences)}
        return (
            np.array([row[s] for s in self.sentences1], np.int64),
            np.array([row[s] for s in self.sentences2], np.int64),
        )

    def head(self, n: int) -> STSData:
        """The first n pairs."""
        return STSData(self.language, self.split, self.path, self.sentences1[:n], self.sentences2[:n], self.gold[:n])


def sts_file(folder, language: str, split: str = "test") -> Path:
    if not _LANG.match(language or ""):
        raise STSError(f"sts.languages: '{language}' is not a language code like 'en' or 'zh'")
    if split not in SPLITS:
        raise STSError(f"sts.split: '{split}' is not one of {', '.join(SPLITS)}")
    return Path(folder).expanduser() / f"stsb-{language}-{split}.csv"


def available_languages(folder) -> list[str]:
    return sorted({p.name.split("-")[1] for p in Path(folder).expanduser().glob("stsb-*-*.csv")})


def read_sts(folder, language: str, split: str = "test", min_pairs: int = 3) -> STSData:
    """One STS file, strictly: every row `sentence1,sentence2,score` with two non-empty sentences and a
    score in [0, 5]; a header row is allowed on line 1, blank lines are skipped. Bad rows raise STSError."""
    path = sts_file(folder, language, split)
    if not Path(folder).expanduser().is_dir():
        raise STSError(f"sts.path: STS-B folder {folder} does not exist")
    if not path.is_file():
        have = available_languages(folder)
        raise STSError(
            f"sts: no file {path.name} in {folder}"
            + (f" (languages there: {', '.join(have)})" if have else " (no stsb-*-*.csv files there)")
        )
    s1, s2, gold = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                where = f"{path}, line {line}"
                if len(row) != 3:
                    raise STSError(f"{where}: expected 3 columns (sentence1, sentence2, score), got {len(row)}")
                a, b, score = row[0].strip(), row[1].strip(), row[2].strip()
                value = _parse_score(score)
                if value is None and line == 1 and score.lower() in _HEADER_SCORE:
                    continue
                if value is None:
                    raise STSError(f"{where}: score {score!r} is not a number")
                if not SCORE_RANGE[0] <= value <= SCORE_RANGE[1]:
                    raise STSError(f"{where}: score {score} is outside [{SCORE_RANGE[0]:g}, {SCORE_RANGE[1]:g}]")
                if not a or not b:
                    raise STSError(f"{where}: empty sentence{'1' if not a else '2'}")
                s1.append(a)
                s2.append(b)
                gold.append(value)
    except UnicodeDecodeError as e:
        raise STSError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise STSError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
    if len(gold) < min_pairs:
        raise STSError(f"{path}: {len(gold)} sentence pairs; at least {min_pairs} are needed")
    return STSData(language, split, path, s1, s2, np.asarray(gold, dtype=np.float64))


def _parse_score(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_sts_sentences(folder, language: str, splits=SPLITS) -> list[str]:
    """Unique sentences (both columns, every split present) of one language: the language's corpus.
    Read as strictly as `read_sts`; at least one split must exist."""
    found = [s for s in splits if sts_file(folder, language, s).is_file()]
    if not found:
        raise STSError(f"corpus 'stsb:{language}': no stsb-{language}-{{{','.join(splits)}}}.csv in {folder}")
    seen: dict[str, None] = {}
    for split in found:
        for s in read_sts(folder, language, split, min_pairs=0).sentences:
            seen.setdefault(s, None)
    return list(seen)


# ---------------------------------------------------------------- sentence vectors

_WORD = re.compile(r"[^\W_]+")  # letters and digits; punctuation and "_" separate words


def tokenize_words(text: str) -> list[str]:
    """Lowercase runs of letters/digits: "A woman's hat_2." -> ['a', 'woman', 's', 'hat', '2']."""
    return _WORD.findall(text.lower())


def static_sentence_vectors(sentences, vectors) -> np.ndarray:
    """(n, d) float32: the mean of the known words' vectors (compute.embeddings.StaticVectors); a sentence
    with no known word gets a zero row (cosine 0 with everything)."""
    d = vectors.vectors.shape[1]
    out = np.zeros((len(sentences), d), dtype=np.float32)
    for i, s in enumerate(sentences):
        words = tokenize_words(s)
        rows = vectors.lookup(words) if words else np.zeros(0, np.int64)
        rows = rows[rows >= 0]
        if len(rows):
            out[i] = vectors.vectors[rows].astype(np.float64).mean(axis=0)
    return out


def encode_sentences(
    tokenizer, model, sentences, layers, batch_size: int = 64, device: str = "cpu", progress=None
) -> np.ndarray:
    """(len(layers), n, d) float32: per layer, the mean of each sentence's token vectors (special and pad
    tokens excluded), all layers from one forward pass per batch. Layer 0 is the embedding output."""
    import torch
    from tqdm.auto import tqdm

    sentences = list(sentences)
    layers = [int(x) for x in layers]
    n_layers = int(model.config.num_hidden_layers) + 1
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise ValueError(f"layers: {bad[0]} is out of range; this model has layers 0-{n_layers - 1}")
    limit = int(
        min(
            getattr(model.config, "max_position_embeddings", 512) or 512,
            tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else 512,
        )
    )
    lengths = np.array([len(x) for x in tokenizer(sentences, truncation=True, max_length=limit)["input_ids"]])
    order = np.argsort(lengths, kind="stable")  # length-bucketed batches: little padding
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    out = np.zeros((len(layers), len(sentences), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for bi, idx in enumerate(
            tqdm(batches, desc="STS sentences", leave=False, disable=len(batches) < 2 or progress is not None)
        ):
            enc = tokenizer(
                [sentences[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=limit,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            special_BT = enc.pop("special_tokens_mask").bool()
            keep_BT = (enc["attention_mask"].bool() & ~special_BT).to(device=device, dtype=torch.float32)
            hidden = model(**{k: v.to(device) for k, v in enc.items()}, output_hidden_states=True).hidden_states
            count_B1 = keep_BT.sum(1, keepdim=True).clamp(min=1)
            for li, layer in enumerate(layers):
                mean_BD = (hidden[layer].float() * keep_BT[:, :, None]).sum(1) / count_B1
                out[li, idx] = mean_BD.cpu().numpy()
            if progress:
                progress("sts: encode", (bi + 1) / len(batches))
    return out


# ---------------------------------------------------------------- scores


def cosine_pairs(a_ND, b_ND) -> np.ndarray:
    """(N,) float64 cosine of row i of a with row i of b; 0 where either row is all zero."""
    a = np.asarray(a_ND, dtype=np.float64)
    b = np.asarray(b_ND, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), norms, out=np.zeros(len(a)), where=norms > 0)


def spearman100(pred, gold) -> float:
    """Spearman rank correlation x 100 (NaN when either side is constant)."""
    pred, gold = np.asarray(pred, np.float64), np.asarray(gold, np.float64)
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return float("nan")
    return float(100 * spearmanr(pred, gold).statistic)


def sts_score(vectors_SD, data: STSData) -> float:
    """Spearman x 100 of the pairs' cosines against gold; vectors_SD has one row per `data.sentences`."""
    i1, i2 = data.pair_rows()
    return spearman100(cosine_pairs(vectors_SD[i1], vectors_SD[i2]), data.gold)


# ---------------------------------------------------------------- raw, individual and zero-shot


def evaluate(
    vectors: dict[str, np.ndarray],
    data: dict[str, STSData],
    clusters: int = 7,
    pcs_removed: int = 12,
    seed: int = 0,
    source: str = SOURCE_LANGUAGE,
    languages=None,
) -> dict[str, dict]:
    """Per language (vectors[lang]: one row per data[lang].sentences):
    raw; individual = after the enhancement fitted on the language's own sentence vectors; zero_shot =
    after the enhancement fitted on the `source` language's sentence vectors (NaN without source data;
    equal to individual for the source itself)."""
    from threadpoolctl import threadpool_limits

    from compute.geometry import fit_enhancement

    def fit(x_SD):
        # k-means and per-cluster PCA on a few thousand rows: one thread is fastest, and many times faster
        # than oversubscribed BLAS/OpenMP threads on a busy machine.
        with threadpool_limits(limits=1):
            return fit_enhancement(x_SD, clusters, pcs_removed, seed)

    languages = list(languages or data)
    source_enh = fit(vectors[source]) if source in vectors else None
    results = {}
    for lang in languages:
        x_SD, d = vectors[lang], data[lang]
        own = source_enh if lang == source else fit(x_SD)
        results[lang] = dict(
            raw=sts_score(x_SD, d),
            individual=sts_score(own.apply(x_SD), d),
            zero_shot=sts_score(source_enh.apply(x_SD), d) if source_enh is not None else float("nan"),
            n_pairs=len(d),
            n_sentences=int(len(x_SD)),
        )
    return results


COLUMNS = ("raw", "individual", "zero_shot")


def sts_output(
    results: dict[str, dict],
    split: str,
    clusters: int,
    pcs_removed: int,
    seed: int,
    source: str | None = SOURCE_LANGUAGE,
    pooling: str = "mean",
) -> dict:
    """Stage OUTPUT: `/sts` attrs (settings + table), `/sts/<lang>` attrs, `/sts/scores` (n_lang, 3)."""

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    table = [{"language": lang, **{k: clean(v) for k, v in row.items()}} for lang, row in results.items()]
    out = {
        STS.path: dict(
            languages=list(results),
            columns=list(COLUMNS),
            split=split,
            source=source or "",
            clusters=int(clusters),
            pcs_removed=int(pcs_removed),
            seed=int(seed),
            fit_on="sentence vectors",
            pooling=pooling,
            metric="spearman x100 of cosine",
            table=table,
        )
    }
    for lang, row in results.items():
        out[STS.of(lang)] = dict(row)
    out[STS.scores] = np.array([[row[c] for c in COLUMNS] for row in results.values()], dtype=np.float32)
    return out


# ---------------------------------------------------------------- plans and the pipeline


def folder_of(sts_cfg, sts_dir=None) -> Path | None:
    """The STS-B folder of a run: its sts.path, else the plan's sts_dir, else $LEXISCOPE_STS_DIR."""
    if sts_cfg is not None and sts_cfg.path:
        return Path(sts_cfg.path).expanduser()
    if sts_dir:
        return Path(sts_dir).expanduser()
    return sts_cfg.folder() if sts_cfg is not None else None


def load_data(sts_cfg, folder=None) -> dict[str, STSData]:
    """Every configured language's split, plus the zero-shot source language when its file exists."""
    folder = folder or folder_of(sts_cfg)
    data = {lang: read_sts(folder, lang, sts_cfg.split) for lang in dict.fromkeys(sts_cfg.languages)}
    if SOURCE_LANGUAGE not in data and sts_file(folder, SOURCE_LANGUAGE, sts_cfg.split).is_file():
        data[SOURCE_LANGUAGE] = read_sts(folder, SOURCE_LANGUAGE, sts_cfg.split)
    return data


def prepare_runs(runs, sts_dir=None) -> list:
    """Before anything is computed: give each run with `sts` its folder; drop `sts` (one log line for all
    runs) where none is configured; read every STS file the runs need, so bad data fails before any run is
    written (STSError naming file and line)."""
    out, skipped = [], False
    for cfg in runs:
        if cfg.sts is not None:
            folder = folder_of(cfg.sts, sts_dir)
            if folder is None:
                skipped = True
                cfg = cfg.model_copy(update={"sts": None})
            else:
                if cfg.sts.path is None and sts_dir:
                    cfg = cfg.model_copy(update={"sts": cfg.sts.model_copy(update={"path": str(sts_dir)})})
                load_data(cfg.sts, folder)
        out.append(cfg)
    if skipped:
        log.warning(HOW_TO_GET)
    return out


def contextual_outputs(tokenizer, model, cfg, layers, device: str = "cpu", progress=None) -> dict[int, dict]:
    """{layer: STS stage output} for a transformer run: every language's sentences encoded once for all
    layers, then raw / individual / zero-shot scores per layer."""
    data = load_data(cfg.sts)
    offsets, sentences = {}, []
    for lang, d in data.items():
        offsets[lang] = slice(len(sentences), len(sentences) + len(d.sentences))
        sentences += d.sentences
    x_LSD = encode_sentences(tokenizer, model, sentences, layers, cfg.batch_size, device, progress)
    outputs = {}
    for li, layer in enumerate(layers):
        vectors = {lang: x_LSD[li, sl] for lang, sl in offsets.items()}
        outputs[layer] = _scored(cfg, data, vectors, pooling="mean of token vectors, special tokens excluded")
        if progress:
            progress("sts: scores", (li + 1) / len(layers))
    return outputs


def contextual_piece(cfg, layers, device: str = "cpu") -> dict[int, dict]:
    """contextual_outputs as a piece (compute.parallel) that loads the run's transformer where it runs, so that
    a worker scores STS while the run's process extracts the word vectors."""
    from compute import contextual

    tokenizer, model = contextual.load_transformer(cfg.model, device)
    return contextual_outputs(tokenizer, model, cfg, layers, device, progress=lambda *_: None)  # no bar there


def static_output(cfg, vectors) -> dict:
    """STS stage output for a static-vector run (layer 0): sentence vector = mean of its word vectors."""
    data = load_data(cfg.sts)
    sentence_vectors = {lang: static_sentence_vectors(d.sentences, vectors) for lang, d in data.items()}
    coverage = {lang: float(np.mean(np.any(x_SD != 0, axis=1))) for lang, x_SD in sentence_vectors.items()}
    return _scored(
        cfg,
        data,
        sentence_vectors,
        pooling="mean of word vectors (lowercased letter/digit runs; unknown words skipped)",
        coverage=coverage,
    )


def _scored(cfg, data, vectors: dict[str, np.ndarray], pooling: str, coverage: dict | None = None) -> dict:
    """The STS stage output of one layer's sentence vectors, with the plan's geometry settings."""
    g = cfg.geometry
    removed = g.removed(next(iter(vectors.values())).shape[-1])
    results = evaluate(vectors, data, g.clusters, removed, g.seed, languages=cfg.sts.languages)
    for lang, value in (coverage or {}).items():
        if lang in results:
            results[lang]["coverage"] = value
    source = SOURCE_LANGUAGE if SOURCE_LANGUAGE in data else None
    return sts_output(results, cfg.sts.split, g.clusters, removed, g.seed, source=source, pooling=pooling)
