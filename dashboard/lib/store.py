"""The dashboard's door to the store: the catalog of this process, and per run a RunView of the indexes
a click needs (word index, autocomplete, CSC feature columns, the word-map sample), so no callback scans
all words. Reading run files, and caching what was read, is store.Run's job (`v.run.get(SAE.density)`).

Caching, one style: a RunView derives each index once (cached_property), and views live in one LRU
keyed on what makes them stale (run, process, file mtime). Nothing is opened at import time: gunicorn
workers fork before the first request, and each opens its run files lazily."""

import bisect
import functools
import os
import threading
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from dashboard.lib import features as feature_lib
from dashboard.lib.stats import dimension_stats
from store import Catalog, Run, StoreError
from store.schema import EMBEDDINGS, ENHANCED, GEOMETRY, NEIGHBORS, PROJECTIONS, ROOT, SAE, WORDS
from store.settings import settings

DEFAULT_MAX_POINTS = 20_000
POINTS_2D_FACTOR = 10  # a 2-D map (WebGL scattergl) draws ten times the points of a 3-D one
MAX_CACHED_RUNS = 8  # the Layers page reads every layer of a family (7 for MiniLM) on each request
_lock = threading.RLock()
_config = {"root": None, "max_points": None, "max_points_2d": None}


def configure(root=None, max_points: int | None = None, max_points_2d: int | None = None):
    """Point the dashboard at a store root (default: $LEXISCOPE_STORE or ./lexiscope-store)."""
    with _lock:
        _config.update(root=root, max_points=max_points, max_points_2d=max_points_2d)
        _catalog.cache_clear()
        _view.cache_clear()


def max_points() -> int:
    """Most points drawn on a 3-D word map."""
    value = _config["max_points"] or settings().max_points or DEFAULT_MAX_POINTS
    return max(1, int(value))


def max_points_2d() -> int:
    """Most points drawn on a 2-D word map (200,000 by default)."""
    return max(1, int(_config["max_points_2d"] or POINTS_2D_FACTOR * max_points()))


@functools.lru_cache(maxsize=1)
def _catalog(root, pid: int) -> Catalog:
    return Catalog(root)


def catalog() -> Catalog:
    """The catalog of the configured store, one per process."""
    with _lock:
        return _catalog(_config["root"], os.getpid())


def runs_table():
    return catalog().table()


def default_run_id() -> str | None:
    """The newest run, or None for an empty store."""
    t = runs_table()
    if t.empty:
        return None
    return str(t.sort_values("created", ascending=False).iloc[0]["run_id"])


def resolve_run_id(run_id: str | None) -> str | None:
    return run_id or default_run_id()


def view(run_id: str) -> "RunView":
    """The RunView of a run; StoreError (one line) if it is missing or unreadable."""
    run = catalog().open(run_id)
    stamp = run.path.stat().st_mtime_ns if run.path.exists() else 0
    with _lock:  # one view per run file and process, even when callbacks ask for it at once
        return _view(run, os.getpid(), stamp)


@functools.lru_cache(maxsize=MAX_CACHED_RUNS)
def _view(run: Run, pid: int, stamp: int) -> "RunView":
    v = RunView(run)
    if settings().warm_up:
        threading.Thread(target=v.warm, name=f"warm-{run.run_id}", daemon=True).start()
    return v


