"""Finding words in a run's vocabulary: every word matching a search (a prefix, or a /regular expression/)
and close spellings of an unknown word. Functions of a RunView (dashboard/lib/store.py); their indexes
are built once per view and kept beside it."""

import bisect
import difflib
import re
import weakref
from collections import defaultdict

import numpy as np

MAX_PATTERN = 200
WIDE_PASS_WORDS = 50_000  # the wide spelling pass looks at the most frequent words only
_indexes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class SearchError(ValueError):
    """A search that cannot run (a bad regular expression); the message is one line for the page."""


def is_regex(query: str) -> bool:
    return len(query) >= 2 and query.startswith("/") and query.endswith("/")


def describe(query: str) -> str:
    return f"regular expression {query}" if is_regex(query) else f"prefix '{query}'"


def matches(v, query: str | None) -> np.ndarray:
    """Rows of every word matching `query`, in row (frequency) order: case-insensitive prefix search, or
    a case-insensitive regular expression when written /like this/ (searched anywhere in the word)."""
    query = (query or "").strip()
    if not query:
        return np.empty(0, np.int64)
    if len(query) > MAX_PATTERN:
        raise SearchError(f"a search is at most {MAX_PATTERN} characters")
    if not is_regex(query):
        keys, order = v._sorted_lower
        p = query.lower()
        lo = bisect.bisect_left(keys, p)
        hi = bisect.bisect_left(keys, p + "\uffff", lo)
        return np.sort(order[lo:hi]).astype(np.int64)
    try:
        rx = re.compile(query[1:-1], re.IGNORECASE)
    except re.error as e:
        raise SearchError(f"not a valid regular expression: {e}") from None
    return np.fromiter((i for i, w in enumerate(v.words) if rx.search(w)), dtype=np.int64)


def _spelling_index(v) -> dict:
    """{(first letter, length): [lower-case words]} and {length: [the most frequent lower-case words]},
    in row order (most frequent first)."""
    idx = _indexes.get(v)
    if idx is None:
        by_start, by_length = defaultdict(list), defaultdict(list)
        for i, w in enumerate(v.words):
            lw = str(w).lower()
            if lw:
                by_start[(lw[0], len(lw))].append(lw)
                if i < WIDE_PASS_WORDS:
                    by_length[len(lw)].append(lw)
        _indexes[v] = idx = {"start": dict(by_start), "length": dict(by_length)}
    return idx


def close_spellings(v, word: str, limit: int = 6, cutoff: float = 0.75) -> list[str]:
    """Vocabulary words spelled like `word` (difflib's similarity ratio >= cutoff), best first.

    Fast path: only words with the same first letter and a length within 2 are compared (a few thousand
    even in a 400k vocabulary); if none is close enough, the 50,000 most frequent words of a length within
    1 are tried (a typo in the first letter)."""
    w = (word or "").strip().lower()
    if not w:
        return []
    idx = _spelling_index(v)
    near = [c for n in range(len(w) - 2, len(w) + 3) for c in idx["start"].get((w[0], n), ())]
    found = difflib.get_close_matches(w, near, n=limit, cutoff=cutoff)
    if not found:
        wide = [c for n in range(len(w) - 1, len(w) + 2) for c in idx["length"].get(n, ())]
        found = difflib.get_close_matches(w, wide, n=limit, cutoff=cutoff)
    out = []
    for c in found:
        row = v.find(c)
        if row is not None and str(v.words[row]) not in out and c != w:
            out.append(str(v.words[row]))
    return out
