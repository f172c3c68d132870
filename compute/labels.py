"""Concept labels for a whole vocabulary: WordNet 3.0 supersenses, and the user's concept groups as labels.

A supersense is the name of the WordNet lexicographer file a sense belongs to (`noun.animal`, `noun.food`,
`verb.motion`, ...; 45 in WordNet 3.0, listed in its lexnames(5WN) manual page).

Sense policy (measured on the default GloVe 20k vocabulary; figures in benchmarks/results/labels-*.json):
- each form of the word is lemmatised per part of speech with WordNet's morphy (`dogs` -> `dog`, `ran` -> `run`);
- every sense of every lemma counts, weighted by its frequency in WordNet's tagged corpora (cntlist.rev, the
  `Lemma.count()` of nltk); when none of the word's senses has a count, the weight falls back to the sense
  order WordNet gives within each part of speech (most frequent first): 1 / rank;
- a supersense's share is the sum of its senses' weights over the word's total; a word carries every
  supersense whose share is at least `min_share` (default MIN_SHARE), so a word has one to three labels;
- function words (determiners, pronouns, prepositions, modals: scikit-learn's English stop-word list) get no
  label: WordNet holds only open-class words, so what it finds for them is a homograph (`a` -> ampere).

WordNet is read with nltk's WordNetCorpusReader from a plain folder (Debian's `wordnet-base`:
/usr/share/wordnet; setting `wordnet_dir`, LEXISCOPE_WORDNET_DIR). Nothing is downloaded at run time.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

log = logging.getLogger("lexiscope.compute")

MIN_SHARE = 0.25
POS_ORDER = ("n", "v", "a", "r")

# WordNet 3.0 lexicographer files, by file number (lexnames(5WN)). Debian's wordnet-base ships no `lexnames`
# file, which nltk's reader needs; the list is fixed by the WordNet 3.0 format.
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
REQUIRED_FILES = (
    "index.noun",
    "data.noun",
    "index.verb",
    "data.verb",
    "index.adj",
    "data.adj",
    "index.adv",
    "data.adv",
    "cntlist.rev",
)


@dataclass(frozen=True)
class Labels:
    """Labels of the n words of a vocabulary.

    names: (L,) label names; weights: (n, L) float32 CSR, the share of the word's sense weight per label (rows
    of covered words sum to 1; concept groups: 1 per member); member: (n, L) bool CSR, the word carries it."""

    names: list[str]
    weights: sp.csr_matrix
    member: sp.csr_matrix

    @property
    def coverage(self) -> float:
        """Share of words with at least one label."""
        n = self.member.shape[0]
        return float((self.member.getnnz(1) > 0).mean()) if n else 0.0

    def counts(self) -> np.ndarray:
        """(L,) words per label."""
        return np.asarray(self.member.sum(0)).ravel().astype(np.int64)


def wordnet_dir(path=None) -> Path:
    if path is not None:
        return Path(path)
    from store.settings import settings

    return Path(settings().wordnet_dir)


def missing_files(path: Path) -> list[str]:
    return [f for f in REQUIRED_FILES if not (path / f).is_file()]


def wordnet_missing_line(path) -> str:
    """The one line the pipeline logs when WordNet cannot be read."""
    return (
        f"WordNet 3.0 not found in {path} (apt-get install wordnet-base, or set LEXISCOPE_WORDNET_DIR): "
        f"supersense labels skipped; features are labelled by concept groups and top words"
    )


def log_wordnet_missing(path=None) -> None:
    log.warning(wordnet_missing_line(wordnet_dir(path)))


def open_wordnet(path=None):
    """nltk's WordNetCorpusReader over a WordNet 3.0 database folder, or None when its files are missing."""
    root = wordnet_dir(path)
    if missing_files(root):
        return None
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _Reader(WordNetCorpusReader):
        def open(self, fileid):
            if fileid == "lexnames" and not (root / "lexnames").is_file():
                return io.StringIO("".join(f"{i:02d}\t{name}\t0\n" for i, name in enumerate(LEXNAMES)))
            return super().open(fileid)

        def map_wn(self, version="wordnet"):
            return None  # English WordNet 3.0 only: no mapping to other versions (needs nltk_data)

    # nltk refuses corpus folders outside its data path unless they are added to it.
    resolved = str(root.resolve())
    if resolved not in nltk.data.path:
        nltk.data.path.append(resolved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": no OMW wanted
        return _Reader(resolved, None)


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def sense_weights(reader, word: str) -> dict[str, float]:
    """{supersense: weight} of one word under the sense policy (module docstring); {} if WordNet lacks it."""
    senses = []  # (lexname, count, rank within its part of speech)
    for pos in POS_ORDER:
        lemma = reader.morphy(word.lower(), pos)
        if lemma is None:
            continue
        for rank, synset in enumerate(reader.synsets(lemma, pos)):
            count = sum(lem.count() for lem in synset.lemmas() if lem.name().lower() == lemma)
            senses.append((synset.lexname(), count, rank))
    if not senses:
        return {}
    by_count = sum(c for _, c, _ in senses) > 0
    out: dict[str, float] = {}
    for lexname, count, rank in senses:
        out[lexname] = out.get(lexname, 0.0) + (count if by_count else 1.0 / (rank + 1))
    return out


def supersenses(
    words: Sequence[str], path=None, min_share: float = MIN_SHARE, reader=None, skip_function_words: bool = True
) -> Labels | None:
    """Supersense labels of `words` (labels = the 45 WordNet 3.0 lexicographer files, in file order), or None
    when WordNet is absent (the caller logs `log_wordnet_missing()` once)."""
    reader = reader if reader is not None else open_wordnet(path)
    if reader is None:
        return None
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share: must be in (0, 1], got {min_share}")
    column = {name: j for j, name in enumerate(LEXNAMES)}
    skip = _stop_words() if skip_function_words else frozenset()
    rows, cols, vals = [], [], []
    cache: dict[str, dict[str, float]] = {}
    for i, word in enumerate(words):
        key = str(word).lower()
        if key in skip or not any(ch.isalpha() for ch in key):
            continue
        if key not in cache:
            cache[key] = sense_weights(reader, key)
        weights = cache[key]
        total = sum(weights.values())
        for lexname, w in weights.items():
            if w <= 0:  # a supersense whose senses all have tag count 0, beside counted ones: no weight
                continue
            rows.append(i)
            cols.append(column[lexname])
            vals.append(w / total)
    shape = (len(words), len(LEXNAMES))
    W = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=shape)
    W.sort_indices()
    member = W >= np.float32(min_share - 1e-6)
    return Labels(list(LEXNAMES), W, sp.csr_matrix(member, dtype=bool))


