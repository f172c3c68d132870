"""Features in context, for the Features and Words pages: a feature's top and quantile contexts, a word's
corpus contexts grouped into senses, and sentences cut into word pieces for linking. Reads `/contexts`
(docs/store.md, "Features in context") and the corpus file it names."""

import re
from dataclasses import dataclass

import numpy as np

from store.corpora import read_sentences
from store.schema import CONTEXTS, WORDS

# A word as compute/contextual.py matches it: letters/digits with inner apostrophes.
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
WINDOW = 14  # words shown either side of the highlighted one


@dataclass
class Context:
    text: str
    span: tuple[int, int]  # character span of the highlighted token in `text`
    act: float = 0.0
    features: tuple = ()  # (feature, activation) pairs, strongest first (word contexts)


def has_contexts(v) -> bool:
    return v.has_sae and v.run.has(CONTEXTS.top_act)


def _sentences(v, ids) -> list[str]:
    from dashboard.lib.store import catalog

    return read_sentences(catalog().root, v.run.attrs_of(CONTEXTS.path)["corpus"], ids)


def feature_contexts(v, f: int) -> tuple[list[Context], list[list[Context]]]:
    """Feature f's top contexts (highest first) and its quantile groups (highest interval first)."""
    sent, span, act = (v.run.get(p)[f] for p in (CONTEXTS.top_sentence, CONTEXTS.top_span, CONTEXTS.top_act))
    q_sent, q_span, q_act = (
        v.run.get(p)[f] for p in (CONTEXTS.quantile_sentence, CONTEXTS.quantile_span, CONTEXTS.quantile_act)
    )
    keep, q_keep = sent >= 0, q_sent >= 0
    texts = iter(_sentences(v, np.concatenate([sent[keep], q_sent[q_keep]])))
    top = [Context(next(texts), tuple(s), float(a)) for s, a in zip(span[keep], act[keep])]
    groups = []
    for q in range(q_sent.shape[0]):
        groups.append(
            [Context(next(texts), tuple(s), float(a)) for s, a in zip(q_span[q][q_keep[q]], q_act[q][q_keep[q]])]
        )
    return top, groups


def word_contexts(v, row: int) -> list[Context]:
    """The stored corpus contexts of word `row`, each with its top features."""
    ptr = v.run.get(CONTEXTS.word_ptr)
    lo, hi = int(ptr[row]), int(ptr[row + 1])
    if hi <= lo:
        return []
    sent = v.run.array(CONTEXTS.word_sentence)[lo:hi]
    span = v.run.array(CONTEXTS.word_span)[lo:hi]
    feats = v.run.array(CONTEXTS.word_features)[lo:hi]
    acts = v.run.array(CONTEXTS.word_acts)[lo:hi]
    return [
        Context(t, tuple(s), float(a[0]), tuple((int(f), float(x)) for f, x in zip(fr, a) if f >= 0))
        for t, s, fr, a in zip(_sentences(v, sent), span, feats, acts)
    ]


def n_contexts(v, row: int) -> int | None:
    """Corpus occurrences averaged into the word's vector (0: encoded alone); None for static runs."""
    n = v.run.get(WORDS.n_contexts)
    return None if n is None else int(n[row])


def senses(feats: np.ndarray, acts: np.ndarray) -> list[dict]:
    """A word's contexts grouped by dominant feature (column 0 of `feats`): [{feature, rows, mean_act}],
    largest group first (ties: smaller feature). Contexts on which no feature fires are left out."""
    feats, acts = np.asarray(feats).reshape(len(feats), -1), np.asarray(acts).reshape(len(acts), -1)
    groups = {}
    for i, f in enumerate(feats[:, 0]):
        if f >= 0:
            groups.setdefault(int(f), []).append(i)
    out = [{"feature": f, "rows": rows, "mean_act": float(acts[rows, 0].mean())} for f, rows in groups.items()]
    return sorted(out, key=lambda g: (-len(g["rows"]), g["feature"]))


def pieces(text: str, span: tuple[int, int], window: int = WINDOW) -> list[tuple[str, bool, bool]]:
    """The sentence as (piece, is_word, is_hit), cut to `window` words either side of the hit; the hit is the
    word holding the span's start (the token may be a word piece, e.g. '##fire' of 'bushfire')."""
    words = list(_WORD.finditer(text))
    hit = next((k for k, m in enumerate(words) if m.start() <= span[0] < m.end()), None)
    lo = max(0, (hit or 0) - window)
    hi = min(len(words), (hit or 0) + window + 1)
    out, pos = [], words[lo].start() if words and lo < len(words) else 0
    if lo > 0:
        out.append(("… ", False, False))
    for k in range(lo, hi):
        m = words[k]
        if m.start() > pos:
            out.append((text[pos : m.start()], False, False))
        out.append((m.group(), True, k == hit))
        pos = m.end()
    tail = text[pos:] if hi == len(words) else " …"
    if tail:
        out.append((tail, False, False))
    return out
