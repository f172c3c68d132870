"""The Compare page's data: stored comparisons (store/comparisons.py, computed by compute/comparison.py; nothing is
computed here), cached per file, and the default pair of a page opened without one."""

import functools

import numpy as np

from dashboard.lib import store
from store import StoreError, comparisons


def comparison(run_a: str, run_b: str):
    """The stored comparison of two runs of the catalog (either order), or None (also for ids the catalog does not
    know: only those become file names); StoreError for a broken file."""
    if not (is_run(run_a) and is_run(run_b)):
        return None
    root = store.catalog().root
    stamp = comparisons.stamp(root, run_a, run_b)
    return None if stamp is None else _load(str(root), run_a, run_b, stamp)


@functools.lru_cache(maxsize=8)
def _load(root: str, run_a: str, run_b: str, stamp) -> "Loaded":
    return Loaded(comparisons.load(root, run_a, run_b))


class Loaded:
    """A StoredComparison and the word index the page's word box needs."""

    def __init__(self, c):
        self.c = c
        self.attrs = c.attrs
        self.words = c["words"]
        self.index = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(str(w), i)
        self.lower = {}
        for i, w in enumerate(self.words):
            self.lower.setdefault(str(w).lower(), i)

    def find(self, word) -> int | None:
        """Position of a word among the shared words (exact, else case-insensitive), or None."""
        if word is None:
            return None
        w = str(word).strip()
        i = self.index.get(w)
        return self.lower.get(w.lower()) if i is None else i

    def __getitem__(self, key):
        return self.c[key]

    def get(self, key, default=None):
        return self.c.get(key, default)


def known_runs() -> list[str]:
    t = store.runs_table()
    return [] if t.empty else [str(r) for r in t["run_id"]]


def is_run(run_id) -> bool:
    """Whether `run_id` is a complete run of the catalog (a dictionary look-up for known runs)."""
    if not isinstance(run_id, str) or not run_id:
        return False
    try:
        store.catalog().open(run_id)
        return True
    except StoreError:
        return False


def default_pair(run: str | None = None) -> tuple[str | None, str | None]:
    """The pair a page without ?a=&b= shows: a stored comparison (of `run`, when given), else `run` (or the
    newest run) and another run."""
    pairs = [p for p in comparisons.list_pairs(store.catalog().root) if is_run(p[0]) and is_run(p[1])]
    if run:
        pairs = [p if p[0] == run else (p[1], p[0]) for p in pairs if run in p]
    if pairs:
        return pairs[0]
    a = run or store.default_run_id()
    others = [r for r in known_runs() if r != a]
    return a, (others[0] if others else None)


def mean_shuffled(attrs: dict) -> float:
    values = attrs.get("cka_shuffled")
    return float(np.mean(values)) if values else float("nan")