GROUP_PREFIX = "group."


def group_labels(groups: np.ndarray, group_names: Sequence[str], prefix: str = GROUP_PREFIX) -> Labels:
    """The user's concept groups as labels (`group.animals`, ...): groups (n,) int, -1 for none."""
    groups = np.asarray(groups, dtype=np.int64)
    n, G = len(groups), len(group_names)
    if len(groups) and (groups.max(initial=-1) >= G or groups.min(initial=-1) < -1):
        raise ValueError(f"groups: indices must be in [-1, {G - 1}]")
    rows = np.flatnonzero(groups >= 0)
    W = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, groups[rows])), shape=(n, G))
    return Labels([prefix + str(g) for g in group_names], W, sp.csr_matrix(W > 0, dtype=bool))


def combine(*parts: Labels | None) -> Labels:
    """Labels side by side (None parts are left out), e.g. combine(supersenses(words), group_labels(...))."""
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("combine: no labels given")
    return Labels(
        [name for p in parts for name in p.names],
        sp.hstack([p.weights for p in parts], format="csr").astype(np.float32),
        sp.hstack([p.member for p in parts], format="csr").astype(bool),
    )


_MISSING = object()


def run_labels(
    words: Sequence[str], groups: np.ndarray, group_names: Sequence[str], path=None, reader=_MISSING
) -> Labels:
    """A run's labels: the supersenses of its words, then its concept groups. Without WordNet, logs the one line
    of `log_wordnet_missing` and returns the groups alone (possibly no label at all). `reader`: an opened
    WordNet (or None when it is known to be absent: then nothing is logged), so that a plan opens it once."""
    if reader is _MISSING:
        reader = open_wordnet(path)
        if reader is None:
            log_wordnet_missing(path)
    ss = supersenses(words, reader=reader) if reader is not None else None
    return combine(ss, group_labels(groups, group_names))


def has_supersenses(labs: Labels) -> bool:
    return any(not name.startswith(GROUP_PREFIX) for name in labs.names)


def labels_output(labs: Labels, min_share: float = MIN_SHARE) -> dict:
    """Stage OUTPUT `/labels` (docs/store.md "Labels"): names, member and weights matrices, and attributes."""
    from store.schema import LABELS

    wordnet = has_supersenses(labs)
    ss = [j for j, name in enumerate(labs.names) if not name.startswith(GROUP_PREFIX)]
    covered = labs.member[:, ss].getnnz(1) > 0 if ss else np.zeros(labs.member.shape[0], bool)
    attrs = dict(
        source="WordNet 3.0 supersenses + concept groups" if wordnet else "concept groups (WordNet not found)",
        wordnet=wordnet,
        min_share=float(min_share),
        coverage=float(covered.mean()) if len(covered) else 0.0,
    )
    return {
        LABELS.path: attrs,
        LABELS.names: list(labs.names),
        LABELS.member.path: labs.member.astype(np.float32),
        LABELS.weights.path: labs.weights,
    }


def from_run(run) -> Labels | None:
    """The labels a run stores (a store.reader.Run), or None for runs written before /labels existed."""
    from store.schema import LABELS

    if not run.has(LABELS.names):
        return None
    member = run.csr(LABELS.member)
    return Labels(
        [str(x) for x in run.array(LABELS.names)], run.csr(LABELS.weights), sp.csr_matrix(member > 0, dtype=bool)
    )
