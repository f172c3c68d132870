"""The dashboard's only door to the store. Handles are opened lazily in each process (gunicorn
workers fork before the first request, so nothing is opened at import time); everything a view
needs per click is derived once per run and cached, so no callback scans all words."""
import bisect
import os
import threading
from collections import OrderedDict
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from store import Catalog, Run, StoreError
from store.settings import settings

DEFAULT_MAX_POINTS = 20_000
_lock = threading.RLock()
_state = {"root": None, "catalog": None, "pid": None, "max_points": None}
_views: "OrderedDict[tuple, RunView]" = OrderedDict()
MAX_CACHED_RUNS = 4


def configure(root=None, max_points: int | None = None):
    """Point the dashboard at a store root (default: $LEXISCOPE_STORE or ./lexiscope-store)."""
    with _lock:
        _state.update(root=root, catalog=None, pid=None, max_points=max_points)
        _views.clear()


def max_points() -> int:
    value = _state["max_points"] or settings().max_points or DEFAULT_MAX_POINTS
    return max(1, int(value))


def catalog() -> Catalog:
    with _lock:
        if _state["catalog"] is None or _state["pid"] != os.getpid():
            _state["catalog"] = Catalog(_state["root"])
            _state["pid"] = os.getpid()
            _views.clear()
        return _state["catalog"]


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
    """The cached RunView of a run; StoreError (one line) if it is missing or unreadable."""
    run = catalog().open(run_id)
    key = (run_id, os.getpid(), run.path.stat().st_mtime_ns if run.path.exists() else 0)
    with _lock:
        v = _views.get(key)
        if v is None:
            v = RunView(run)
            _views[key] = v
            if settings().warm_up:
                threading.Thread(target=v.warm, name=f"warm-{run_id}", daemon=True).start()
            while len(_views) > MAX_CACHED_RUNS:
                _views.popitem(last=False)
        else:
            _views.move_to_end(key)
        return v