class RunView:
    """The UI indexes of one run, each built on first use and kept with the view."""

    def __init__(self, run: Run):
        self.run = run
        self.run_id = run.run_id

    # -- identity --------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return self.run.attrs

    @property
    def layer(self) -> int:
        return int(self.attrs.get(ROOT.layer, 0))

    @property
    def label(self) -> str:
        a = self.attrs
        return f"{a.get(ROOT.model)} · layer {a.get(ROOT.layer)}"

    @property
    def is_contextual(self) -> bool:
        return self.attrs.get(ROOT.source) == "contextual"

    # -- words: index and autocomplete -----------------------------------------------------
    @cached_property
    def words(self) -> np.ndarray:
        return self.run.array(WORDS.text)

    @property
    def n(self) -> int:
        return len(self.words)

    @cached_property
    def zipf(self) -> np.ndarray:
        z = self.run.get(WORDS.zipf)
        return np.full(self.n, np.nan, np.float32) if z is None else z.astype(np.float32)

    @cached_property
    def group(self) -> np.ndarray:
        g = self.run.get(WORDS.group)
        return np.full(self.n, -1, np.int16) if g is None else g.astype(np.int16)

    @cached_property
    def group_names(self) -> list[str]:
        return self.run.group_names

    @cached_property
    def _word_index(self) -> dict:
        idx = {}
        for i, w in enumerate(self.words):
            idx.setdefault(w, i)  # the first (most frequent) row of a word that appears per language
        return idx

    @cached_property
    def _lower_index(self) -> dict:
        idx = {}
        for i, w in enumerate(self.words):
            idx.setdefault(w.lower(), i)
        return idx

    def find(self, word: str) -> int | None:
        """Row of a word (exact, else case-insensitive), or None."""
        if word is None:
            return None
        w = str(word).strip()
        i = self._word_index.get(w)
        return self._lower_index.get(w.lower()) if i is None else i

    @cached_property
    def _sorted_lower(self) -> tuple[list, np.ndarray]:
        lower = [w.lower() for w in self.words]
        order = np.argsort(np.asarray(lower, dtype=object), kind="stable")
        return [lower[i] for i in order], order

    def complete(self, prefix: str, limit: int = 10, scan: int = 500) -> list[str]:
        """Words starting with `prefix` (case-insensitive), most frequent (lowest row) first.
        A binary search in the sorted vocabulary; at most `scan` candidates are looked at."""
        p = (prefix or "").strip().lower()
        if not p:
            return []
        keys, order = self._sorted_lower
        lo = bisect.bisect_left(keys, p)
        hi = bisect.bisect_left(keys, p + "\uffff", lo, min(len(keys), lo + scan))
        rows = np.sort(order[lo:hi])[:limit]
        return [str(self.words[i]) for i in rows]

    def group_rows(self, g: int) -> np.ndarray:
        return self._group_members.get(int(g), np.empty(0, np.int64))

    @cached_property
    def _group_members(self) -> dict:
        out = {}
        for g in np.unique(self.group):
            if g >= 0:
                out[int(g)] = np.flatnonzero(self.group == g)
        return out

    # -- vectors ---------------------------------------------------------------------------
    @property
    def embeddings(self) -> np.ndarray:
        return self.run.array(EMBEDDINGS)

    @property
    def d(self) -> int:
        return int(self.embeddings.shape[1])

    def neighbors(self, i: int, enhanced: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        paths = ENHANCED.neighbors if enhanced else NEIGHBORS
        if not self.run.has(paths.indices):
            return None
        idx = self.run.rows(paths.indices, [i])[0]
        cos = self.run.rows(paths.cos, [i])[0]
        keep = idx >= 0
        return idx[keep], cos[keep]

    @cached_property
    def outlier_dims(self) -> np.ndarray:
        v = self.run.get(GEOMETRY.outlier_dims)
        return np.empty(0, np.int64) if v is None else np.asarray(v, np.int64)

    @cached_property
    def dimension_stats(self) -> dict:
        return dimension_stats(self.embeddings, self.zipf)

    # -- the word map: projections and the sample drawn ------------------------------------
    def projections(self) -> list[str]:
        return [name for name, path in PROJECTIONS.datasets().items() if self.run.has(path)]

    def coords(self, proj: str) -> np.ndarray:
        return self.run.array(PROJECTIONS.datasets()[proj]).astype(np.float32, copy=False)

    @cached_property
    def clusters(self) -> np.ndarray | None:
        """The k-means cluster of each word (isotropy enhancement), or None."""
        c = self.run.get(ENHANCED.cluster)
        return None if c is None else np.asarray(c, np.int64)

    @cached_property
    def _sample_order(self) -> np.ndarray:
        """Rows in the order the map takes them: every concept-group word, then the others by row (rows
        are in frequency order)."""
        return np.concatenate([np.flatnonzero(self.group >= 0), np.flatnonzero(self.group < 0)])

    def base_sample(self, limit: int) -> np.ndarray:
        """Rows drawn on the map when nothing is selected: the first `limit` of `_sample_order`, sorted."""
        return np.sort(self._sample_order[:limit])

    def map_rows(self, limit: int, must: np.ndarray | None = None) -> np.ndarray:
        """At most `limit` rows, always including `must` (selected and highlighted words)."""
        base = self.base_sample(limit)
        if must is None or len(must) == 0:
            return base
        must = np.unique(np.asarray(must, np.int64))
        must = must[(must >= 0) & (must < self.n)]
        room = max(0, limit - len(must))
        extra = np.setdiff1d(base, must, assume_unique=True)[:room]
        return np.sort(np.concatenate([must, extra]))

    # -- SAE: feature columns --------------------------------------------------------------
    @property
    def has_sae(self) -> bool:
        return self.run.has(SAE.acts.indptr)

    @property
    def sae_attrs(self) -> dict:
        return self.run.attrs_of(SAE.path)

    @property
    def acts(self) -> sp.csr_matrix:
        return self.run.csr(SAE.acts)

    @property
    def acts_csc(self) -> sp.csc_matrix:
        return self.run.csc(SAE.acts)

    @property
    def n_features(self) -> int:
        return int(self.acts.shape[1])

    @cached_property
    def feature_sums(self) -> np.ndarray:
        return np.asarray(self.acts_csc.sum(axis=0)).ravel()

    @cached_property
    def feature_counts(self) -> np.ndarray:
        return np.diff(self.acts_csc.indptr)

    def word_features(self, i: int, limit: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The features active on word row i, strongest first."""
        a = self.acts
        lo, hi = a.indptr[i], a.indptr[i + 1]
        f, v = a.indices[lo:hi], a.data[lo:hi]
        order = np.argsort(-v)[:limit]
        return f[order], v[order]

    def feature_column(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, activations) of the words feature f fires on."""
        c = self.acts_csc
        lo, hi = c.indptr[f], c.indptr[f + 1]
        return c.indices[lo:hi], c.data[lo:hi]

    def feature_values(self, f: int, rows: np.ndarray) -> np.ndarray:
        """Activation of feature f on the given rows (0 where it does not fire)."""
        hit, val = self.feature_column(f)
        out = np.zeros(len(rows), np.float32)
        if len(hit):
            pos = np.searchsorted(hit, rows)
            pos = np.minimum(pos, len(hit) - 1)
            ok = hit[pos] == rows
            out[ok] = val[pos[ok]]
        return out

    @cached_property
    def feature_frame(self):
        """The features table as a DataFrame (for server-side paging, sorting and filtering)."""
        return feature_lib.feature_frame(self)

    # -- warm-up ---------------------------------------------------------------------------
    def warm(self):
        """Build the indexes a first click would otherwise wait for (run in a thread when the view is
        first opened; every step is idempotent and cached)."""
        names = ["_word_index", "_lower_index", "_sorted_lower", "_sample_order", "dimension_stats"]
        try:
            if self.has_sae:
                names[-1:-1] = ["acts_csc", "feature_sums", "feature_frame"]
            for name in names:
                getattr(self, name)
        except Exception:  # a broken run shows its error when a page asks; warming stays silent
            pass


__all__ = [
    "configure",
    "catalog",
    "view",
    "RunView",
    "StoreError",
    "default_run_id",
    "resolve_run_id",
    "max_points",
    "max_points_2d",
    "runs_table",
]