class RunView:
    """Read-side indexes over one run, built on first use and kept for the process."""

    def __init__(self, run: Run):
        self.run = run
        self.run_id = run.run_id
        self._lock = threading.RLock()

    def cached(self, key: str, build):
        """A per-run derived value, built once per process (under a lock: callbacks run in threads)."""
        key = "#" + key
        if key not in self.__dict__:
            with self._lock:
                if key not in self.__dict__:
                    self.__dict__[key] = build()
        return self.__dict__[key]

    # -- identity --------------------------------------------------------------------------
    @cached_property
    def attrs(self) -> dict:
        return self.run.attrs

    @property
    def layer(self) -> int:
        return int(self.attrs.get("layer", 0))

    @property
    def label(self) -> str:
        a = self.attrs
        return f"{a.get('model')} · layer {a.get('layer')}"

    @cached_property
    def is_contextual(self) -> bool:
        return self.attrs.get("source") == "contextual"

    # -- words -----------------------------------------------------------------------------
    @cached_property
    def words(self) -> np.ndarray:
        return self.run.array("words/text")

    @property
    def n(self) -> int:
        return len(self.words)

    @cached_property
    def zipf(self) -> np.ndarray:
        z = self.run.get("words/zipf")
        return np.full(self.n, np.nan, np.float32) if z is None else z.astype(np.float32)

    @cached_property
    def group(self) -> np.ndarray:
        g = self.run.get("words/group")
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
    @cached_property
    def embeddings(self) -> np.ndarray:
        return self.run.array("embeddings")

    @property
    def d(self) -> int:
        return int(self.embeddings.shape[1])

    @cached_property
    def zipf_rank(self) -> np.ndarray:
        from scipy.stats import rankdata
        z = self.zipf
        return rankdata(np.where(np.isfinite(z), z, -np.inf))

    def neighbors(self, i: int, enhanced: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        base = "enhanced/neighbors" if enhanced else "neighbors"
        if not self.has(f"{base}/indices"):
            return None
        idx = self.run.rows(f"{base}/indices", [i])[0]
        cos = self.run.rows(f"{base}/cos", [i])[0]
        keep = idx >= 0
        return idx[keep], cos[keep]

    # -- geometry --------------------------------------------------------------------------
    def group_attrs(self, path: str) -> dict:
        return self.cached("attrs:" + path, lambda: self.run.attrs_of(path))

    def get(self, path: str, default=None):
        return self.run.array(path) if self.has(path) else default

    def has(self, path: str) -> bool:
        key = "#has:" + path  # a run file never changes in place, so the answer is fixed
        if key not in self.__dict__:
            self.__dict__[key] = self.run.has(path)
        return self.__dict__[key]

    @cached_property
    def outlier_dims(self) -> np.ndarray:
        v = self.run.get("geometry/outlier_dims")
        return np.empty(0, np.int64) if v is None else np.asarray(v, np.int64)

    # -- projections -----------------------------------------------------------------------
    def projections(self) -> list[str]:
        return [p for p in ("umap3d", "umap2d", "pca2") if self.has(f"projections/{p}")]

    def coords(self, proj: str) -> np.ndarray:
        return self.run.array(f"projections/{proj}").astype(np.float32, copy=False)

    def base_sample(self, limit: int) -> np.ndarray:
        """Rows drawn on the map when nothing is selected: every concept-group word, then the most
        frequent words (rows are in frequency order), up to `limit`."""
        key = f"_sample{limit}"
        with self._lock:
            if key not in self.__dict__:
                if self.n <= limit:
                    rows = np.arange(self.n)
                else:
                    grouped = np.flatnonzero(self.group >= 0)[:limit]
                    rest = np.setdiff1d(np.arange(min(self.n, limit + len(grouped))), grouped)
                    rows = np.sort(np.concatenate([grouped, rest[: limit - len(grouped)]]))
                self.__dict__[key] = rows
            return self.__dict__[key]

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

    # -- SAE -------------------------------------------------------------------------------
    @cached_property
    def has_sae(self) -> bool:
        return self.has("sae/acts/indptr")

    @cached_property
    def sae_attrs(self) -> dict:
        return self.run.attrs_of("sae")

    @cached_property
    def acts(self) -> sp.csr_matrix:
        return self.run.csr("sae/acts")

    @cached_property
    def acts_csc(self) -> sp.csc_matrix:
        return self.run.csc("sae/acts")

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

    def sae_array(self, name: str, default=None):
        return self.get(f"sae/{name}", default)

    def sae_row(self, name: str, f: int):
        """Row f of a per-feature SAE array (None if absent). The arrays are small (F x 50 at most) and
        read whole once: decompressing HDF5 chunks on every click costs more than keeping them."""
        arr = self.sae_array(name)
        return None if arr is None else arr[f]

    @cached_property
    def feature_table(self) -> list[dict]:
        """One record per feature for the features table (built once per run)."""
        F = self.n_features
        cols = {"feature": np.arange(F)}
        for name in ("density", "max_act", "mono_score", "feature_intrusion"):
            v = self.sae_array(name)
            if v is not None:
                cols[name] = np.round(np.asarray(v, np.float64), 4)
        best = self.sae_array("best_group")
        names = self.group_names
        if best is not None:
            cols["best_group"] = np.array([names[g] if 0 <= g < len(names) else "" for g in best], dtype=object)
        if "density" not in cols:
            cols["density"] = np.round(self.feature_counts / max(1, self.n), 5)
        top = self.sae_array("top_words")
        if top is not None:
            w = self.words
            cols["top_words"] = np.array([", ".join(str(w[j]) for j in row[:5] if j >= 0) for row in top],
                                         dtype=object)
        keys = list(cols)
        return [{k: (cols[k][f].item() if hasattr(cols[k][f], "item") else cols[k][f]) for k in keys}
                for f in range(F)]

    @cached_property
    def feature_frame(self):
        """The features table as a DataFrame (for server-side paging, sorting and filtering)."""
        import pandas as pd
        return pd.DataFrame(self.feature_table)

    def rank_features_for(self, rows: np.ndarray, limit: int = 20) -> list[dict]:
        """Features ranked by how selectively they fire on `rows` against all other words.

        recall = share of the group's words the feature fires on; precision = share of the feature's
        total activation that falls on the group; score = their harmonic mean (an F1 of the group as
        a 'retrieval' by the feature). Uses only the group's CSR rows and cached column sums:
        O(|group| * k + F), independent of the vocabulary size."""
        rows = np.unique(np.asarray(rows, np.int64))
        if len(rows) == 0:
            return []
        sub = self.acts[rows]
        in_sum = np.asarray(sub.sum(axis=0)).ravel()
        in_hits = np.bincount(sub.indices, minlength=self.n_features)
        cand = np.flatnonzero(in_hits)
        if len(cand) == 0:
            return []
        recall = in_hits[cand] / len(rows)
        total = self.feature_sums[cand]
        precision = np.divide(in_sum[cand], total, out=np.zeros(len(cand)), where=total > 0)
        score = 2 * recall * precision / np.maximum(recall + precision, 1e-12)
        n_out = max(1, self.n - len(rows))
        out_mean = (total - in_sum[cand]) / n_out
        order = np.argsort(-score, kind="stable")[:limit]
        return [dict(feature=int(cand[j]), score=float(score[j]), recall=float(recall[j]),
                     precision=float(precision[j]), in_mean=float(in_sum[cand[j]] / len(rows)),
                     out_mean=float(out_mean[j]), hits=int(in_hits[cand[j]])) for j in order]

    def decoder_loadings(self, dim: int, limit: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Features whose decoder direction loads most (by |weight|) on dimension `dim`."""
        col = self.decoder[:, dim]
        order = np.argsort(-np.abs(col))[:limit]
        return order, col[order]

    @cached_property
    def decoder(self) -> np.ndarray:
        return self.run.array("sae/W_dec")

    # -- dimensions ------------------------------------------------------------------------
    def dimension(self, dim: int) -> np.ndarray:
        return self.embeddings[:, dim]

    @cached_property
    def dimension_stats(self) -> dict:
        from dashboard.lib.stats import dimension_stats
        return dimension_stats(self.embeddings, self.zipf)

    # -- warm-up ---------------------------------------------------------------------------
    def warm(self):
        """Build the per-run indexes a first click would otherwise wait for (run in a thread when the
        view is first opened; every step is idempotent and cached)."""
        try:
            self._word_index, self._lower_index, self._sorted_lower
            self.base_sample(max_points())
            if self.has_sae:
                self.acts_csc, self.feature_sums, self.feature_frame
            self.dimension_stats
        except Exception:  # a broken run shows its error when a page asks; warming stays silent
            pass


def family_key(config: dict) -> str:
    """A run's config without what differs between the layers of one plan entry."""
    import json
    body = {k: v for k, v in (config or {}).items() if k not in ("layers", "layer", "name", "batch_size")}
    return json.dumps(body, sort_keys=True, default=str)


def family(v: "RunView") -> dict:
    """{layer: run_id} of the runs of the same model and config as `v` (one per layer); cached until
    the catalog changes."""
    t = runs_table()
    stamp = tuple(sorted(t["run_id"])) if not t.empty else ()
    hit = v.__dict__.get("#family")
    if hit is not None and hit[0] == stamp:
        return hit[1]
    out = _family(v, t)
    v.__dict__["#family"] = (stamp, out)
    return out


def _family(v, t) -> dict:
    same = t[t["model"] == v.attrs.get("model")]
    key = family_key(v.run.config)
    out = {}
    for _, r in same.iterrows():
        try:
            other = catalog().open(r["run_id"])
            if family_key(other.config) == key:
                out.setdefault(int(r["layer"]), r["run_id"])
        except StoreError:
            continue
    return out


def neighbour_run(v: "RunView", delta: int) -> "RunView | None":
    """The run one layer above (delta=+1) or below (-1) in the same family, or None."""
    run_id = family(v).get(v.layer + delta)
    if run_id is None:
        return None
    try:
        return view(run_id)
    except StoreError:
        return None


def run_options() -> list[dict]:
    """Dropdown options for the run picker."""
    t = runs_table()
    if t.empty:
        return []
    out = []
    for _, r in t.iterrows():
        sae = f" · SAE {r['sae_arch']} {int(r['sae_d_sae'])}" if _present(r.get("sae_d_sae")) else ""
        name = str(r["run_id"]).split(f"-L{int(r['layer'])}-")[0]  # run ids are <name>-L<layer>-<hash>
        label = name if name == r["model"] else f"{name} ({r['model']})"
        out.append({"label": f"{label} · L{int(r['layer'])} · {int(r['n_words']):,} words{sae}",
                    "value": r["run_id"]})
    return out


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v))


__all__ = ["configure", "catalog", "view", "RunView", "StoreError", "default_run_id", "resolve_run_id",
           "run_options", "max_points", "runs_table"]
